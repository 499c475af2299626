"""Opening an HDF5 run file for reading so that a damaged file never hangs the reader.

Three things HDF5 does not do for us:

* **Bounded retries.** A file opened for SWMR reading (needed while a writer may append) makes
  HDF5 re-read every metadata block whose checksum is wrong, up to 100 times, sleeping 1 ns,
  2 ns, 4 ns ... in between (``H5C__load_entry``): 2^100 ns for a block that is really damaged,
  i.e. forever for a file cut short. The reader sets the attempts to :data:`READ_ATTEMPTS`
  (2^N ns in all: ~17 ms per damaged block, far longer than a live writer takes to write one).
* **Truncation.** SWMR reading skips HDF5's end-of-file check, so the reader compares the file's
  size with the end address in the superblock itself (:class:`Superblock`).
* **A file left flagged "open for writing"** by a writer that died outside SWMR mode (e.g. an older
  agetdaq killed while writing ``meta_out``): HDF5 refuses it until ``h5clear -s``. The reader
  opens it through a view whose superblock has the flag cleared (:class:`FlagClearedView`): the
  file on disk is not touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import h5py

H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)  # what h5py raises on damaged content
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
READ_ATTEMPTS = 24  # 2^24 ns ~ 17 ms of retries for one damaged metadata block
FLAG_WRITE = 0x01  # superblock v2/v3 status flags
FLAG_SWMR_WRITE = 0x04


@dataclass(frozen=True)
class Superblock:
    """What the reader needs from an HDF5 superblock (versions 0-3 at offset 0)."""

    version: int
    flags: int
    end_of_file: int  # the file's end address as the writer last recorded it
    raw: bytes  # the superblock bytes (v2/v3, checksum included)

    @property
    def open_for_write(self) -> bool:
        return bool(self.flags & FLAG_WRITE)

    @property
    def swmr_write(self) -> bool:
        return bool(self.flags & FLAG_SWMR_WRITE)


def read_superblock(path: str | Path) -> Superblock | None:
    """The superblock at offset 0, or None when the file does not start with one."""
    with open(path, "rb") as f:
        head = f.read(96)
    if not head.startswith(HDF5_MAGIC) or len(head) < 12:
        return None
    version = head[8]
    if version in (2, 3):
        size_o = head[9]
        if size_o not in (2, 4, 8) or len(head) < 12 + 4 * size_o + 4:
            return None
        flags = head[11]
        base = _address(head, 12, size_o)
        eof = _address(head, 12 + 2 * size_o, size_o)
        raw = head[: 12 + 4 * size_o + 4]
    elif version in (0, 1):
        size_o = head[13]
        start = 24 if version == 0 else 28
        if size_o not in (2, 4, 8) or len(head) < start + 3 * size_o:
            return None
        flags = int.from_bytes(head[20:24], "little")
        base = _address(head, start, size_o)
        eof = _address(head, start + 2 * size_o, size_o)
        raw = b""
    else:
        return None
    return Superblock(version, flags, base + eof, raw)


def _address(buf: bytes, at: int, size: int) -> int:
    return int.from_bytes(buf[at : at + size], "little")


def h5_reason(exc: BaseException) -> str:
    """The useful part of an h5py error message (the reason HDF5 gives in parentheses)."""
    text = str(exc).split("\n")[0]
    if "(" in text and text.endswith(")"):
        text = text[text.index("(") + 1 : -1]
    return text[:200] or type(exc).__name__


def locked_by_writer(path: str | Path) -> bool:
    """Does a live process hold HDF5's own lock on the file (a writer outside SWMR mode)?"""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the probe's lock
    return False


# ---- the superblock checksum -------------------------------------------------------------------


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & 0xFFFFFFFF


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    m = 0xFFFFFFFF
    for x, y, z, k in ((0, 2, 1, 4), (1, 0, 2, 6), (2, 1, 0, 8), (0, 2, 1, 16), (1, 0, 2, 19),
                       (2, 1, 0, 4)):  # fmt: skip
        v = [a, b, c]
        v[x] = ((v[x] - v[y]) & m) ^ _rot(v[y], k)
        v[y] = (v[y] + v[z]) & m
        a, b, c = v
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    m = 0xFFFFFFFF
    for x, y, k in ((2, 1, 14), (0, 2, 11), (1, 0, 25), (2, 1, 16), (0, 2, 4), (1, 0, 14),
                    (2, 1, 24)):  # fmt: skip
        v = [a, b, c]
        v[x] = ((v[x] ^ v[y]) - _rot(v[y], k)) & m
        a, b, c = v
    return c


