"""The credit loop's state, owned by it and shared with the capture kernel, and its merged counts.

:class:`CreditState` is what :class:`agetdaq.readout.link.credit.CreditLoop` owns: the per-frame
state lives in an int64 array (``S_*`` slots of :mod:`agetdaq.readout.link.credit_kernel`) that the
capture kernel reads and updates for a clean in-sequence batch, GIL-free; the attributes below
read and write that array. The flags only Python sets (running, first request, byte budget, capture
tap) live here and decide whether the kernel may grant at all (``S_ENABLED``). The counters and
latency samples of both paths are merged when read.

Threads: ``returned``, ``bytes_in`` and ``expect`` are written by the capture thread only,
everything else under :attr:`CreditState.lock` (a pthread mutex the kernel takes too).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from agetdaq.readout.link import credit_kernel as ck
from agetdaq.readout.link import mmsg
from agetdaq.readout.link.counters import CreditCounters, LatencyHistogram


def socket_fd(send: Callable[[bytes], object]) -> int:
    """The descriptor behind ``sock.send`` (the kernel sends on it), or -1."""
    owner = getattr(send, "__self__", None)
    if isinstance(owner, socket.socket) and mmsg.available():
        return owner.fileno()
    return -1


class FastState(NamedTuple):
    """What the capture kernel grants from (:func:`.credit_kernel.fast_grant`)."""

    state: np.ndarray  # int64 S_* slots
    latency: np.ndarray  # latency bins
    mutex: int  # address of the shared pthread mutex
    msg: np.ndarray  # request buffer
    ts: np.ndarray  # clock buffer


def _slot(ix: int, kind: type = int) -> property:
    """An attribute kept in the kernel-shared state array."""

    def get(self: CreditState):
        return kind(self.st[ix])

    def set_(self: CreditState, value) -> None:
        self.st[ix] = int(value)

    return property(get, set_)


def _flag(name: str) -> property:
    """A Python-only flag; setting it recomputes whether the kernel may grant."""
    key = f"_{name}"

    def get(self: CreditState):
        return getattr(self, key)

    def set_(self: CreditState, value) -> None:
        setattr(self, key, value)
        self._refresh_fast()

    return property(get, set_)


class CreditState:
    """Kernel-shared state slots, the fast path's enable flag, the lock and merged counts.
    ``fd`` = the socket the kernel sends requests on (-1: no kernel grants)."""

    returned = _slot(ck.S_RETURNED)  # credit earned by received frames
    regranted = _slot(ck.S_REGRANTED)  # credit given back
    bytes_in = _slot(ck.S_BYTES_IN)  # data bytes received
    expect = _slot(ck.S_EXPECT)  # next data tag (0x200: unknown, matches none)
    seq = _slot(ck.S_SEQ)  # sequence number of the next request
    held = _slot(ck.S_HELD, bool)  # grants held (back-pressure)
    threshold = _slot(ck.S_THRESHOLD)
    hold_at = _slot(ck.S_HOLD_AT)  # ring fill at which grants are held
    unit_bytes = _slot(ck.S_UNIT_BYTES)  # 1: credit = datagram bytes, 0: 1 per frame
    running = _flag("running")
    first = _flag("first")  # next request goes without sequence number
    budget_end = _flag("budget_end")  # bytes_in at which granting stops (None: no budget)
    tap = _flag("tap")  # capture tap: requests must go through Python

    def __init__(self, fd: int = -1) -> None:
        self.st, self.lat, self.msg = ck.new_state()
        self.ts = np.zeros(2, dtype=np.int64)
        self.fd = fd
        self._running = False
        self._first = True
        self._budget_end: int | None = None
        self._tap: Callable[[str, bytes, int], None] | None = None
        self.shared = ck.SharedLock() if fd >= 0 else None
        self.lock: ck.SharedLock | threading.Lock = self.shared or threading.Lock()
        self.counters = CreditCounters()  # the Python path's
        self.latency = LatencyHistogram()  # the Python path's

    def _refresh_fast(self) -> None:
        """Let the kernel grant only in the plain case it knows (module credit_kernel)."""
        self.st[ck.S_ENABLED] = int(
            self.fd >= 0
            and self._running
            and not self._first
            and self._budget_end is None
            and self._tap is None
        )

    def fast_state(self) -> FastState | None:
        """The kernel's view, or None when requests cannot be sent from there."""
        if self.shared is None:
            return None
        self.st[ck.S_FD] = self.fd
        return FastState(self.st, self.lat, self.shared.address, self.msg, self.ts)

    def merged_counters(self) -> CreditCounters:
        """Counters of the Python path and of the kernel's fast path together (a copy)."""
        st = self.st
        c = self.counters
        return replace(
            c,
            requests_sent=c.requests_sent + int(st[ck.S_REQUESTS]),
            credit_sent=c.credit_sent + int(st[ck.S_CREDIT_SENT]),
            holds=c.holds + int(st[ck.S_HOLDS]),
            send_errors=c.send_errors + int(st[ck.S_SEND_ERRORS]),
        )

    def merged_latency(self) -> LatencyHistogram:
        """Re-grant latency of both paths (a copy)."""
        st, own = self.st, self.latency
        merged = LatencyHistogram(own.bin_ns, own.n_bins)
        merged.counts = list(own.counts)
        if own.bin_ns == ck.LAT_BIN_NS and own.n_bins == ck.LAT_BINS:
            for ix in np.flatnonzero(self.lat).tolist():
                merged.counts[ix] += int(self.lat[ix])
        merged.overflow = own.overflow + int(st[ck.S_LAT_OVER])
        merged.n = own.n + int(st[ck.S_LAT_N])
        merged.sum_ns = own.sum_ns + int(st[ck.S_LAT_SUM])
        merged.max_ns = max(own.max_ns, int(st[ck.S_LAT_MAX]))
        return merged

    def reset_latency(self) -> None:
        """Forget the latency samples so far (both paths)."""
        with self.lock:
            self.latency.reset()
            self.lat[:] = 0
            self.st[[ck.S_LAT_N, ck.S_LAT_SUM, ck.S_LAT_MAX, ck.S_LAT_OVER]] = 0
