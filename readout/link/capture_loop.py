"""The receiver's capture thread: read datagrams into the ring, sort them, drive the credit loop.

:class:`CaptureLoops` is mixed into :class:`agetdaq.readout.link.receiver.Receiver` (which owns the
ring, the socket and the counters): a batched path (``recvmmsg`` in a numba ``nogil`` kernel,
:mod:`agetdaq.readout.link.mmsg`, which may also grant credit itself,
:mod:`agetdaq.readout.link.credit_kernel`) and a one-datagram path (unconnected sockets, non-Linux).
Demultiplexing by the start-of-frame word: DFRAMEs to the ring, CFRAME / MFRAME replies to the reply
queue, anything else counted.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np

from agetdaq.readout.link import mmsg
from agetdaq.readout.link.counters import ReceiverCounters

log = logging.getLogger("agetdaq.readout.link.receiver")

_SOF_MASK = 0xFE00
_SOF_D = 0x0800
_SOF_M = 0x0600
_SOF_C = 0x0400
_EOF = 0x000F


class FrameSink(Protocol):
    """What the capture thread drives (implemented by
    :class:`agetdaq.readout.link.credit.CreditLoop`)."""

    def attach_ring(self, fill: object, capacity: int) -> None: ...
    def on_frame(self, lead: int, nbytes: int, arrival_ns: int) -> None: ...
    def on_release(self) -> None: ...
    def on_idle(self) -> None: ...


class RawReply(NamedTuple):
    """A reply datagram as received (decode with :func:`agetdaq.protocol.commands.parse_reply`)."""

    datagram: bytes
    arrival_ns: int


class CaptureLoops:
    """The capture thread's loops; the ring, socket and counters are the receiver's."""

    _sock: socket.socket
    _buf: np.ndarray
    _lengths: np.ndarray
    _arrival: np.ndarray
    _replies: queue.Queue[RawReply]
    _head: int
    _tail: int
    _waiting: bool
    _wake: threading.Event
    _stopping: bool
    _idle_s: float
    _from_host: str | None
    _sink: FrameSink | None
    _mm: mmsg.MultiReceiver | None
    n_slots: int
    slot_size: int
    check_frames: bool
    name: str
    counters: ReceiverCounters
    wake_at: int
    batch_size: int
    max_fill: int
    tap: Callable[[str, memoryview, int], None] | None

    def _capture(self) -> None:
        try:
            if self._mm is not None:
                self._capture_batches(self._mm)
            else:
                self._capture_loop()
        except Exception:
            log.exception("capture thread %s died", self.name)
            raise

    def _capture_batches(self, mm: mmsg.MultiReceiver) -> None:  # hot path: recvmmsg + numba
        recv_scan, raise_for_errno = mmsg.recv_scan, mmsg.raise_for_errno
        hdr32, words2d = mm.hdr32, mm.words
        ts = np.zeros(2, dtype=np.int64)
        fast = getattr(self._sink, "fast_state", lambda: None)()
        if fast is None:  # no grants from the kernel: its state says so (S_ENABLED = 0)
            from agetdaq.readout.link.credit_kernel import new_state

            st, lat, msg = new_state()
            mutex = 0
        else:
            st, lat, mutex, msg, _ = fast
        ctl = mm.control(self.check_frames, scratch=self.n_slots, mutex=mutex)
        mlen = mm.lengths_view
        n_slots = self.n_slots
        slot_size = self.slot_size
        slot_words = slot_size // 2
        flat = memoryview(self._buf.reshape(-1))
        slots = [flat[i * slot_size : (i + 1) * slot_size] for i in range(n_slots + 1)]
        words = flat.cast("H")
        lengths_np, arrivals_np = self._lengths, self._arrival
        lengths = memoryview(lengths_np)
        scratch = n_slots
        c = self.counters
        sink = self._sink
        on_frames = _frames_callback(sink)
        on_idle = sink.on_idle if sink is not None else None
        wake = self._wake.set
        wake_at = self.wake_at
        max_batch = self.batch_size
        tap = self.tap
        sort = self._sort_batch

        while not self._stopping:
            head = self._head
            free = n_slots - (head - self._tail)
            if free > 0:
                start = head % n_slots
                vlen = min(free, n_slots - start, max_batch)
            else:  # ring full: read one into scratch, it is dropped unless room appears
                start, vlen = scratch, 1
            ctl[2], ctl[3], ctl[7] = start, vlen, head - self._tail  # C_START, C_VLEN, C_FILL
            k, err, nbytes, t, credited = recv_scan(
                ctl, hdr32, words2d, lengths_np, arrivals_np, ts, st, lat, msg
            )
            if k < 0:
                try:
                    raise_for_errno(err)
                except BlockingIOError:  # SO_RCVTIMEO: idle
                    if self._waiting and self._head != self._tail:
                        wake()
                    if on_idle is not None:
                        on_idle()
                except ConnectionRefusedError:  # ICMP port unreachable from an earlier send
                    c.icmp_errors += 1
                except OSError as exc:
                    if self._stopping:
                        break
                    log.error("receive on %s failed: %s", self.name, exc)
                    time.sleep(self._idle_s)
                continue
            c.datagrams += k
            if tap is not None:
                for ix in range(start, start + k):
                    tap("rx", slots[ix][: min(mlen[ix * 16 + 14], slot_size)], t)
            if nbytes >= 0 and start != scratch:  # all clean data frames, in place
                placed = k
                leads = words[start * slot_words : (start + k) * slot_words : slot_words]
                sizes = lengths[start : start + k]
            else:
                placed, nbytes, leads, sizes = sort(start, k, t, head, mlen, slots, words)
            if placed:
                # counted before they are published: a consumer that sees them sees the counts
                c.data_frames += placed
                c.data_bytes += nbytes
                self._head = head + placed  # before the grant: the hold decision sees the fill
            if on_frames is not None and len(leads) and not credited:  # else granted already
                on_frames(leads, sizes, t)
            if placed:
                fill = head + placed - self._tail
                if fill > self.max_fill:
                    self.max_fill = fill
                if self._waiting and fill >= wake_at:
                    wake()

    def _sort_batch(
        self, start: int, k: int, t: int, head: int, mlen: memoryview, slots: list, words
    ) -> tuple[int, int, list[int], list[int]]:
        """Datagram by datagram (a batch with a reply or a malformed datagram, or the scratch
        slot): data frames are moved down to the next free slots, replies queued, the rest
        counted. Returns (frames placed, their bytes, lead words and lengths of every data
        datagram for the credit loop)."""
        c = self.counters
        n_slots, slot_size = self.n_slots, self.slot_size
        slot_words = slot_size // 2
        placed = nbytes = 0
        leads: list[int] = []
        sizes: list[int] = []
        for ix in range(start, start + k):
            n = mlen[ix * 16 + 14]
            if n < 4:
                c.runt += 1
                continue
            if n > slot_size:
                c.oversize += 1
                continue
            if n & 1:
                c.odd_length += 1
                continue
            base = ix * slot_words
            sof = words[base + 1] & _SOF_MASK
            if sof == _SOF_D:
                leads.append(words[base])
                sizes.append(n)
                if self.check_frames:
                    if n < 8 or words[base + 2] + 2 != n:
                        c.size_mismatch += 1
                        continue
                    if words[base + (n >> 1) - 1] != _EOF:
                        c.no_eof += 1
                        continue
                if ix == n_slots and head - self._tail >= n_slots:
                    c.ring_full_drops += 1
                    continue
                dst = (head + placed) % n_slots
                if dst != ix:  # after a skipped datagram, or room appeared for scratch
                    slots[dst][:n] = slots[ix][:n]
                self._lengths[dst] = n
                self._arrival[dst] = t
                placed += 1
                nbytes += n
            elif sof in (_SOF_C, _SOF_M):
                if words[base]:
                    c.reply_bad_lead += 1
                try:
                    self._replies.put_nowait(RawReply(bytes(slots[ix][:n]), t))
                    c.replies += 1
                except queue.Full:
                    c.reply_queue_drops += 1
            else:
                c.bad_sof += 1
        return placed, nbytes, leads, sizes

    def _capture_loop(self) -> None:  # one datagram per call: unconnected sockets, non-Linux
        sock = self._sock
        recv_into = sock.recv_into
        recvfrom_into = sock.recvfrom_into
        from_host = self._from_host
        n_slots = self.n_slots
        slot_size = self.slot_size
        slot_words = slot_size // 2
        flat = memoryview(self._buf.reshape(-1))
        slots = [flat[i * slot_size : (i + 1) * slot_size] for i in range(n_slots + 1)]
        words = flat.cast("H")  # slot i starts at word i * slot_size // 2; last slot = scratch
        lengths = memoryview(self._lengths)
        arrivals = memoryview(self._arrival)
        scratch = n_slots
        c = self.counters
        check = self.check_frames
        sink = self._sink
        on_frame = sink.on_frame if sink is not None else None
        on_idle = sink.on_idle if sink is not None else None
        now = time.monotonic_ns
        trunc = socket.MSG_TRUNC
        wake = self._wake.set
        wake_at = self.wake_at
        host_of = self._host_of
        tap = self.tap

        while not self._stopping:
            head = self._head
            ix = head % n_slots if head - self._tail < n_slots else scratch
            try:
                if from_host is None:
                    n = recv_into(slots[ix], slot_size, trunc)
                else:
                    n, addr = recvfrom_into(slots[ix], slot_size, trunc)
                    if host_of(addr) != from_host:
                        c.foreign += 1
                        continue
            except BlockingIOError:  # SO_RCVTIMEO: idle
                if self._waiting and self._head != self._tail:
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
                time.sleep(self._idle_s)
                continue
            t = now()
            c.datagrams += 1
            if tap is not None:
                tap("rx", slots[ix][: min(n, slot_size)], t)
            if n < 4:
                c.runt += 1
                continue
            if n > slot_size:
                c.oversize += 1
                continue
            if n & 1:
                c.odd_length += 1
                continue
            base = ix * slot_words
            sof = words[base + 1] & _SOF_MASK
            if sof == _SOF_D:
                if on_frame is not None:
                    on_frame(words[base], n, t)
                if ix == scratch:
                    if head - self._tail >= n_slots:
                        c.ring_full_drops += 1
                        continue
                    # room appeared while we waited in recv: move it to its slot (rare path)
                    ix = head % n_slots
                    slots[ix][:n] = slots[scratch][:n]
                    base = ix * slot_words
                if check:
                    if n < 8 or words[base + 2] + 2 != n:
                        c.size_mismatch += 1
                        continue
                    if words[base + (n >> 1) - 1] != _EOF:
                        c.no_eof += 1
                        continue
                lengths[ix] = n
                arrivals[ix] = t
                c.data_frames += 1
                c.data_bytes += n
                self._head = head + 1
                fill = head + 1 - self._tail
                if fill > self.max_fill:
                    self.max_fill = fill
                if self._waiting and fill >= wake_at:
                    wake()
            elif sof in (_SOF_C, _SOF_M):
                if words[base]:
                    c.reply_bad_lead += 1
                try:
                    self._replies.put_nowait(RawReply(bytes(slots[ix][:n]), t))
                    c.replies += 1
                except queue.Full:
                    c.reply_queue_drops += 1
            else:
                c.bad_sof += 1

    @staticmethod
    def _host_of(addr: tuple) -> str:
        return addr[0]


def _frames_callback(sink: FrameSink | None) -> Callable[[list, list, int], None] | None:
    """``sink.on_frames`` (one call per batch), or a loop over ``sink.on_frame``."""
    if sink is None:
        return None
    batch = getattr(sink, "on_frames", None)
    if batch is not None:
        return batch
    one = sink.on_frame

    def each(leads: list, sizes: list, arrival_ns: int) -> None:
        for lead, n in zip(leads, sizes):
            one(lead, n, arrival_ns)

    return each