def lookup3(data: bytes, initval: int = 0) -> int:
    """HDF5's metadata checksum (``H5_checksum_lookup3``: Bob Jenkins' hashlittle) of ``data``."""
    m = 0xFFFFFFFF
    a = b = c = (0xDEADBEEF + len(data) + initval) & m
    n, i = len(data), 0
    while n > 12:
        x, y, z = struct.unpack_from("<3I", data, i)
        a, b, c = _mix((a + x) & m, (b + y) & m, (c + z) & m)
        n -= 12
        i += 12
    if n == 0:
        return c
    x, y, z = struct.unpack("<3I", data[i:] + bytes(12 - n))
    return _final((a + x) & m, (b + y) & m, (c + z) & m)


def cleared_superblock(sb: Superblock) -> bytes:
    """The v2/v3 superblock bytes with the status flags cleared and the checksum redone."""
    body = bytearray(sb.raw[:-4])
    body[11] = 0
    return bytes(body) + struct.pack("<I", lookup3(bytes(body)))


class FlagClearedView(io.RawIOBase):
    """A read-only view of a file whose first bytes (the superblock) are replaced."""

    def __init__(self, path: str | Path, head: bytes) -> None:
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed with the view
        self._head = head
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._f.fileno()).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        n = os.preadv(self._f.fileno(), [view], self._pos)
        end = min(self._pos + n, len(self._head))
        if self._pos < end:
            view[: end - self._pos] = self._head[self._pos : end]
        self._pos += n
        return n

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
        super().close()


# ---- HDF5 file access with bounded metadata retries ----------------------------------------


def _hdf5_library() -> ctypes.CDLL | None:
    """The libhdf5 h5py is linked with (already loaded in this process), for the one setting
    h5py does not expose."""
    candidates = []
    with contextlib.suppress(OSError), open("/proc/self/maps") as maps:
        for line in maps:
            name = line.rsplit(None, 1)[-1]
            base = os.path.basename(name)
            if base.startswith("libhdf5") and not base.startswith("libhdf5_hl"):
                candidates.append(name)
    found = ctypes.util.find_library("hdf5")
    if found:
        candidates.append(found)
    for name in dict.fromkeys(candidates):
        with contextlib.suppress(OSError, AttributeError):
            lib = ctypes.CDLL(name)
            lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
            lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
            return lib
    return None


_LIB: list[ctypes.CDLL | None] = []


def bounded_fapl(attempts: int = READ_ATTEMPTS) -> h5py.h5p.PropFAID:
    """A file-access property list: latest format, at most ``attempts`` metadata reads."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    if not _LIB:
        _LIB.append(_hdf5_library())
    if _LIB[0] is not None:
        _LIB[0].H5Pset_metadata_read_attempts(fapl.id, attempts)
    return fapl


def retries_bounded() -> bool:
    """Could the reader bound HDF5's metadata retries (libhdf5 found)?"""
    bounded_fapl()
    return _LIB[0] is not None


def open_swmr_read(path: str | Path) -> h5py.File:
    """The file opened for SWMR reading with bounded retries (OSError as h5py raises it)."""
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                        fapl=bounded_fapl())  # fmt: skip
    return h5py.File(fid)


def open_flag_cleared(path: str | Path, sb: Superblock) -> tuple[h5py.File, FlagClearedView]:
    """A file flagged "open for writing" read through a view with the flag cleared."""
    view = FlagClearedView(path, cleared_superblock(sb))
    fapl = bounded_fapl()
    fapl.set_fileobj_driver(h5py.h5fd.fileobj_driver, view)
    try:
        fid = h5py.h5f.open(b"fileobj", h5py.h5f.ACC_RDONLY, fapl=fapl)
    except BaseException:
        view.close()
        raise
    return h5py.File(fid), view
