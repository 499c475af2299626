"""The capture loop: one thread that owns the socket's reads and writes datagrams into a ring.

Enters: datagrams from the board socket. Leaves: data frames published in the :class:`Ring` it is
given, replies in the :class:`ReplyQueue` it is given, and the frames' credit tags to its
:class:`FrameSink` (the credit loop). Counts: every datagram, by where it went or why it was
dropped, in its :class:`~agetdaq.readout.link.counters.ReceiverCounters`.

* **Batched** (Linux, connected socket): one ``recvmmsg`` reads up to ``batch_size`` datagrams into
  consecutive ring rows, inside a numba ``nogil`` kernel (:mod:`agetdaq.readout.link.mmsg`) that
  stamps them and, for a board type with ``batch_scan`` (Feminos), checks them and grants their
  credit itself (:mod:`agetdaq.readout.link.credit_kernel`): a batch of clean data frames is
  published at once, with no Python per datagram. Any other batch is sorted datagram by datagram by
  the board's classifier (data frames moved down past a reply or a malformed datagram).
* **One datagram per call** elsewhere and for an unconnected socket (``from_host``: datagrams from
  other hosts are counted as foreign).
* **Full ring**: the datagram is read into the ring's scratch row, counted and dropped.
* **Idle**: ``SO_RCVTIMEO`` (``idle_s``) wakes the thread to check its stop flag, wake a waiting
  consumer and give the sink its idle tick. While a capture thread runs the interpreter switch
  interval is 0.5 ms, the longest a returning receive waits for another thread's GIL.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from agetdaq.readout.link import board as kinds
from agetdaq.readout.link import mmsg
from agetdaq.readout.link.board import Classifier
from agetdaq.readout.link.counters import ReceiverCounters
from agetdaq.readout.link.replies import ReplyQueue
from agetdaq.readout.link.ring import Ring

log = logging.getLogger("agetdaq.readout.link.receiver")

CAPTURE_SWITCH_INTERVAL_S = 0.0005  # interpreter switch interval while a capture thread runs
Tap = Callable[[str, memoryview, int], None]
_REPLY_KINDS = (kinds.REPLY, kinds.MONITOR, kinds.REPLY_BAD_LEAD)
_BAD_DATA = (kinds.SIZE_MISMATCH, kinds.NO_EOF)


class FrameSink(Protocol):
    """What the capture loop drives (:class:`agetdaq.readout.link.credit.CreditLoop`). Optional:
    ``on_frames(tags, sizes, arrival_ns)`` for a whole batch, ``fast_state()`` for the kernel."""

    def attach_ring(self, fill: Callable[[], int], capacity: int) -> None: ...
    def on_frame(self, lead: int, nbytes: int, arrival_ns: int) -> None: ...
    def on_release(self) -> None: ...
    def on_idle(self) -> None: ...


class CaptureLoop:
    """The capture thread of one socket (see the module docstring). ``tap`` (set before
    :meth:`start`) gets every datagram received: ``tap("rx", payload view, monotonic ns)``."""

    def __init__(
        self,
        sock: socket.socket,
        ring: Ring,
        replies: ReplyQueue,
        classifier: Classifier,
        *,
        batch_scan: bool = False,
        check_frames: bool = True,
        sink: FrameSink | None = None,
        idle_s: float = 0.1,
        from_host: str | None = None,
        batch_size: int = 64,
        name: str = "bec",
    ) -> None:
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        self.sock = sock
        self.ring = ring
        self.replies = replies
        self.classifier = classifier
        self.batch_scan = batch_scan
        self.check_frames = check_frames
        self.sink = sink
        self.idle_s = idle_s
        self.from_host = from_host
        self.batch_size = max(1, batch_size)  # datagrams per recvmmsg; 1 = one recv per datagram
        self.name = name
        self.counters = ReceiverCounters()
        self.tap: Tap | None = None
        self.thread: threading.Thread | None = None
        self.batched = False  # the recvmmsg kernel reads (set by start)
        self._stopping = False

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.thread is not None:
            raise RuntimeError("receiver already started")
        usec = int(self.idle_s * 1e6)
        self.sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", usec // 1_000_000, usec % 1_000_000),
        )
        self._stopping = False
        mm = None
        if self.from_host is None and self.batch_size > 1 and mmsg.available():
            mm = mmsg.MultiReceiver(self.sock, self.ring.buf)
            mmsg.warm_up()  # compile or load the kernels here, not while datagrams queue up
        self.batched = mm is not None
        if sys.getswitchinterval() > CAPTURE_SWITCH_INTERVAL_S:
            # a returning receive waits at most this long for the GIL held by another thread
            sys.setswitchinterval(CAPTURE_SWITCH_INTERVAL_S)
        self.thread = threading.Thread(target=self._run, args=(mm,), name=f"rx-{self.name}")
        self.thread.daemon = True
        self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (the socket stays open; its owner closes it)."""
        self._stopping = True
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():  # kept, so that start() cannot add a second producer
                log.error("capture thread %s did not stop within %.1f s", self.name, timeout)
                return
            self.thread = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _run(self, mm: mmsg.MultiReceiver | None) -> None:
        try:
            if mm is not None:
                self._batches(mm)
            else:
                self._one_by_one()
        except Exception:
            log.exception("capture thread %s died", self.name)
            raise

    # ---- batched: recvmmsg in a numba kernel -------------------------------------------------
    def _batches(self, mm: mmsg.MultiReceiver) -> None:  # hot path: recvmmsg + numba
        recv_scan, raise_for_errno = mmsg.recv_scan, mmsg.raise_for_errno
        hdr32, words2d = mm.hdr32, mm.words
        ts = np.zeros(2, dtype=np.int64)
        sink = self.sink
        fast = getattr(sink, "fast_state", lambda: None)() if self.batch_scan else None
        if fast is None:  # no grants from the kernel: its state says so (S_ENABLED = 0)
            from agetdaq.readout.link.credit_kernel import new_state

            st, lat, msg = new_state()
            mutex = 0
        else:
            st, lat, mutex, msg, _ = fast
        ring = self.ring
        n_slots, slot_size, scratch = ring.n_slots, ring.slot_size, ring.scratch
        ctl = mm.control(self.check_frames, scratch=scratch, mutex=mutex, scan=self.batch_scan)
        mlen = mm.lengths_view
        flat = memoryview(ring.buf.reshape(-1))
        slots = [flat[i * slot_size : (i + 1) * slot_size] for i in range(n_slots + 1)]
        lengths_np, arrivals_np = ring.lengths, ring.arrival_ns
        lengths = memoryview(lengths_np)
        tags = self.classifier.tags
        c = self.counters
        on_frames = _frames_callback(sink)
        on_idle = sink.on_idle if sink is not None else None
        wake = ring.wake
        wake_at = ring.wake_at
        max_batch = self.batch_size
        tap = self.tap
        sort = self._sort_batch

        while not self._stopping:
            head = ring.head
            free = n_slots - (head - ring.tail)
            if free > 0:
                start = head % n_slots
                vlen = min(free, n_slots - start, max_batch)
            else:  # ring full: read one into scratch, it is dropped unless room appears
                start, vlen = scratch, 1
            ctl[2], ctl[3], ctl[7] = start, vlen, head - ring.tail  # C_START, C_VLEN, C_FILL
            k, err, nbytes, t, credited = recv_scan(
                ctl, hdr32, words2d, lengths_np, arrivals_np, ts, st, lat, msg
            )
            if k < 0:
                try:
                    raise_for_errno(err)
                except BlockingIOError:  # SO_RCVTIMEO: idle
                    if ring.waiting and ring.head != ring.tail:
                        wake()
                    if on_idle is not None:
                        on_idle()
                except ConnectionRefusedError:  # ICMP port unreachable from an earlier send
                    c.icmp_errors += 1
                except OSError as exc:
                    if self._stopping:
                        break
                    log.error("receive on %s failed: %s", self.name, exc)
                    time.sleep(self.idle_s)
                continue
            c.datagrams += k
            if tap is not None:
                for ix in range(start, start + k):
                    tap("rx", slots[ix][: min(mlen[ix * 16 + 14], slot_size)], t)
            if nbytes >= 0 and start != scratch:  # all clean data frames, in place
                placed = k
                if on_frames is not None and not credited:  # else granted already
                    leads: Sequence[int] = tags(start, k)
                    sizes: Sequence[int] = lengths[start : start + k]
                else:
                    leads = sizes = ()
            else:
                placed, nbytes, leads, sizes = sort(start, k, t, head, mlen, slots)
            if placed:
                # counted before they are published: a consumer that sees them sees the counts
                c.data_frames += placed
                c.data_bytes += nbytes
                ring.head = head + placed  # before the grant: the hold decision sees the fill
            if on_frames is not None and len(leads):
                on_frames(leads, sizes, t)
            if placed:
                fill = head + placed - ring.tail
                if fill > ring.max_fill:
                    ring.max_fill = fill
                if ring.waiting and fill >= wake_at:
                    wake()

    def _sort_batch(
        self, start: int, k: int, t: int, head: int, mlen: memoryview, slots: list
    ) -> tuple[int, int, list[int], list[int]]:
        """Datagram by datagram (a batch that is not all clean data frames, or the scratch
        slot): data frames are moved down to the next free slots, replies queued, the rest
        counted. Returns (frames placed, their bytes, tags and lengths of every data datagram
        for the credit loop)."""
        c = self.counters
        ring = self.ring
        n_slots, slot_size = ring.n_slots, ring.slot_size
        classify, tag = self.classifier.classify, self.classifier.tag
        placed = nbytes = 0
        leads: list[int] = []
        sizes: list[int] = []
        for ix in range(start, start + k):
            n = mlen[ix * 16 + 14]
            if n > slot_size:
                c.oversize += 1
                continue
            kind = classify(ix, n)
            if kind == kinds.DATA:
                leads.append(tag(ix))
                sizes.append(n)
                if ix == n_slots and head - ring.tail >= n_slots:
                    c.ring_full_drops += 1
                    continue
                dst = (head + placed) % n_slots
                if dst != ix:  # after a skipped datagram, or room appeared for scratch
                    slots[dst][:n] = slots[ix][:n]
                ring.lengths[dst] = n
                ring.arrival_ns[dst] = t
                placed += 1
                nbytes += n
            else:
                if kind in _BAD_DATA:  # charged by the board: credited, then skipped
                    leads.append(tag(ix))
                    sizes.append(n)
                self._other(kind, slots[ix], n, t)
        return placed, nbytes, leads, sizes

    def _other(self, kind: int, slot: memoryview, n: int, t: int) -> None:
        """A datagram that is not a clean data frame: queue a reply, count the rest by kind."""
        c = self.counters
        if kind in _REPLY_KINDS:
            if kind == kinds.REPLY_BAD_LEAD:
                c.reply_bad_lead += 1
            if self.replies.put(bytes(slot[:n]), t):
                c.replies += 1
            else:
                c.reply_queue_drops += 1
        else:
            name = kinds.COUNTER_OF[kind]
            setattr(c, name, getattr(c, name) + 1)

    # ---- one datagram per call: unconnected sockets, non-Linux --------------------------------
    def _one_by_one(self) -> None:
        sock = self.sock
        recv_into = sock.recv_into
        recvfrom_into = sock.recvfrom_into
        from_host = self.from_host
        ring = self.ring
        n_slots, slot_size, scratch = ring.n_slots, ring.slot_size, ring.scratch
        flat = memoryview(ring.buf.reshape(-1))
        slots = [flat[i * slot_size : (i + 1) * slot_size] for i in range(n_slots + 1)]
        lengths = memoryview(ring.lengths)
        arrivals = memoryview(ring.arrival_ns)
        classify, tag = self.classifier.classify, self.classifier.tag
        c = self.counters
        sink = self.sink
        on_frame = sink.on_frame if sink is not None else None
        on_idle = sink.on_idle if sink is not None else None
        now = time.monotonic_ns
        trunc = socket.MSG_TRUNC
        wake = ring.wake
        wake_at = ring.wake_at
        tap = self.tap
        data, bad_data = kinds.DATA, _BAD_DATA

        while not self._stopping:
            head = ring.head
            ix = head % n_slots if head - ring.tail < n_slots else scratch
            try:
                if from_host is None:
                    n = recv_into(slots[ix], slot_size, trunc)
                else:
                    n, addr = recvfrom_into(slots[ix], slot_size, trunc)
                    if addr[0] != from_host:
                        c.foreign += 1
                        continue
            except BlockingIOError:  # SO_RCVTIMEO: idle
                if ring.waiting and ring.head != ring.tail:
                    wake()
                if on_idle is not None:
                    on_idle()
                continue
            except ConnectionRefusedError:  # ICMP port unreachable from an earlier send
                c.icmp_errors += 1
                continue
            except OSError as exc:
                if self._stopping:
                    break
                log.error("receive on %s failed: %s", self.name, exc)
                time.sleep(self.idle_s)
                continue
            t = now()
            c.datagrams += 1
            if tap is not None:
                tap("rx", slots[ix][: min(n, slot_size)], t)
            if n > slot_size:
                c.oversize += 1
                continue
            kind = classify(ix, n)
            if kind == data or kind in bad_data:
                if on_frame is not None:
                    on_frame(tag(ix), n, t)
                if kind != data:
                    self._other(kind, slots[ix], n, t)
                    continue
                if ix == scratch:
                    if head - ring.tail >= n_slots:
                        c.ring_full_drops += 1
                        continue
                    # room appeared while we waited in recv: move it to its slot (rare path)
                    ix = head % n_slots
                    slots[ix][:n] = slots[scratch][:n]
                lengths[ix] = n
                arrivals[ix] = t
                c.data_frames += 1
                c.data_bytes += n
                ring.head = head + 1
                fill = head + 1 - ring.tail
                if fill > ring.max_fill:
                    ring.max_fill = fill
                if ring.waiting and fill >= wake_at:
                    wake()
            else:
                self._other(kind, slots[ix], n, t)


def _frames_callback(sink: FrameSink | None) -> Callable[[Sequence, Sequence, int], None] | None:
    """``sink.on_frames`` (one call per batch), or a loop over ``sink.on_frame``."""
    if sink is None:
        return None
    batch = getattr(sink, "on_frames", None)
    if batch is not None:
        return batch
    one = sink.on_frame

    def each(leads: Sequence, sizes: Sequence, arrival_ns: int) -> None:
        for lead, n in zip(leads, sizes):
            one(lead, n, arrival_ns)

    return each
