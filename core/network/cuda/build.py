"""Just-in-time build of the WKV-7 CUDA extension with ninja, for the GPU actually present.

The sources are addressed by absolute paths (the build works from any working directory), the
architecture comes from the device's compute capability, and the result is cached under
~/.cache/rwkv-music/cuda/<key>, where the key hashes the sources (paths and bytes), the
architecture, the Python ABI and the torch and CUDA versions (core/network/jit_build.py). Any failure
(no CUDA torch, no nvcc, no ninja, a compiler error) becomes one clear warning and
`load_extension` returns None: callers then use the portable PyTorch path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core.network import jit_build

SOURCE_DIR = Path(__file__).resolve().parent
SOURCE_NAMES = ("wkv7_bind.cpp", "wkv7.cu")
CUDA_FLAGS = ("-O3", "--use_fast_math", "-Xptxas=-O3", "--extra-device-vectorization")
CXX_FLAGS = ("-O3",)
DISABLE_ENV = "RWKV_MUSIC_NO_CUDA_KERNEL"   # set to 1 to never build or use the kernel
CACHE_ENV = "RWKV_MUSIC_CUDA_CACHE"        # overrides the cache folder


def source_paths() -> list[str]:
    """Absolute paths of the extension's sources."""
    return [str(SOURCE_DIR / name) for name in SOURCE_NAMES]


def arch_list(capability: tuple[int, int]) -> str:
    """TORCH_CUDA_ARCH_LIST for one compute capability, e.g. (8, 9) -> "8.9"."""
    major, minor = capability
    return f"{int(major)}.{int(minor)}"


def cache_root() -> Path:
    return jit_build.cache_root("cuda", CACHE_ENV)


def build_parts(capability: tuple[int, int]) -> tuple[str, ...]:
    """What changes the binary besides the sources and jit_build.environment_parts(): flags, arch,
    the CUDA version and compiler."""
    from torch.utils import cpp_extension
    return (*CUDA_FLAGS, *CXX_FLAGS, arch_list(capability), str(torch.version.cuda),
            str(cpp_extension.CUDA_HOME))


@dataclass(frozen=True)
class BuildPlan:
    """Everything torch.utils.cpp_extension.load needs, computed without touching a GPU."""
    name: str
    sources: list[str]
    build_directory: str
    arch_list: str
    extra_cflags: list[str] = field(default_factory=lambda: list(CXX_FLAGS))
    extra_cuda_cflags: list[str] = field(default_factory=lambda: list(CUDA_FLAGS))

    def load_kwargs(self) -> dict:
        return dict(name=self.name, sources=self.sources, build_directory=self.build_directory,
                    extra_cflags=self.extra_cflags, extra_cuda_cflags=self.extra_cuda_cflags,
                    verbose=False)

    def env(self) -> dict[str, str]:
        return {"TORCH_CUDA_ARCH_LIST": self.arch_list}


def build_plan(capability: tuple[int, int]) -> BuildPlan:
    name, directory = jit_build.build_location("cuda", "rwkv_music_wkv7", source_paths(),
                                               build_parts(capability), CACHE_ENV)
    return BuildPlan(name=name, sources=source_paths(), build_directory=directory,
                     arch_list=arch_list(capability))


def device_capability(device=None) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


def toolchain_problem() -> str | None:
    """Why the extension cannot be built here, or None when torch, CUDA, nvcc and ninja are there."""
    from torch.utils import cpp_extension
    if torch.version.cuda is None:
        return "this torch build has no CUDA support"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    if cpp_extension.CUDA_HOME is None:
        return "the CUDA compiler (nvcc) was not found; install the CUDA toolkit or set CUDA_HOME"
    return None


def compile_plan(plan: BuildPlan):
    """Build (or reuse the cached build of) the extension; returns (module, None) or (None, why)."""
    return jit_build.compile_extension(plan.load_kwargs(), plan.env(),
                                       f"WKV-7 CUDA kernel for compute capability {plan.arch_list}")


def fallback_warning(why: str) -> str:
    return (f"WKV-7 CUDA kernel unavailable ({why}); falling back to the PyTorch WKV path on the "
            f"GPU, which is slower. Set {DISABLE_ENV}=1 to silence this.")


_builds = jit_build.ExtensionCache(fallback_warning)


def load_extension(device=None):
    """The compiled extension for `device` (built on first use), or None with one warning."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    problem = toolchain_problem()
    if problem is not None:
        return _builds.get((0, 0), lambda: (None, problem))
    capability = device_capability(device)
    return _builds.get(capability, lambda: compile_plan(build_plan(capability)))


def forget_builds() -> None:
    """Drop the in-process memo of loaded and failed builds (tests use it)."""
    _builds.forget()
