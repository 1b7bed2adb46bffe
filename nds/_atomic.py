"""Atomic file writes: a reader sees the old file or the new one, never a torn one.

Standard library only (used by :mod:`nds._parts` from many processes).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_write", "atomic_path"]


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a unique temporary file in the same folder
    (``tempfile.mkstemp``), ``fsync``, then ``os.replace`` over ``path``. Concurrent writers
    each use their own temporary file; readers see the old or the new content, never a mix.

    Raises:
        OSError: the folder does not exist or is not writable (the temporary file is removed).
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())  # mkstemp creates 0600; a result file gets the usual umask mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """A unique temporary path beside ``path`` (same suffix) for a writer that wants a file
    name (e.g. ``matplotlib``'s ``savefig``); renamed over ``path`` when the block succeeds,
    removed when it raises."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.fchmod(fd, _file_mode())
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _file_mode() -> int:
    """``0o666`` less the process umask (read once at import): the mode ``open(path, "w")``
    gives a new file."""
    return 0o666 & ~_UMASK


_UMASK = os.umask(0)
os.umask(_UMASK)
