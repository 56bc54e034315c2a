"""Just-in-time builds of the project's torch extensions (the CPU step, the CUDA WKV kernel) with ninja.

Sources are addressed by absolute paths, so a build works from any working directory. Each build
gets its own folder, <cache>/<family>/<key>, where the key hashes everything that changes the
binary (sources, flags, target, torch version): a changed source or another machine never picks
up a stale library. A failed build becomes one warning per process and None, so that callers
fall back to their portable PyTorch path.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Hashable, Iterable

CACHE_ENV = "RWKV_MUSIC_BUILD_CACHE"  # overrides <cache> (default ~/.cache/rwkv-music)

log = logging.getLogger(__name__)


def cache_root(family: str, override_env: str | None = None) -> Path:
    """The folder that holds `family`'s builds: $override_env if set, else <cache>/<family>."""
    if override_env and os.environ.get(override_env):
        return Path(os.environ[override_env]).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve() / family
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "rwkv-music" / family


def build_key(sources: Iterable[str], parts: Iterable[str]) -> str:
    """A short hash of the sources' bytes and every other input of the build (flags, target, versions)."""
    digest = hashlib.sha256()
    for path in sources:
        digest.update(Path(path).read_bytes())
    for part in parts:
        digest.update(str(part).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """Set environment variables for the duration of a build, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def compile_extension(load_kwargs: dict, env: dict[str, str] | None = None, what: str = "extension"):
    """Build (or reuse the cached build of) one extension with torch.utils.cpp_extension.load;
    returns (module, None) or (None, why)."""
    from torch.utils import cpp_extension
    directory = load_kwargs["build_directory"]
    if not cpp_extension.is_ninja_available():
        return None, "ninja was not found; `pip install ninja`"
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with environment(env or {}):
            module = cpp_extension.load(**load_kwargs)
        log.info("%s ready in %.1f s (%s)", what, time.monotonic() - started, directory)
        return module, None
    except Exception as error:  # a compiler error, a missing tool, an ABI mismatch...
        text = str(error).strip()
        if len(text) > 2000:
            text = "..." + text[-2000:]
        return None, f"building it in {directory} failed: {type(error).__name__}: {text}"


class ExtensionCache:
    """Loaded extensions by key, built at most once per process; a failure is remembered and
    warned about once (with `fallback_warning(why)`), then answered with None."""

    def __init__(self, fallback_warning: Callable[[str], str]) -> None:
        self._fallback_warning = fallback_warning
        self._lock = threading.Lock()
        self._loaded: dict[Hashable, object] = {}
        self._failed: dict[Hashable, str] = {}

    def get(self, key: Hashable, build: Callable[[], tuple[object | None, str | None]]):
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            if key in self._failed:
                return None
            module, why = build()
            if module is None:
                self._failed[key] = why
                warnings.warn(self._fallback_warning(why), RuntimeWarning, stacklevel=4)
                return None
            self._loaded[key] = module
            return module

    def forget(self) -> None:
        """Drop the in-process memo of loaded and failed builds (tests use it)."""
        with self._lock:
            self._loaded.clear()
            self._failed.clear()
