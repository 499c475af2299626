"""One writer per run file: a lock file beside it that also holds a little disk space in reserve.

HDF5 locks a file only until SWMR mode is switched on, so the writer keeps its own lock:
``RUN.h5.lock`` with an exclusive ``flock`` held for the writer's life. The kernel releases a
``flock`` when its process ends, however it ends (``kill -9`` included), so a lock file left by
a dead writer is recognised as stale and taken over; a live writer's lock refuses the second
writer with its process id, host and start time. The lock file is removed when the writer
closes.

The lock file also holds :data:`RESERVE_BYTES` of allocated disk space. When the disk fills up
the writer frees it (:meth:`WriterLock.free_reserve`) so that HDF5 has room for the few blocks
that closing the file needs, and the file is left closed and valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_SUFFIX = ".lock"
RESERVE_BYTES = 8 << 20  # room for HDF5 to close a file on a full disk (chunk cache + metadata)
_INFO_BYTES = 4096  # the holder's description at the start of the lock file


class FileBusyError(RuntimeError):
    """Another live process writes this run file."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run file's lock."""

    pid: int
    host: str
    since: float

    def __str__(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"process {self.pid} on {self.host} (since {when})"

    def alive(self) -> bool | None:
        """Is the process still there? None when it runs on another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def lock_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def _read_holder(fd: int) -> Holder | None:
    try:
        text = os.pread(fd, _INFO_BYTES, 0).split(b"\0", 1)[0].decode()
        d = json.loads(text)
        return Holder(int(d["pid"]), str(d["host"]), float(d["since"]))
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def holder(path: str | Path) -> Holder | None:
    """The writer named in a run file's lock file, if there is one (it may have died)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


class WriterLock:
    """The exclusive lock of one run file (see the module docstring); FileBusyError when a
    live writer holds it, OSError when the lock file cannot be made."""

    def __init__(self, path: str | Path, reserve: int = RESERVE_BYTES) -> None:
        self.target = Path(path)
        self.path = lock_path(path)
        self.stale: Holder | None = None  # the dead writer whose lock was taken over
        self.fd = self._acquire()
        self.reserved = 0
        try:
            self._describe()
            self.reserved = self._reserve(reserve)
        except BaseException:
            self.release()
            raise

    def _acquire(self) -> int:
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _read_holder(fd)
                os.close(fd)
                raise FileBusyError(
                    f"{self.target} is being written by {who or 'another process'} "
                    f"(lock {self.path})"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # the previous holder may have removed the file between our open and our lock
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                if os.fstat(fd).st_size:
                    self.stale = _read_holder(fd)
                return fd
            os.close(fd)
        raise FileBusyError(f"{self.target}: its lock {self.path} keeps changing hands")

    def _describe(self) -> None:
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, info.encode().ljust(_INFO_BYTES, b"\0")[:_INFO_BYTES], 0)

    def _reserve(self, nbytes: int) -> int:
        if nbytes <= 0:
            return 0
        try:
            os.posix_fallocate(self.fd, _INFO_BYTES, nbytes)
        except OSError as exc:
            if exc.errno in (95, 22):  # EOPNOTSUPP / EINVAL: no reserve on this filesystem
                return 0
            raise
        return nbytes

    def free_reserve(self) -> int:
        """Give the reserved space back to the filesystem; the bytes freed."""
        freed, self.reserved = self.reserved, 0
        if freed and self.fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, _INFO_BYTES)
        return freed

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and drop the lock."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = -1
        self.reserved = 0
