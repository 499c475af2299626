"""The credit loop's fast path without the GIL: grant from the capture kernel, right after recv.

:class:`agetdaq.readout.link.credit.CreditLoop` keeps its per-frame state in an int64 array (``S_*``
slots, owned by its :class:`~agetdaq.readout.link.credit_state.CreditState`) so that
:func:`fast_grant`, called by the capture loop's ``recvmmsg`` kernel (agetdaq.readout.link.mmsg) for
a batch of clean data frames, can do what :meth:`CreditLoop.on_frames` does in the usual case (every
lead word in sequence, running, no byte budget, no capture tap) and send the request itself: the
re-grant then never waits for the interpreter lock, which the data path may hold for milliseconds
(HDF5 compression). Anything else (a sequence break, a first reply, the loop stopped) returns 0 and
the batch goes through the Python path.

Requests go out under :class:`SharedLock`, a pthread mutex that both the kernel and Python (via
ctypes, which releases the GIL while it waits) take, so request sequence numbers stay in order
whoever sends. Latency samples (arrival stamp -> ``send`` called, 1 us bins) go to an array that
the loop folds into its :class:`~agetdaq.readout.link.counters.LatencyHistogram` when read.
The request text is the Feminos one (``daq 0x.. F|B 0x..``): only board types with ``batch_scan``
get here (:mod:`agetdaq.readout.link.board`).
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit, types

from agetdaq.protocol.commands import MAX_DAQ_AMOUNT

# slots of the state array
S_ENABLED = 0  # 1: the kernel may account and grant (set by Python under the lock)
S_EXPECT = 1  # next data lead word (0x200: unknown, matches none)
S_RETURNED = 2  # credit earned by received frames (capture thread only)
S_REGRANTED = 3  # credit given back (under the lock)
S_BYTES_IN = 4  # data bytes received (capture thread only)
S_SEQ = 5  # sequence number of the next request (under the lock)
S_THRESHOLD = 6
S_UNIT_BYTES = 7  # 0: unit F (1 per frame), 1: unit B (datagram bytes)
S_HOLD_AT = 8  # ring fill at which grants are held
S_HELD = 9
S_FD = 10  # socket descriptor the requests go to
S_REQUESTS = 11  # counters of the kernel's own requests
S_CREDIT_SENT = 12
S_HOLDS = 13
S_SEND_ERRORS = 14
S_LAT_N = 15
S_LAT_SUM = 16
S_LAT_MAX = 17
S_LAT_OVER = 18
N_SLOTS = 20
LAT_BIN_NS = 1_000
LAT_BINS = 10_000
MSG_BYTES = 32
MUTEX_BYTES = 64  # >= sizeof(pthread_mutex_t) (40 on x86-64 glibc); all zeros = initialiser

_send = types.ExternalFunction("send", types.intp(types.intc, types.uintp, types.uintp, types.intc))
_lock = types.ExternalFunction("pthread_mutex_lock", types.intc(types.uintp))
_unlock = types.ExternalFunction("pthread_mutex_unlock", types.intc(types.uintp))
_clock_gettime = types.ExternalFunction("clock_gettime", types.intc(types.intc, types.uintp))
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()
_HEAD = np.frombuffer(b"daq 0x", dtype=np.uint8).copy()


class SharedLock:
    """A pthread mutex in a numpy buffer: a context manager for Python, an address for kernels."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None)
        self._lock_fn = libc.pthread_mutex_lock
        self._unlock_fn = libc.pthread_mutex_unlock
        self._lock_fn.argtypes = self._unlock_fn.argtypes = (ctypes.c_void_p,)
        self._mem = np.zeros(MUTEX_BYTES, dtype=np.uint8)
        self.address = self._mem.ctypes.data

    def __enter__(self) -> SharedLock:
        self._lock_fn(self.address)  # ctypes releases the GIL while it waits
        return self

    def __exit__(self, *exc: object) -> None:
        self._unlock_fn(self.address)


@njit(cache=True, nogil=True)
def format_request(out, amount, unit_bytes, seq):
    """``daq 0x<amount:06x> F|B 0x<seq:02x>`` as ASCII into ``out``; returns its length."""
    for i in range(6):
        out[i] = _HEAD[i]
    for i in range(6):
        out[6 + i] = _HEX[(amount >> (4 * (5 - i))) & 0xF]
    out[12] = 32
    out[13] = 66 if unit_bytes else 70
    out[14] = 32
    out[15] = 48
    out[16] = 120
    out[17] = _HEX[(seq >> 4) & 0xF]
    out[18] = _HEX[seq & 0xF]
    return 19


@njit(cache=True, nogil=True)
def fast_grant(st, lat, mutex, msg, ts, words, start, k, lengths, fill, t):
    """Credit of data frames in ring rows ``start .. start+k`` (arrival ``t`` ns; the ring holds
    ``fill`` frames with them): account and, when due, grant. Returns 1 when done here, 0 when
    the Python path must take the batch (nothing changed then)."""
    if st[S_ENABLED] == 0:
        return 0
    exp = st[S_EXPECT]
    unit_bytes = st[S_UNIT_BYTES]
    credit = 0
    nbytes = 0
    for row in range(start, start + k):
        if words[row, 0] != exp:
            return 0
        exp = (exp + 1) & 0xFF
        nbytes += lengths[row]
    credit = nbytes if unit_bytes else k
    st[S_EXPECT] = exp
    st[S_RETURNED] += credit
    st[S_BYTES_IN] += nbytes
    _lock(mutex)
    if st[S_ENABLED] != 0 and st[S_HELD] == 0:
        pending = st[S_RETURNED] - st[S_REGRANTED]
        if pending >= st[S_THRESHOLD]:
            if fill >= st[S_HOLD_AT]:
                st[S_HELD] = 1
                st[S_HOLDS] += 1
            else:
                amount = min(pending, MAX_DAQ_AMOUNT)
                n = format_request(msg, amount, unit_bytes, st[S_SEQ])
                _clock_gettime(1, ts.ctypes.data)
                t_send = ts[0] * 1_000_000_000 + ts[1]
                if _send(st[S_FD], msg.ctypes.data, n, 0) == n:
                    st[S_REGRANTED] += amount
                    st[S_SEQ] = (st[S_SEQ] + 1) & 0xFF
                    st[S_REQUESTS] += 1
                    st[S_CREDIT_SENT] += amount
                    d = t_send - t
                    b = d // LAT_BIN_NS
                    if 0 <= b < LAT_BINS:
                        lat[b] += 1
                    else:
                        st[S_LAT_OVER] += 1
                    st[S_LAT_N] += 1
                    st[S_LAT_SUM] += d
                    if d > st[S_LAT_MAX]:
                        st[S_LAT_MAX] = d
                else:
                    st[S_SEND_ERRORS] += 1
    _unlock(mutex)
    return 1


def new_state() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state slots, latency bins, request buffer) for one credit loop."""
    st = np.zeros(N_SLOTS, dtype=np.int64)
    st[S_EXPECT] = 0x200
    st[S_FD] = -1
    return st, np.zeros(LAT_BINS, dtype=np.int64), np.zeros(MSG_BYTES, dtype=np.uint8)
