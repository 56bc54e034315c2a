"""Atomic file writes: every checkpoint, MIDI file, cache entry and run record goes through here."""
from __future__ import annotations

import contextlib
import os
import tempfile

_UMASK = os.umask(0)  # read once: changing the umask later would race with other threads
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None):
    """Yield a file opened on a temporary name beside `path`; when the block ends without error, flush
    it to disk and rename it over `path`, otherwise remove it. A reader, or a process killed mid-write,
    only ever sees the old file or the new one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
