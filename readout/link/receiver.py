"""UDP receiver of one BEC: a capture thread that reads datagrams straight into a preallocated ring.

Design
------
* **One socket per BEC** (:func:`open_board_socket`): ephemeral local port, connected to the board
  so the kernel filters other senders; the same socket sends commands and ``daq`` credit requests
  and receives replies and data (PROTOCOL.md §3.1). A large ``SO_RCVBUF`` is requested and **read
  back**; a short grant (``net.core.rmem_max`` too low) is logged as a warning (FIELD-NOTES).
* **Capture is separate from processing.** The capture thread does nothing but read datagrams
  into the next free ring slots, stamp the arrival time, classify them by their second word and
  publish them. No allocation per data frame; a slow consumer never makes the socket overflow.
* **Batches** (Linux): one ``recvmmsg`` reads up to ``batch_size`` datagrams into consecutive slots,
  inside a numba ``nogil`` kernel that also stamps and checks them
  (:mod:`agetdaq.readout.link.mmsg`); a batch of clean data frames is published at once, anything
  else goes datagram by datagram (:mod:`agetdaq.readout.link.capture_loop`: frames moved down past a
  reply or a malformed datagram). Elsewhere, and for an unconnected socket, one ``recv_into`` per
  datagram.
* **Ring** = a 2-D ``uint8`` array ``(n_slots + 1, slot_size)``, a ``lengths`` array and an
  ``arrival_ns`` array (``time.monotonic_ns``). The extra last row is a scratch slot: when the ring
  is full the datagram is still read (into scratch), **counted and dropped**; the socket thread
  never blocks. Single producer / single consumer: ``_head`` is written only by the capture thread,
  ``_tail`` only by the consumer (CPython int stores are atomic).
* **Demultiplexing** uses the start-of-frame word, not the lead word: a data frame's lead is its
  8-bit sequence number and is 0 once every 256 frames. DFRAMEs go to the ring; CFRAME / MFRAME
  replies are copied to a bounded reply queue; anything else is counted by kind and skipped
  (:class:`~agetdaq.readout.link.counters.ReceiverCounters`).
* **Credit** (:mod:`agetdaq.readout.link.credit`) is driven from the capture thread, which knows
  first when a frame arrived: for a clean batch in sequence the kernel grants itself, without the
  GIL (:mod:`agetdaq.readout.link.credit_kernel`), else ``on_frames`` once per batch; the consumer's
  :meth:`Receiver.release` only matters when the ring is filling (back-pressure: the credit loop
  then holds its grants so the board keeps the data). While a capture thread runs the interpreter
  switch interval is 0.5 ms, the longest a returning receive waits for another thread's GIL.
* **Hand-off**: :meth:`Receiver.get_batch` returns numpy *views* of up to ``max_n`` contiguous slots
  ``(buf, lengths, arrival_ns)``; they stay valid until :meth:`Receiver.release`. A waiting
  consumer is woken once ``wake_at`` frames are ready (not per datagram: a wake-up costs more than
  a receive), or at the latest on the capture thread's idle tick or its own ``timeout``.
* **Stop**: ``SO_RCVTIMEO`` (default 0.1 s) wakes an idle capture thread to check its stop flag;
  a blocking socket otherwise costs one syscall per datagram.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from agetdaq.readout.link import mmsg
from agetdaq.readout.link.capture_loop import CaptureLoops, FrameSink, RawReply
from agetdaq.readout.link.counters import ReceiverCounters, kernel_drops
from agetdaq.readout.link.udp import (  # noqa: F401 - re-exported: the receiver's public API
    DEFAULT_RCVBUF,
    SO_RCVBUFFORCE,
    RcvbufReport,
    open_board_socket,
    read_rmem_max,
    set_rcvbuf,
)

log = logging.getLogger(__name__)

DEFAULT_SLOTS = 4096
DEFAULT_BATCH = 64
CAPTURE_SWITCH_INTERVAL_S = 0.0005  # interpreter switch interval while a capture thread runs
DEFAULT_SLOT_SIZE = 9216  # 8192-byte datagrams of feminos-daq, and jumbo frames (MTU 9000)


class Batch(NamedTuple):
    """Views into the ring, valid until :meth:`Receiver.release`. Row ``i`` of ``buf`` holds a
    datagram of ``lengths[i]`` bytes (lead word included)."""

    buf: np.ndarray  # (k, slot_size) uint8
    lengths: np.ndarray  # (k,) int32
    arrival_ns: np.ndarray  # (k,) int64, time.monotonic_ns


class Receiver(CaptureLoops):
    """Capture thread + ring for one board socket (see the module docstring)."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        n_slots: int = DEFAULT_SLOTS,
        slot_size: int = DEFAULT_SLOT_SIZE,
        sink: FrameSink | None = None,
        check_frames: bool = True,
        reply_queue_size: int = 256,
        idle_s: float = 0.1,
        from_host: str | None = None,
        wake_at: int = 16,
        name: str = "bec",
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        if n_slots < 2:
            raise ValueError(f"n_slots must be >= 2, got {n_slots}")
        if slot_size < 16 or slot_size % 2:
            raise ValueError(f"slot_size must be an even number >= 16, got {slot_size}")
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        self._sock = sock
        self.n_slots = n_slots
        self.slot_size = slot_size
        self.check_frames = check_frames
        self.name = name
        self.counters = ReceiverCounters()
        self._buf = np.empty((n_slots + 1, slot_size), dtype=np.uint8)
        self._buf.fill(0)  # fault every page in now, not in the capture thread's first pass
        # one more than the slots: the scratch row's (batched capture writes them)
        self._lengths = np.zeros(n_slots + 1, dtype=np.int32)
        self._arrival = np.zeros(n_slots + 1, dtype=np.int64)
        self._replies: queue.Queue[RawReply] = queue.Queue(maxsize=reply_queue_size)
        self._head = 0  # next slot to fill (capture thread only)
        self._tail = 0  # next slot to hand out (consumer only)
        self._waiting = False
        self._wake = threading.Event()
        self.wake_at = max(1, wake_at)
        self.batch_size = max(1, batch_size)  # datagrams per recvmmsg; 1 = one recv per datagram
        self.max_fill = 0  # highest ring fill seen (frames)
        self._mm: mmsg.MultiReceiver | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._idle_s = idle_s
        self._from_host = from_host
        self._sink = sink
        # optional capture tap (set before start()): tap("rx", payload view, monotonic ns)
        self.tap: Callable[[str, memoryview, int], None] | None = None
        if sink is not None:
            sink.attach_ring(self.fill, n_slots)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Receiver:
        if self._thread is not None:
            raise RuntimeError("receiver already started")
        usec = int(self._idle_s * 1e6)
        self._sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_RCVTIMEO,
            struct.pack("ll", usec // 1_000_000, usec % 1_000_000),
        )
        self._stopping = False
        if self._from_host is None and self.batch_size > 1 and mmsg.available():
            self._mm = mmsg.MultiReceiver(self._sock, self._buf)
            mmsg.warm_up()  # compile or load the kernels here, not while datagrams queue up
        if sys.getswitchinterval() > CAPTURE_SWITCH_INTERVAL_S:
            # a returning receive waits at most this long for the GIL held by another thread
            sys.setswitchinterval(CAPTURE_SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._capture, name=f"rx-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the capture thread (the socket stays open; its owner closes it)."""
        self._stopping = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():  # kept, so that start() cannot add a second producer
                log.error("capture thread %s did not stop within %.1f s", self.name, timeout)
                return
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- consumer side -----------------------------------------------------------------------
    def fill(self) -> int:
        """Frames in the ring not yet released."""
        return self._head - self._tail

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> Batch:
        """Up to ``max_n`` contiguous ring slots (one consumer thread only). When the ring is
        empty, waits until ``wake_at`` frames are ready, the capture thread goes idle or
        ``timeout`` s pass (None = no limit), and may then return an empty batch. Call
        :meth:`release` when done with the views."""
        if max_n < 1:
            raise ValueError("max_n must be >= 1")
        tail = self._tail
        avail = self._head - tail
        if avail <= 0 and timeout != 0:
            self._wake.clear()
            self._waiting = True
            try:
                avail = self._head - tail
                if avail <= 0:
                    self._wake.wait(timeout)
                    avail = self._head - tail
            finally:
                self._waiting = False
        start = tail % self.n_slots
        k = max(0, min(avail, max_n, self.n_slots - start))
        end = start + k
        return Batch(self._buf[start:end], self._lengths[start:end], self._arrival[start:end])

    def release(self, n: int) -> None:
        """Give ``n`` slots (the oldest handed out) back to the capture thread."""
        if not 0 <= n <= self._head - self._tail:
            raise ValueError(f"cannot release {n} slots: {self._head - self._tail} in the ring")
        self._tail += n
        if n and self._sink is not None:
            self._sink.on_release()

    def get_reply(self, timeout: float | None) -> RawReply | None:
        """Next command reply (CFRAME / MFRAME datagram), or None after ``timeout`` s."""
        try:
            return self._replies.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain_replies(self) -> list[RawReply]:
        """Remove and return every queued reply (stale replies before a new command)."""
        out = []
        while True:
            try:
                out.append(self._replies.get_nowait())
            except queue.Empty:
                return out

    def kernel_drops(self) -> int | None:
        return kernel_drops(self._sock)

    def stats(self) -> dict[str, int | None]:
        d: dict[str, int | None] = dict(self.counters.as_dict())
        d.update(
            fill=self.fill(),
            max_fill=self.max_fill,
            capacity=self.n_slots,
            malformed=self.counters.malformed,
            kernel_drops=self.kernel_drops(),
        )
        return d
