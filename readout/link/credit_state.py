"""The credit loop's state shared with the receiver's capture kernel, and its reporting.

:class:`CreditState` is the base of :class:`agetdaq.readout.link.credit.CreditLoop`: the per-frame
state lives in an int64 array (``S_*`` slots of :mod:`agetdaq.readout.link.credit_kernel`) that the
capture kernel reads and updates for a clean in-sequence batch, GIL-free; the counters and latency
the kernel keeps are merged with the Python path's here.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from agetdaq.readout.link import credit_kernel as ck
from agetdaq.readout.link import mmsg
from agetdaq.readout.link.counters import CreditCounters, LatencyHistogram
from agetdaq.readout.link.credit_config import CreditConfig


def socket_fd(send: Callable[[bytes], object]) -> int:
    """The descriptor behind ``sock.send`` (the kernel sends on it), or -1."""
    owner = getattr(send, "__self__", None)
    if isinstance(owner, socket.socket) and mmsg.available():
        return owner.fileno()
    return -1


def _slot(ix: int, kind: type = int, refresh: bool = False, name: str = "") -> property:
    """An attribute kept in the kernel-shared state array (or, for the ``refresh`` ones, in the
    instance, recomputing the kernel's enable flag when set)."""
    if refresh:
        key = f"_v_{name}"

        def get_r(self):
            return self.__dict__.get(key)

        def set_r(self, value) -> None:
            self.__dict__[key] = value
            self._refresh_fast()

        return property(get_r, set_r)

    def get(self):
        return kind(self._st[ix])

    def set_(self, value) -> None:
        self._st[ix] = int(value)

    return property(get, set_)


class CreditState:
    """Kernel-shared state slots, the fast path's enable flag, merged counters and reporting
    (the request logic is :class:`agetdaq.readout.link.credit.CreditLoop`'s)."""

    _st: np.ndarray
    _lat: np.ndarray
    _msg: np.ndarray
    _ts: np.ndarray
    _fd: int
    _tap: Callable[[str, bytes, int], None] | None
    _shared: ck.SharedLock | None
    _lock: ck.SharedLock | threading.Lock
    _counters: CreditCounters
    _latency: LatencyHistogram
    config: CreditConfig

    # ---- state shared with the capture kernel (agetdaq.readout.link.credit_kernel)
    # ---------------------------
    _returned = _slot(ck.S_RETURNED)
    _regranted = _slot(ck.S_REGRANTED)
    _bytes_in = _slot(ck.S_BYTES_IN)
    _expect = _slot(ck.S_EXPECT)
    _seq = _slot(ck.S_SEQ)
    _held = _slot(ck.S_HELD, bool)
    _threshold = _slot(ck.S_THRESHOLD)
    _hold_at = _slot(ck.S_HOLD_AT)
    _running = _slot(ck.S_ENABLED, refresh=True, name="running")
    _first = _slot(ck.S_ENABLED, refresh=True, name="first")
    _budget_end = _slot(ck.S_ENABLED, refresh=True, name="budget_end")

    @property
    def tap(self) -> Callable[[str, bytes, int], None] | None:
        """Optional capture tap: tap("tx", request, monotonic ns) before each request is sent."""
        return self._tap

    @tap.setter
    def tap(self, tap: Callable[[str, bytes, int], None] | None) -> None:
        self._tap = tap
        self._refresh_fast()

    def _refresh_fast(self) -> None:
        """Let the kernel grant only in the plain case it knows (module
        agetdaq.readout.link.credit_kernel)."""
        d = self.__dict__
        self._st[ck.S_ENABLED] = int(
            self._fd >= 0
            and d.get("_v_running", False)
            and not d.get("_v_first", True)
            and d.get("_v_budget_end") is None
            and d.get("_tap") is None
        )

    def fast_state(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray, np.ndarray] | None:
        """(state, latency bins, mutex address, request buffer, time buffer) for the receiver's
        kernel, or None when requests cannot be sent from there."""
        if self._shared is None:
            return None
        self._st[ck.S_FD] = self._fd
        return self._st, self._lat, self._shared.address, self._msg, self._ts

    @property
    def counters(self) -> CreditCounters:
        """Counters of the Python path and of the kernel's fast path together (a copy)."""
        st = self._st
        c = self._counters
        return replace(
            c,
            requests_sent=c.requests_sent + int(st[ck.S_REQUESTS]),
            credit_sent=c.credit_sent + int(st[ck.S_CREDIT_SENT]),
            holds=c.holds + int(st[ck.S_HOLDS]),
            send_errors=c.send_errors + int(st[ck.S_SEND_ERRORS]),
        )

    @property
    def latency(self) -> LatencyHistogram:
        """Re-grant latency of both paths (a copy)."""
        st, own = self._st, self._latency
        merged = LatencyHistogram(own.bin_ns, own.n_bins)
        merged.counts = list(own.counts)
        if own.bin_ns == ck.LAT_BIN_NS and own.n_bins == ck.LAT_BINS:
            for ix in np.flatnonzero(self._lat).tolist():
                merged.counts[ix] += int(self._lat[ix])
        merged.overflow = own.overflow + int(st[ck.S_LAT_OVER])
        merged.n = own.n + int(st[ck.S_LAT_N])
        merged.sum_ns = own.sum_ns + int(st[ck.S_LAT_SUM])
        merged.max_ns = max(own.max_ns, int(st[ck.S_LAT_MAX]))
        return merged

    def reset_latency(self) -> None:
        """Forget the latency samples so far (both paths)."""
        with self._lock:
            self._latency.reset()
            self._lat[:] = 0
            self._st[[ck.S_LAT_N, ck.S_LAT_SUM, ck.S_LAT_MAX, ck.S_LAT_OVER]] = 0

    # ---- reporting ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, object]:
        with self._lock:
            end = self._budget_end
            return {
                "running": self._running,
                "held": self._held,
                "unit": self.config.unit,
                "window": self.config.window,
                "threshold": self.config.threshold,
                "pending": self.pending,
                "outstanding": self.outstanding,
                "next_seq": None if self._first else self._seq,
                "budget_left": None if end is None else end - self._bytes_in,
                **self.counters.as_dict(),
                "regrant_latency": self.latency.summary(),
            }

    def describe(self) -> str:
        """One line for ``credits show``."""
        s = self.snapshot()
        return (
            f"credits: window {s['window']} {s['unit']}, threshold {s['threshold']}, "
            f"pending {s['pending']}, outstanding {s['outstanding']}, "
            f"{'running' if s['running'] else 'stopped'}{' (held)' if s['held'] else ''}"
        )
