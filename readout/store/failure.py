"""How a failed write is told and cleaned up: a short message ("disk full: ..." when the disk is
full) with the errno HDF5 buries in its text, and the release of a file HDF5 could not close
(its descriptor pointed at /dev/null, so that deleting the file frees the space and nothing of
ours is written into whatever file reuses the descriptor number)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

import h5py

_ERRNO = re.compile(r"errno = (\d+)|\[Errno (\d+)\]")  # HDF5's message; a chunk thread's
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class WriterError(RuntimeError):
    """The run file could not be written (disk full, permission, closed file...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code

    @property
    def disk_full(self) -> bool:
        return self.errno in _DISK_FULL


def error_number(exc: BaseException) -> int | None:
    """The errno behind an exception, also when HDF5 reports it only in its message."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    found = _ERRNO.search(str(exc))
    return int(found.group(1) or found.group(2)) if found else None


def write_error(path: Path, exc: BaseException, doing: str = "write") -> WriterError:
    """A short WriterError for a failed write: "disk full: ..." when it was."""
    code = error_number(exc)
    if code in _DISK_FULL:
        return WriterError(f"disk full: cannot {doing} {path} ({os.strerror(code)})", code)
    reason = os.strerror(code) if code else str(exc).split("\n")[0][:300]
    return WriterError(f"cannot {doing} {path}: {reason}", code)


def descriptor(file: h5py.File) -> tuple[int, tuple[int, int]]:
    """The file's descriptor (sec2 driver) and (device, inode), or (-1, ...) when unknown."""
    try:
        fd = int(file.id.get_vfd_handle())
        st = os.fstat(fd)
        return fd, (st.st_dev, st.st_ino)
    except (OSError, ValueError, TypeError, RuntimeError):
        return -1, (-1, -1)


def release_descriptor(fd: int, inode: tuple[int, int]) -> None:
    """Point ``fd`` at /dev/null if it still refers to the file ``inode``: the file is released
    and whatever HDF5 still writes there goes nowhere."""
    if fd < 0:
        return
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == inode:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
