"""The C++ CPU kernels (cpu_kernels.cpp, built just in time) and their build, float32 only: the fused
one-token step (core/network/step.py packs the weights for it; models without DeepEmbed) and the WKV-7 recurrence
that core/network/wkv.py runs on the CPU: forward only for prefill and scoring, forward and backward for training
(the backward recomputes from the state kept every 16 tokens, for head sizes a multiple of WKV_LANES = 8;
other head sizes train through the chunked WKV).

Build: `python -m core.network.cpu_kernels` (the Makefile runs it after installing), else on first use. It is
cached under <cache>/cpu-kernels/<key>, <cache> being $RWKV_MUSIC_BUILD_CACHE or else the user's cache
folder (~/.cache/rwkv-music, core.paths); RWKV_MUSIC_NO_CPU_STEP=1 turns the kernels off (the torch-op
step and the chunked WKV then run). A failed build is one warning, then the same fallbacks.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from core.network import jit_build

SOURCE = str(Path(__file__).resolve().with_name("cpu_kernels.cpp"))
DISABLE_ENV = "RWKV_MUSIC_NO_CPU_STEP"


def compiler_flags() -> list[str]:
    # OpenMP: without it at::parallel_for runs on one thread (its OpenMP path is inline in the
    # headers); on Linux the library then shares torch's libgomp.so.1 and thread count. Windows
    # (MSVC's own OpenMP runtime would be a second thread pool) and macOS (Apple's clang has no
    # OpenMP) build without it and step on one thread. AVX2 + FMA where this CPU has them (the
    # build is for this machine and the key includes the flags); the vector code falls back to
    # SSE2 pairs elsewhere.
    if sys.platform == "win32":
        return ["/O2"]
    flags = ["-O3"] if sys.platform == "darwin" else ["-O3", "-fopenmp"]
    if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"):
        flags += ["-mavx2", "-mfma"]
    return flags


def load_kwargs() -> dict:
    flags = compiler_flags()
    name, directory = jit_build.build_location("cpu-kernels", "rwkv_music_cpu_kernels", [SOURCE], flags)
    return dict(name=name, sources=[SOURCE], build_directory=directory, extra_cflags=flags, verbose=False)


def fallback_warning(why: str) -> str:
    return (f"fused CPU step unavailable ({why}); using the slower torch-op step. "
            f"Set {DISABLE_ENV}=1 to silence this.")


_builds = jit_build.ExtensionCache(fallback_warning)


def load_extension():
    """The compiled kernels (built on first use, then cached on disk), or None: turned off, or the
    build failed (one warning)."""
    if os.environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    return _builds.get("cpu", lambda: jit_build.compile_extension(load_kwargs(), what="fused CPU step"))


if __name__ == "__main__":  # build ahead of first use (the Makefile's install step)
    module = load_extension()
    print("CPU kernels:", "ready" if module is not None else "unavailable (see the warning above)")
    sys.exit(0)
