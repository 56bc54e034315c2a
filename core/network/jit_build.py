"""Just-in-time builds of the project's torch extensions (the CPU step, the CUDA WKV kernel) with ninja.

Sources are addressed by absolute paths, so a build works from any working directory. Each build
gets its own folder, <cache>/<family>/<key>, where the key hashes everything that makes builds
differ (the sources' paths and bytes, flags, target, compiler, torch version, Python ABI): a
changed source, a second checkout or another Python never picks up, or rebuilds over, another's
library. A failed build becomes one warning per process and None, so that callers fall back to
their portable PyTorch path.

Locking: torch guards a build folder with a `lock` file that it creates and deletes; a process
killed while it exists (even for the moment a current build is checked) leaves it behind, and
torch then waits on it forever. So every load here first takes an OS lock on a file of its own
in the folder (flock / msvcrt, released by the OS when a process dies). Whoever holds it is the
only one of ours inside torch's step, so a `lock` found then is stale: it is removed, the folder
is emptied and the build redone, with one warning. A live builder is waited for, up to a limit.
Where the file system cannot lock, torch's `lock` is waited for up to that limit, then removed.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import sys
import sysconfig
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Hashable, Iterable

from .. import paths

CACHE_ENV = "RWKV_MUSIC_BUILD_CACHE"  # overrides <cache> (default ~/.cache/rwkv-music)
WAIT_ENV = "RWKV_MUSIC_BUILD_WAIT_S"  # how long to wait for another process's build (default 30 min)
DEFAULT_WAIT_S = 1800.0
OS_LOCK_NAME = "rwkv-music.lock"  # ours, held with an OS lock; torch's own is "lock"
TORCH_LOCK_NAME = "lock"

log = logging.getLogger(__name__)


def cache_root(family: str, override_env: str | None = None) -> Path:
    """The folder that holds `family`'s builds: $override_env if set, else <cache>/<family>."""
    if override_env and os.environ.get(override_env):
        return Path(os.environ[override_env]).expanduser().resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve() / family
    return paths.cache_dir(family).resolve()


def environment_parts() -> tuple[str, ...]:
    """What every build here depends on besides its own sources and flags: the Python ABI (an
    extension is only importable by the interpreter it was built for), the machine, the C++
    compiler and the torch it links against."""
    import torch
    return (sys.implementation.cache_tag or "", str(sysconfig.get_config_var("EXT_SUFFIX")),
            sys.platform, os.environ.get("CXX", ""), torch.__version__)


def _hash(parts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(str(part).encode())
        digest.update(b"\0")  # ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()[:16]


def build_key(sources: Iterable[str], parts: Iterable[str]) -> str:
    """A short hash of the sources (absolute path and bytes) and every other input of the build
    (flags, target, versions, the environment_parts()). The path is in it because torch's build
    file names the sources: two checkouts sharing one folder would rebuild over each other."""
    items = []
    for path in sources:
        resolved = Path(path).resolve()
        items += [str(resolved), hashlib.sha256(resolved.read_bytes()).hexdigest()]
    return _hash([*items, *parts, *environment_parts()])


def build_location(family: str, prefix: str, sources: Iterable[str], parts: Iterable[str],
                   override_env: str | None = None) -> tuple[str, str]:
    """(module name, build folder) of one build: <cache root>/<key>. The name also hashes the
    folder, so one process loading the same build from two cache roots (tests do) never makes
    torch rename it "<name>_v1" and build it again."""
    key = build_key(sources, parts)
    directory = cache_root(family, override_env) / key
    return f"{prefix}_{_hash([key, str(directory)])}", str(directory)


def _try_os_lock(fd: int) -> bool:
    """Take an exclusive lock on `fd` without waiting; False when another process holds it.
    OSError where the file system cannot lock (some network file systems)."""
    try:
        if sys.platform == "win32":
            import msvcrt
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK):
            return False
        raise


def _os_unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl
        fcntl.flock(fd, fcntl.LOCK_UN)


def wait_limit_s() -> float:
    try:
        return float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT_S)
    except ValueError:
        return DEFAULT_WAIT_S


@contextlib.contextmanager
def build_folder_lock(directory: str | os.PathLike, what: str = "extension", wait_s: float | None = None):
    """Hold the OS lock of a build folder (created if needed); yields True, or False where the
    file system cannot lock (then nobody can tell a stale torch lock from a live one). Raises
    TimeoutError after `wait_s` (default: $RWKV_MUSIC_BUILD_WAIT_S, else 30 min) while another
    live process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    limit = wait_limit_s() if wait_s is None else wait_s
    fd = os.open(directory / OS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started, told = time.monotonic(), False
        while True:
            try:
                if _try_os_lock(fd):
                    break
            except OSError as error:
                log.warning("cannot lock %s (%s); building without stale-lock detection",
                            directory, error)
                yield False
                return
            waited = time.monotonic() - started
            if waited >= limit:
                raise TimeoutError(f"another process has been building the {what} in {directory} "
                                   f"for over {limit:.0f} s (set {WAIT_ENV} to wait longer)")
            if not told and waited > 5:
                log.warning("waiting for another process building the %s in %s", what, directory)
                told = True
            time.sleep(0.1)
        try:
            yield True
        finally:
            _os_unlock(fd)
    finally:
        os.close(fd)


def clear_stale_torch_lock(directory: str | os.PathLike, what: str = "extension") -> bool:
    """With the folder's OS lock held: remove torch's `lock` left by a killed process, and what
    that process may have half written, so that the build is redone. True when there was one."""
    directory = Path(directory)
    if not (directory / TORCH_LOCK_NAME).exists():
        return False
    for entry in directory.iterdir():
        if entry.name == OS_LOCK_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    warnings.warn(f"the {what}'s build folder {directory} was locked by a process that was stopped "
                  f"while loading it; the stale lock was removed and the {what} is built again",
                  RuntimeWarning, stacklevel=3)
    return True


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
        started = time.monotonic()
        with build_folder_lock(directory, what) as locked, environment(env or {}):
            if not locked:  # torch's lock may be live: give it the time a build may take
                torch_lock, deadline = Path(directory) / TORCH_LOCK_NAME, time.monotonic() + wait_limit_s()
                while torch_lock.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            clear_stale_torch_lock(directory, what)
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
