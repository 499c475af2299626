"""``recvmmsg(2)`` into the rows of a ring buffer: many datagrams per call, checked without the GIL.

Python's socket module reads one datagram per call; with the interpreter's own work that costs the
capture thread ~5 us per datagram, 0.4 of a core at 81 k datagrams/s (GbE, MTU 1500). Linux's
``recvmmsg`` fills up to ``vlen`` buffers in one call; with ``MSG_WAITFORONE`` it blocks (up to the
socket's ``SO_RCVTIMEO``) only for the first datagram and returns what is queued, so a batch grows
with the load and the cost per datagram falls when it matters.

:func:`recv_scan` is one numba kernel (``nogil``) that calls ``recvmmsg`` on a socket descriptor,
stamps the batch with ``CLOCK_MONOTONIC`` (the clock of ``time.monotonic_ns``) and checks every
datagram with :func:`scan_frames`: when all are well-formed data frames (the usual case) their
lengths and arrival times are written to the ring's arrays and the caller only publishes them.
The scan and the credit grant that follows it know the Feminos layout (lead word, SOF_D, size
word, END_OF_FRAME; ``daq`` requests): for a board type without ``batch_scan`` the control array
turns the scan off and every batch is sorted by the board's classifier
(:mod:`agetdaq.readout.link.board`).
:class:`MultiReceiver` prebuilds one ``iovec`` and one ``mmsghdr`` per ring row. ``MSG_TRUNC``
makes a row's ``msg_len`` the datagram's real length, so an oversize datagram is recognised.
Linux on a 64-bit ABI only (:func:`available`); callers keep a one-datagram path for the rest.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import sys

import numpy as np
from numba import njit, types

from agetdaq.readout.link.credit_kernel import fast_grant

MSG_WAITFORONE = 0x10000
CLOCK_MONOTONIC = 1
SOF_MASK, SOF_D, EOF_WORD = 0xFE00, 0x0800, 0x000F
_IOVEC = np.dtype([("base", "<u8"), ("len", "<u8")])
# struct mmsghdr on LP64 Linux: struct msghdr (56 bytes) + unsigned msg_len, padded to 64 bytes
_MMSGHDR = np.dtype(
    [
        ("name", "<u8"),
        ("namelen", "<u4"),
        ("pad0", "<u4"),
        ("iov", "<u8"),
        ("iovlen", "<u8"),
        ("control", "<u8"),
        ("controllen", "<u8"),
        ("flags", "<i4"),
        ("pad1", "<i4"),
        ("len", "<u4"),
        ("pad2", "<u4"),
    ]
)
HDR_BYTES = 64
LEN_AT = 14  # msg_len = uint32 number 14 of a row's mmsghdr
HDR_U32 = HDR_BYTES // 4

_recvmmsg = types.ExternalFunction(
    "recvmmsg", types.intc(types.intc, types.uintp, types.uintc, types.intc, types.uintp)
)
_errno_location = types.ExternalFunction("__errno_location", types.CPointer(types.intc)())
_clock_gettime = types.ExternalFunction("clock_gettime", types.intc(types.intc, types.uintp))


def available() -> bool:
    """True where recvmmsg can be called (Linux with glibc-style libc, 64-bit)."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    try:
        libc = ctypes.CDLL(None)
        return all(hasattr(libc, f) for f in ("recvmmsg", "__errno_location", "clock_gettime"))
    except OSError:
        return False


