"""Credit flow control of one board (PROTOCOL.md §3.4): the board sends data frames only while it
holds send allowance, so the PC keeps a fixed window of credit in flight and returns what it
receives.

Enters: the tags and lengths of data frames from the capture loop (:meth:`CreditLoop.on_frames`),
the ring's fill and releases. Leaves: credit requests on the board socket, formatted by the board
type (Feminos: ``daq 0x<credit> F|B 0x<seq>``). Counts: requests, credit sent, lost / stale frames,
holds, budget ends (:class:`~agetdaq.readout.link.counters.CreditCounters`) and the re-grant
latency.

Design
------
* **Window.** ``start()`` sends the whole window in one request *without* sequence number (this
  resets the board's request and reply indices, so its next data frame carries the first-reply
  flag 0x0100). Afterwards every data frame seen returns 1 frame (unit F) or its datagram length
  in bytes (unit B: the card subtracts the UDP payload length, lead word included) to ``pending``;
  when ``pending`` reaches the threshold it is granted with the request sequence number counting
  0x00, 0x01, ... mod 256. ``credits restore 8 1 F`` = window 8 frames, threshold 1.
* **In the capture thread.** :meth:`CreditLoop.on_frames` runs in the capture thread right after
  the receive, so the re-grant latency (arrival stamp -> ``send`` called) is a few microseconds;
  it is recorded in :attr:`CreditLoop.latency`.
* **Back-pressure.** When the ring holds ``high_water`` of its capacity, grants are held (the credit
  keeps accumulating in ``pending``) so the board keeps its data instead of us dropping it; they
  resume once the consumer has released the ring down to ``low_water``. The ring must have room for
  one window above ``high_water``; :meth:`attach_ring` warns otherwise.
* **Lost frames.** A data frame's tag carries an 8-bit reply sequence. A gap of k means k frames the
  board sent (and charged) never reached us: they are counted in ``lost_replies`` and credited back
  so the window does not shrink over a weeks-long run (never more than the credit in flight). In
  unit B their sizes are unknown: [I] they are credited at the size of the frame showing the gap.
  The board sends only what it was granted, so a tag further ahead than :meth:`sequence_window`
  cannot be its own (a forged or replayed frame): counted ``out_of_window``, credited nothing,
  and the expected tag stays where it was. (A first-reply flag is always followed: a rebooted
  card flags its first frame after any request.)
* **Budget** (client ``DAQ N``): in unit B requests are capped at the bytes left; once the budget is
  received a zero-size request is sent and the next start is a first request again (as feminos-daq).
* **Stop** = no more grants; :class:`agetdaq.readout.link.board_link.BoardLink` then sends the board
  type's pause request (Feminos: ``daq 0xFFFFFF F``, answered) through its command channel.
* **Cost.** Each request is one ``send`` syscall (3-5 us); a threshold above 1 divides their
  number (``credits restore 16 4 F`` sends one request per 4 frames and keeps >= 12 in flight).
* **Fast path** (board types with ``batch_scan``: Feminos). The per-frame state is a
  :class:`~agetdaq.readout.link.credit_state.CreditState` this loop owns: an int64 array shared
  with the capture kernel, which accounts a clean in-sequence batch and sends its request itself,
  GIL-free (:mod:`agetdaq.readout.link.credit_kernel`); the Python path below handles everything
  else. Both send under one pthread mutex (the state's lock).

Threads: the per-frame accounting is lock-free (single-writer counters: ``returned``, ``bytes_in``
and ``expect`` are written by the capture thread only, ``regranted`` under the lock only;
``pending = returned - regranted``, so no update can be lost over weeks of running). Requests are
sent under the lock, from the capture thread (data arrival), the consumer thread (ring released
after a hold) or the control thread (start), so sequence numbers stay in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from agetdaq.protocol.commands import MAX_DAQ_AMOUNT
from agetdaq.readout.link.board import TAG_FIRST, TAG_SEQ_MASK, Board, board_type
from agetdaq.readout.link.counters import CreditCounters, LatencyHistogram
from agetdaq.readout.link.credit_config import CreditConfig
from agetdaq.readout.link.credit_state import CreditState, FastState, socket_fd

__all__ = ["CreditConfig", "CreditLoop"]

log = logging.getLogger(__name__)

_CACHE_LIMIT = 4096
SEQ_WINDOW_ALL = 128  # a sequence window that takes every tag
_NO_TAG = 0x200  # expected tag before the first frame of a window: matches none


class CreditLoop:
    """Credit window of one board; ``send(datagram)`` puts a request on the board socket, the
    ``board`` type (default Feminos) formats it. Its state is :attr:`state`."""

    def __init__(
        self,
        send: Callable[[bytes], object],
        config: CreditConfig | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        board: Board | str | None = None,
    ) -> None:
        self.board = board_type(board)
        self._send = send
        self._request = self.board.credit_request
        self.state = CreditState(socket_fd(send) if self.board.batch_scan else -1)
        self._clock = clock
        self.config = config or CreditConfig()
        self._fill: Callable[[], int] = lambda: 0
        self._capacity = 0
        self._resume_at = 1 << 62
        self.state.hold_at = 1 << 62
        self._cache: dict[int, bytes] = {}
        self._window = self.config.window
        self._unit_credit = 1
        self._reset_state()

    def _reset_state(self) -> None:
        cfg, s = self.config, self.state
        s.running = False
        s.held = False
        s.first = True  # next request goes without sequence number
        s.seq = 0
        s.regranted = s.returned  # pending = 0
        self._window = cfg.window
        s.budget_end = None
        self._unit_credit = 1 if cfg.unit == "F" else 0  # 0: credit = datagram bytes
        s.threshold = max(1, cfg.threshold)  # 0 = grant whatever is pending
        s.unit_bytes = 1 - self._unit_credit

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
        self.state.hold_at = max(1, int(cfg.high_water * self._capacity))
        self._resume_at = int(cfg.low_water * self._capacity)
        if cfg.unit == "F" and self.state.hold_at + cfg.window > self._capacity:
            log.warning(
                "credit window %d F does not fit above the ring's high-water mark (%d of %d slots):"
                " the ring can overflow",
                cfg.window,
                self.state.hold_at,
                self._capacity,
            )

    def configure(self, config: CreditConfig) -> None:
        """New window / threshold (``credits restore``); applies from the next :meth:`start`."""
        with self.state.lock:
            self.config = config
            self._apply_water_marks()
            if self.state.running:
                log.info("credit configuration changed while running: applies at next start")

    def fast_state(self) -> FastState | None:
        """The state the capture kernel grants from, or None (requests only from Python)."""
        return self.state.fast_state()

    @property
    def tap(self) -> Callable[[str, bytes, int], None] | None:
        """Optional capture tap: tap("tx", request, monotonic ns) before each request is sent."""
        return self.state.tap

    @tap.setter
    def tap(self, tap: Callable[[str, bytes, int], None] | None) -> None:
        self.state.tap = tap

    # ---- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def held(self) -> bool:
        return self.state.held

    @property
    def pending(self) -> int:
        """Credit earned by received frames and not yet given back."""
        s = self.state
        return s.returned - s.regranted if s.running else 0

    @property
    def outstanding(self) -> int:
        """Credit the board holds or has in flight, as far as we know."""
        return self._window - self.pending if self.state.running else 0

    def sequence_window(self) -> int:
        """How far ahead of the expected tag a frame of the board may be: the frames it can have
        in flight (unit F: the window, doubled for margin; unit B: any, 128)."""
        if self.config.unit != "F":
            return SEQ_WINDOW_ALL
        return min(SEQ_WINDOW_ALL, max(16, 2 * self.config.window))

    def start(self, budget_bytes: int | None = None) -> None:
        """Open the window (first request, no sequence number); ``budget_bytes`` = stop granting
        after that many bytes (None = no limit). While running, only updates the budget."""
        if budget_bytes is not None and budget_bytes <= 0:
            raise ValueError(f"byte budget must be positive or None, not {budget_bytes}")
        s = self.state
        with s.lock:
            end = None if budget_bytes is None else s.bytes_in + budget_bytes
            if s.running:
                s.budget_end = end
                self._grant(None)
                return
            self._reset_state()
            amount = self._window
            if budget_bytes is not None and not self._unit_credit:
                amount = min(amount, budget_bytes)
            s.budget_end = end
            s.running = True  # before sending: the first frames can beat this thread
            try:
                self._send_request(amount, raise_errors=True)
            except OSError:
                s.running = False
                raise

    def stop(self) -> None:
        """Stop granting. The next :meth:`start` opens a fresh window with a first request."""
        s = self.state
        with s.lock:
            s.running = False
            s.held = False
            s.first = True

    # ---- capture thread ----------------------------------------------------------------------
    def on_frame(self, lead: int, nbytes: int, arrival_ns: int) -> None:
        """One data datagram arrived (its tag and length). Capture thread only."""
        s = self.state
        if lead == s.expect:
            s.expect = (lead + 1) & TAG_SEQ_MASK
            credit = self._unit_credit or nbytes
        else:
            credit = self._sequence_break(lead, nbytes)
        s.returned += credit
        s.bytes_in += nbytes
        if not s.running or s.held:
            return
        if s.returned - s.regranted >= s.threshold or s.budget_end is not None:
            with s.lock:
                self._grant(arrival_ns)

    def on_frames(self, leads: Sequence[int], sizes: Sequence[int], arrival_ns: int) -> None:
        """Data datagrams that arrived together (tags, lengths): one grant decision for the
        batch, as :meth:`on_frame` would make after the last one. Capture thread only."""
        s = self.state
        exp = s.expect
        unit = self._unit_credit
        credit = 0
        for lead, n in zip(leads, sizes):
            if lead == exp:
                exp = (lead + 1) & TAG_SEQ_MASK
                credit += unit or n
            else:  # rare: account what came before, as frame-by-frame calls would have
                s.expect = exp
                s.returned += credit
                credit = self._sequence_break(lead, n)
                exp = s.expect
        s.expect = exp
        s.returned += credit
        s.bytes_in += sum(sizes)
        if not s.running or s.held:
            return
        if s.returned - s.regranted >= s.threshold or s.budget_end is not None:
            with s.lock:
                self._grant(arrival_ns)

    def _sequence_break(self, lead: int, nbytes: int) -> int:
        """Credit for a frame whose tag is not the expected one: first-reply resync, a gap of
        lost frames (credited back, never more than is in flight), or a sequence number up to 128
        behind the expected one: a duplicate or a late frame, counted, not credited."""
        s = self.state
        c = s.counters
        credit = self._unit_credit or nbytes
        seq = lead & TAG_SEQ_MASK
        expect = s.expect
        if lead & TAG_FIRST:
            c.resyncs += 1
        elif expect <= TAG_SEQ_MASK:
            gap = (seq - expect) & TAG_SEQ_MASK
            if gap >= 0x80:  # behind: a duplicate (never charged) or a frame already counted lost
                c.stale_replies += 1
                return 0
            if gap >= self.sequence_window():  # not a frame of the board
                c.out_of_window += 1
                return 0
            c.lost_replies += gap
            credit += min(gap * credit, max(0, self.outstanding - credit))
        s.expect = (seq + 1) & TAG_SEQ_MASK
        return credit

    def on_release(self) -> None:
        """The consumer released ring slots: resume granting once the ring has drained."""
        if self.state.held:
            self._resume()

    def on_idle(self) -> None:
        """Capture thread idle tick (no datagram for a while): resume a hold, or grant credit
        left pending (e.g. frames that beat a restart), as a safety net."""
        s = self.state
        if s.held:
            self._resume()
        elif s.running and s.returned - s.regranted >= s.threshold:
            with s.lock:
                self._grant(None)

    def _resume(self) -> None:
        s = self.state
        with s.lock:
            if s.held and self._fill() <= self._resume_at:
                s.held = False
                s.counters.resumes += 1
                self._grant(None)

    # ---- requests (lock held) ----------------------------------------------------------------
    def _grant(self, arrival_ns: int | None) -> None:
        s = self.state
        if not s.running or s.held:
            return
        pending = s.returned - s.regranted
        amount = pending
        if s.budget_end is not None:
            left = s.budget_end - s.bytes_in
            if left <= 0:  # budget reached: zero-size request, then a fresh start next time
                self._send_request(0)
                s.running = False
                s.first = True
                s.counters.budget_done += 1
                return
            if not self._unit_credit:
                amount = min(amount, left)
        if amount < s.threshold:
            return
        if self._fill() >= s.hold_at:
            s.held = True
            s.counters.holds += 1
            return
        amount = min(amount, MAX_DAQ_AMOUNT)
        sent_ns = self._clock() if arrival_ns is not None else 0
        if self._send_request(amount):
            s.regranted += amount
            if arrival_ns is not None:
                # to the start of the send call: a GIL wait after the syscall delays no grant
                s.latency.add(sent_ns - arrival_ns)

    def _send_request(self, amount: int, raise_errors: bool = False) -> bool:
        s = self.state
        unit = self.config.unit
        first = s.first
        if first:
            msg = self._request(amount, unit, None)
        else:
            seq = s.seq
            key = amount << 8 | seq
            cached = self._cache.get(key)
            if cached is None:
                cached = self._request(amount, unit, seq)
                if len(self._cache) < _CACHE_LIMIT:
                    self._cache[key] = cached
            msg = cached
        if s.tap is not None:
            s.tap("tx", msg, time.monotonic_ns())
        c = s.counters
        try:
            self._send(msg)
        except OSError as exc:
            c.send_errors += 1
            log.debug("credit request %r not sent: %s", msg, exc)
            if raise_errors:
                raise
            return False
        c.requests_sent += 1
        c.credit_sent += amount
        if first:
            c.first_requests += 1
            s.first = False
            s.seq = 0
            s.expect = _NO_TAG  # the board flags its next data frame as first
        else:
            s.seq = (s.seq + 1) & 0xFF
        return True

    # ---- reporting ---------------------------------------------------------------------------
    @property
    def counters(self) -> CreditCounters:
        """Counters of the Python path and of the kernel's fast path together (a copy)."""
        return self.state.merged_counters()

    @property
    def latency(self) -> LatencyHistogram:
        """Re-grant latency of both paths (a copy: reset with :meth:`reset_latency`)."""
        return self.state.merged_latency()

    def reset_latency(self) -> None:
        """Forget the latency samples so far (both paths)."""
        self.state.reset_latency()

    def snapshot(self) -> dict[str, object]:
        s = self.state
        with s.lock:
            end = s.budget_end
            return {
                "running": s.running,
                "held": s.held,
                "unit": self.config.unit,
                "window": self.config.window,
                "threshold": self.config.threshold,
                "pending": self.pending,
                "outstanding": self.outstanding,
                "next_seq": None if s.first else s.seq,
                "budget_left": None if end is None else end - s.bytes_in,
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
