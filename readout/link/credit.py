"""Credit flow control of one BEC (PROTOCOL.md §3.4): the board sends data frames only while it
holds send allowance, so the PC keeps a fixed window of credit in flight and returns what it
receives.

Design
------
* **Window.** ``start()`` sends the whole window in one request *without* sequence number (this
  resets the card's request and reply indices, so its next data frame carries the first-reply flag
  0x0100). Afterwards every data frame seen returns 1 frame (unit F) or its datagram length in
  bytes (unit B: the card subtracts the UDP payload length, lead word included) to ``pending``;
  when ``pending`` reaches the threshold it is granted with ``daq 0x<credit> U 0x<seq>``, seq
  counting 0x00, 0x01, ... mod 256. ``credits restore 8 1 F`` = window 8 frames, threshold 1.
* **In the capture thread.** :meth:`CreditLoop.on_frame` runs in the receiver's capture thread
  right after ``recv_into``, so the re-grant latency (arrival stamp after ``recv_into`` -> ``send``
  called) is a few microseconds; it is recorded in :attr:`CreditLoop.latency`. It does not see
  the time a returning ``recv_into`` waits for the GIL while another thread holds it (at most the
  interpreter switch interval, 5 ms by default). Throughput = window / turnaround.
* **Back-pressure.** When the ring holds ``high_water`` of its capacity, grants are held (the credit
  keeps accumulating in ``pending``) so the board keeps its data instead of us dropping it; they
  resume once the consumer has released the ring down to ``low_water``. The ring must have room for
  one window above ``high_water``; :meth:`attach_ring` warns otherwise.
* **Lost frames.** The data lead word carries an 8-bit reply sequence. A gap of k means k frames the
  card sent (and charged) never reached us: they are counted in ``lost_replies`` and credited back
  so the window does not shrink over a weeks-long run (never more than the credit in flight). In
  unit B their sizes are unknown: [I] they are credited at the size of the frame showing the gap.
* **Budget** (client ``DAQ N``): in unit B requests are capped at the bytes left; once the budget is
  received a zero-size request is sent and the next start is a first request again (as feminos-daq).
* **Stop** = no more grants; :class:`agetdaq.readout.link.board_link.BoardLink` then sends the pause
  request ``daq 0xFFFFFF F`` (which gets a reply) through its command channel.

* **Cost.** Each request is one ``send`` syscall (3-5 us); a threshold above 1 divides their
  number (``credits restore 16 4 F`` sends one request per 4 frames and keeps >= 12 in flight).

* **Fast path.** The per-frame state lives in an int64 array shared with the receiver's capture
  kernel, which accounts a clean in-sequence batch and sends its request itself, GIL-free
  (:mod:`agetdaq.readout.link.credit_kernel`); the Python path below handles everything else. Both
  send under one pthread mutex (:class:`agetdaq.readout.link.credit_kernel.SharedLock`); the shared
  state and the reporting are :mod:`agetdaq.readout.link.credit_state`'s, the settings
  :mod:`agetdaq.readout.link.credit_config`'s.

Threads: the per-frame accounting is lock-free (single-writer counters, see :class:`CreditLoop`);
requests are sent under one lock, from the capture thread (data arrival), the consumer thread
(ring released after a hold) or the control thread (start), so sequence numbers stay in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from agetdaq.protocol.commands import DAQ_PAUSE, MAX_DAQ_AMOUNT, format_daq_request
from agetdaq.readout.link import credit_kernel as ck
from agetdaq.readout.link.counters import CreditCounters, LatencyHistogram
from agetdaq.readout.link.credit_config import CreditConfig
from agetdaq.readout.link.credit_state import CreditState, socket_fd

log = logging.getLogger(__name__)

PAUSE_REQUEST = format_daq_request(DAQ_PAUSE, "F")
_CACHE_LIMIT = 4096


class CreditLoop(CreditState):
    """Credit state of one board; ``send(datagram)`` puts a request on the board socket.

    Hot path without lock: ``_returned`` (credit earned by data frames), ``_bytes_in`` and
    ``_expect`` are written by the capture thread only; ``_regranted`` (credit given back) is
    written under the lock only. ``pending = _returned - _regranted``: no read-modify-write is
    shared between threads, so no update can be lost over weeks of running.
    """

    def __init__(
        self,
        send: Callable[[bytes], object],
        config: CreditConfig | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self._send = send
        self._st, self._lat, self._msg = ck.new_state()
        self._ts = np.zeros(2, dtype=np.int64)
        self._fd = socket_fd(send)
        self._tap: Callable[[str, bytes, int], None] | None = None
        self._running = False
        self._first = True
        self._budget_end: int | None = None
        self._clock = clock
        self.config = config or CreditConfig()
        self._counters = CreditCounters()
        self._latency = LatencyHistogram()
        self._shared = ck.SharedLock() if self._fd >= 0 else None
        self._lock = self._shared if self._shared is not None else threading.Lock()
        self._fill: Callable[[], int] = lambda: 0
        self._capacity = 0
        self._hold_at = 1 << 62
        self._resume_at = 1 << 62
        self._cache: dict[int, bytes] = {}
        # capture-thread accumulators (never reset, only re-based)
        self._returned = 0
        self._bytes_in = 0
        self._expect = 0x200  # next data lead word; 0x200 = unknown (matches no lead)
        self._reset_state()

    def _reset_state(self) -> None:
        cfg = self.config
        self._running = False
        self._held = False
        self._first = True  # next request goes without sequence number
        self._seq = 0
        self._regranted = self._returned  # pending = 0
        self._window = cfg.window
        self._budget_end = None
        self._unit_credit = 1 if cfg.unit == "F" else 0  # 0: credit = datagram bytes
        self._threshold = max(1, cfg.threshold)  # 0 = grant whatever is pending
        self._st[ck.S_UNIT_BYTES] = 1 - self._unit_credit

    # ---- wiring ------------------------------------------------------------------------------
    def attach_ring(self, fill: Callable[[], int], capacity: int) -> None:
        """Called by the receiver: ``fill()`` = frames waiting in its ring of ``capacity`` slots."""
        self._fill = fill
        self._capacity = capacity
        self._apply_water_marks()

    def _apply_water_marks(self) -> None:
        if not self._capacity:
            return
        cfg = self.config
        self._hold_at = max(1, int(cfg.high_water * self._capacity))
        self._resume_at = int(cfg.low_water * self._capacity)
        if cfg.unit == "F" and self._hold_at + cfg.window > self._capacity:
            log.warning(
                "credit window %d F does not fit above the ring's high-water mark (%d of %d slots):"
                " the ring can overflow",
                cfg.window,
                self._hold_at,
                self._capacity,
            )

    def configure(self, config: CreditConfig) -> None:
        """New window / threshold (``credits restore``); applies from the next :meth:`start`."""
        with self._lock:
            self.config = config
            self._apply_water_marks()
            if self._running:
                log.info("credit configuration changed while running: applies at next start")

    # ---- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def held(self) -> bool:
        return self._held

    @property
    def pending(self) -> int:
        """Credit earned by received frames and not yet given back."""
        return self._returned - self._regranted if self._running else 0

    @property
    def outstanding(self) -> int:
        """Credit the board holds or has in flight, as far as we know."""
        return self._window - self.pending if self._running else 0

    def start(self, budget_bytes: int | None = None) -> None:
        """Open the window (first request, no sequence number); ``budget_bytes`` = stop granting
        after that many bytes (None = no limit). While running, only updates the budget."""
        if budget_bytes is not None and budget_bytes <= 0:
            raise ValueError(f"byte budget must be positive or None, not {budget_bytes}")
        with self._lock:
            end = None if budget_bytes is None else self._bytes_in + budget_bytes
            if self._running:
                self._budget_end = end
                self._grant(None)
                return
            self._reset_state()
            amount = self._window
            if budget_bytes is not None and not self._unit_credit:
                amount = min(amount, budget_bytes)
            self._budget_end = end
            self._running = True  # before sending: the first frames can beat this thread
            try:
                self._send_request(amount, raise_errors=True)
            except OSError:
                self._running = False
                raise

    def stop(self) -> None:
        """Stop granting. The next :meth:`start` opens a fresh window with a first request."""
        with self._lock:
            self._running = False
            self._held = False
            self._first = True

    # ---- capture thread ----------------------------------------------------------------------
    def on_frame(self, lead: int, nbytes: int, arrival_ns: int) -> None:
        """One data datagram arrived (its lead word and length). Capture thread only."""
        if lead == self._expect:
            self._expect = (lead + 1) & 0xFF
            credit = self._unit_credit or nbytes
        else:
            credit = self._sequence_break(lead, nbytes)
        self._returned += credit
        self._bytes_in += nbytes
        if not self._running or self._held:
            return
        if self._returned - self._regranted >= self._threshold or self._budget_end is not None:
            with self._lock:
                self._grant(arrival_ns)

    def on_frames(self, leads: Sequence[int], sizes: Sequence[int], arrival_ns: int) -> None:
        """Data datagrams that arrived together (lead words, lengths): one grant decision for
        the batch, as :meth:`on_frame` would make after the last one. Capture thread only."""
        exp = self._expect
        unit = self._unit_credit
        credit = 0
        for lead, n in zip(leads, sizes):
            if lead == exp:
                exp = (lead + 1) & 0xFF
                credit += unit or n
            else:  # rare: account what came before, as frame-by-frame calls would have
                self._expect = exp
                self._returned += credit
                credit = self._sequence_break(lead, n)
                exp = self._expect
        self._expect = exp
        self._returned += credit
        self._bytes_in += sum(sizes)
        if not self._running or self._held:
            return
        if self._returned - self._regranted >= self._threshold or self._budget_end is not None:
            with self._lock:
                self._grant(arrival_ns)

    def _sequence_break(self, lead: int, nbytes: int) -> int:
        """Credit for a frame whose lead word is not the expected one: first-reply resync,
        a gap of lost frames (credited back, never more than is in flight), or a sequence number
        up to 128 behind the expected one: a duplicate or a late frame, counted, not credited."""
        c = self._counters
        credit = self._unit_credit or nbytes
        seq = lead & 0xFF
        if lead & 0x100:
            c.resyncs += 1
        elif self._expect <= 0xFF:
            gap = (seq - self._expect) & 0xFF
            if gap >= 0x80:  # behind: a duplicate (never charged) or a frame already counted lost
                c.stale_replies += 1
                return 0
            c.lost_replies += gap
            credit += min(gap * credit, max(0, self.outstanding - credit))
        self._expect = (seq + 1) & 0xFF
        return credit

    def on_release(self) -> None:
        """The consumer released ring slots: resume granting once the ring has drained."""
        if self._held:
            self._resume()

    def on_idle(self) -> None:
        """Capture thread idle tick (no datagram for a while): resume a hold, or grant credit
        left pending (e.g. frames that beat a restart), as a safety net."""
        if self._held:
            self._resume()
        elif self._running and self._returned - self._regranted >= self._threshold:
            with self._lock:
                self._grant(None)

    def _resume(self) -> None:
        with self._lock:
            if self._held and self._fill() <= self._resume_at:
                self._held = False
                self._counters.resumes += 1
                self._grant(None)

    # ---- requests (lock held) ----------------------------------------------------------------
    def _grant(self, arrival_ns: int | None) -> None:
        if not self._running or self._held:
            return
        pending = self._returned - self._regranted
        amount = pending
        if self._budget_end is not None:
            left = self._budget_end - self._bytes_in
            if left <= 0:  # budget reached: zero-size request, then a fresh start next time
                self._send_request(0)
                self._running = False
                self._first = True
                self._counters.budget_done += 1
                return
            if not self._unit_credit:
                amount = min(amount, left)
        if amount < self._threshold:
            return
        if self._fill() >= self._hold_at:
            self._held = True
            self._counters.holds += 1
            return
        amount = min(amount, MAX_DAQ_AMOUNT)
        sent_ns = self._clock() if arrival_ns is not None else 0
        if self._send_request(amount):
            self._regranted += amount
            if arrival_ns is not None:
                # to the start of the send call: a GIL wait after the syscall delays no grant
                self._latency.add(sent_ns - arrival_ns)

    def _send_request(self, amount: int, raise_errors: bool = False) -> bool:
        unit = self.config.unit
        if self._first:
            msg = format_daq_request(amount, unit).encode("ascii")
        else:
            key = amount << 8 | self._seq
            cached = self._cache.get(key)
            if cached is None:
                cached = format_daq_request(amount, unit, self._seq).encode("ascii")
                if len(self._cache) < _CACHE_LIMIT:
                    self._cache[key] = cached
            msg = cached
        if self.tap is not None:
            self.tap("tx", msg, time.monotonic_ns())
        try:
            self._send(msg)
        except OSError as exc:
            self._counters.send_errors += 1
            log.debug("credit request %r not sent: %s", msg, exc)
            if raise_errors:
                raise
            return False
        c = self._counters
        c.requests_sent += 1
        c.credit_sent += amount
        if self._first:
            c.first_requests += 1
            self._first = False
            self._seq = 0
            self._expect = 0x200  # the card flags its next data frame as first
        else:
            self._seq = (self._seq + 1) & 0xFF
        return True