@njit(cache=True, nogil=True)
def scan_frames(hdr32, words, start, k, slot_size, check, lengths):
    """Rows ``start .. start+k`` hold datagrams of lengths ``hdr32[row * 16 + 14]``. When every
    one is a data frame (SOF_D; with ``check``: size word + 2 = length and last word EOF), write
    the lengths to ``lengths[row]`` and return their sum; else return -1 (nothing is decided:
    the caller goes through the batch datagram by datagram)."""
    total = 0
    for row in range(start, start + k):
        n = hdr32[row * HDR_U32 + LEN_AT]
        if n < 4 or n > slot_size or n & 1:
            return -1
        if words[row, 1] & SOF_MASK != SOF_D:
            return -1
        if check and (n < 8 or words[row, 2] + 2 != n or words[row, n // 2 - 1] != EOF_WORD):
            return -1
    for row in range(start, start + k):
        n = hdr32[row * HDR_U32 + LEN_AT]
        lengths[row] = n
        total += n
    return total


def scan_frames_ref(hdr32, words, start, k, slot_size, check, lengths) -> int:
    """Plain-Python reference of :func:`scan_frames` (same arguments, same result)."""
    ns = [int(hdr32[r * HDR_U32 + LEN_AT]) for r in range(start, start + k)]
    for row, n in zip(range(start, start + k), ns):
        w = [int(x) for x in words[row]]
        if not 4 <= n <= slot_size or n % 2 or (w[1] & SOF_MASK) != SOF_D:
            return -1
        if check and (n < 8 or w[2] + 2 != n or w[n // 2 - 1] != EOF_WORD):
            return -1
    for row, n in zip(range(start, start + k), ns):
        lengths[row] = n
    return sum(ns)


# slots of the int64 control array of recv_scan (C_SCAN 0: no frame scan, every batch is sorted
# by the caller: a board type without the Feminos fast path)
(C_FD, C_HDR_ADDR, C_START, C_VLEN, C_FLAGS, C_SLOT_SIZE, C_CHECK, C_FILL, C_MUTEX,
 C_SCRATCH, C_SCAN) = range(11)  # fmt: skip
N_CONTROL = 11


@njit(cache=True, nogil=True)
def recv_scan(ctl, hdr32, words, lengths, arrivals, ts, st, lat, msg):
    """``recvmmsg`` into rows ``ctl[C_START] ..`` (up to ``ctl[C_VLEN]``), then :func:`scan_frames`,
    then the credit loop's fast path (:func:`agetdaq.readout.link.credit_kernel.fast_grant`) for a
    clean batch. Returns (datagrams read or -1, errno, batch bytes or -1 when not all are clean data
    frames, arrival ns, 1 if the credit of the batch was handled). Arrival times are written only
    for a clean batch."""
    start = ctl[C_START]
    n = _recvmmsg(ctl[C_FD], ctl[C_HDR_ADDR] + HDR_BYTES * start, ctl[C_VLEN], ctl[C_FLAGS], 0)
    err = _errno_location()[0] if n < 0 else 0
    _clock_gettime(CLOCK_MONOTONIC, ts.ctypes.data)
    t = ts[0] * 1_000_000_000 + ts[1]
    if n <= 0 or ctl[C_SCAN] == 0:
        return n, err, -1, t, 0
    total = scan_frames(hdr32, words, start, n, ctl[C_SLOT_SIZE], ctl[C_CHECK] != 0, lengths)
    if total < 0 or start == ctl[C_SCRATCH]:
        return n, err, total, t, 0
    for row in range(start, start + n):
        arrivals[row] = t
    done = fast_grant(st, lat, ctl[C_MUTEX], msg, ts, words, start, n, lengths,
                      ctl[C_FILL] + n, t)  # fmt: skip
    return n, err, total, t, done


def warm_up() -> None:
    """Compile (or load from the cache) the kernels on a closed descriptor."""
    from agetdaq.readout.link.credit_kernel import new_state

    buf = np.zeros((1, 16), dtype=np.uint8)
    ctl = np.zeros(N_CONTROL, dtype=np.int64)
    ctl[C_FD] = -1
    st, lat, msg = new_state()
    recv_scan(ctl, np.zeros(HDR_U32, np.uint32), buf.view(np.uint16), np.zeros(1, np.int32),
              np.zeros(1, np.int64), np.zeros(2, np.int64), st, lat, msg)  # fmt: skip


class MultiReceiver:
    """Batched reads of one socket into the rows of ``buf`` (a C-contiguous 2-D uint8 array)."""

    def __init__(self, sock: socket.socket, buf: np.ndarray) -> None:
        if not available():
            raise OSError("recvmmsg is not available on this platform")
        if buf.ndim != 2 or buf.dtype != np.uint8 or not buf.flags.c_contiguous:
            raise ValueError("buf must be a C-contiguous 2-D uint8 array")
        if buf.shape[1] % 2:
            raise ValueError("rows must hold whole 16-bit words")
        self.buf = buf  # keeps the memory the iovecs point at alive
        rows, row_bytes = buf.shape
        self.words = buf.view(np.uint16)
        self._iov = np.zeros(rows, dtype=_IOVEC)
        self._iov["base"] = buf.ctypes.data + row_bytes * np.arange(rows, dtype=np.uint64)
        self._iov["len"] = row_bytes
        self._hdr = np.zeros(rows, dtype=_MMSGHDR)
        step = np.arange(rows, dtype=np.uint64) * np.uint64(_IOVEC.itemsize)
        self._hdr["iov"] = self._iov.ctypes.data + step
        self._hdr["iovlen"] = 1
        self.hdr_addr = self._hdr.ctypes.data
        self.hdr32 = self._hdr.view(np.uint32).reshape(-1)
        self.lengths_view = memoryview(self.hdr32)  # length of row r at r * 16 + 14
        self.fd = sock.fileno()
        self.flags = MSG_WAITFORONE | socket.MSG_TRUNC
        self._ts = np.zeros(2, dtype=np.int64)
        from agetdaq.readout.link.credit_kernel import new_state

        self._no_credit = new_state()  # fast path disabled: S_ENABLED = 0

    def recv(
        self, row: int, vlen: int, lengths: np.ndarray, arrivals: np.ndarray, check: bool = True
    ) -> tuple[int, int, int]:
        """Read up to ``vlen`` datagrams into rows ``row, row + 1, ...`` (blocks for the first up
        to SO_RCVTIMEO). Returns (count, batch bytes or -1 if not all clean data frames, arrival
        ns). Raises BlockingIOError on timeout, ConnectionRefusedError for a pending ICMP error,
        OSError otherwise."""
        ctl = self.control(check, scratch=-1)
        ctl[C_START], ctl[C_VLEN] = row, vlen
        n, err, total, t, _ = recv_scan(ctl, self.hdr32, self.words, lengths, arrivals, self._ts,
                                        *self._no_credit)  # fmt: skip
        if n >= 0:
            return n, total, t
        raise_for_errno(err)
        raise AssertionError("unreachable")

    def control(self, check: bool, scratch: int, mutex: int = 0, scan: bool = True) -> np.ndarray:
        """A control array for :func:`recv_scan` (start, vlen and fill set per call); ``scan``
        False = no frame scan (every batch comes back as not clean)."""
        ctl = np.zeros(N_CONTROL, dtype=np.int64)
        ctl[C_FD], ctl[C_HDR_ADDR], ctl[C_FLAGS] = self.fd, self.hdr_addr, self.flags
        ctl[C_SLOT_SIZE], ctl[C_CHECK] = self.buf.shape[1], int(check)
        ctl[C_MUTEX], ctl[C_SCRATCH], ctl[C_SCAN] = mutex, scratch, int(scan)
        return ctl

    def length(self, row: int) -> int:
        """Real length in bytes of the datagram last read into ``row`` (may exceed the row)."""
        return self.lengths_view[row * HDR_U32 + LEN_AT]


def raise_for_errno(err: int) -> None:
    """The exception a failed receive with ``errno`` = err maps to."""
    if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
        raise BlockingIOError(err, "no datagram")
    if err == errno.ECONNREFUSED:
        raise ConnectionRefusedError(err, "connection refused")
    raise OSError(err, f"recvmmsg: {errno.errorcode.get(err, err)}")
