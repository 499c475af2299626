"""The capture ring: preallocated slots the capture thread fills and the data path consumes.

Enters: datagrams written into free rows by the one producer (the capture loop), published by
advancing :attr:`Ring.head`. Leaves: :class:`Batch` views of contiguous rows
(:meth:`Ring.get_batch`), valid until the one consumer gives them back (:meth:`Ring.release`).

* **Memory** = a 2-D ``uint8`` array ``(n_slots + 1, slot_size)``, a ``lengths`` array and an
  ``arrival_ns`` array (``time.monotonic_ns``). The extra last row is a scratch slot: when the ring
  is full the producer still reads the datagram (into scratch), counts and drops it; it never
  blocks.
* **Single producer / single consumer**: ``head`` is written only by the producer, ``tail`` only by
  the consumer (CPython int stores are atomic); ``fill = head - tail``.
* **Producer interface**: write rows ``head % n_slots ..``, set their ``lengths`` / ``arrival_ns``,
  then ``head += k``; keep :attr:`Ring.max_fill`; call :meth:`Ring.wake` when :attr:`Ring.waiting`
  and at least ``wake_at`` frames are ready (a wake-up costs more than a receive, so not per
  datagram), or on an idle tick.
* **Release hook**: :attr:`Ring.on_release` (the credit loop's back-pressure) is called after a
  consumer released slots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Batch(NamedTuple):
    """Views into the ring, valid until :meth:`Ring.release`. Row ``i`` of ``buf`` holds a
    datagram of ``lengths[i]`` bytes (lead word included)."""

    buf: np.ndarray  # (k, slot_size) uint8
    lengths: np.ndarray  # (k,) int32
    arrival_ns: np.ndarray  # (k,) int64, time.monotonic_ns


class Ring:
    """Slots, lengths, arrival times, head / tail and the consumer's wake-up (module docstring)."""

    def __init__(self, n_slots: int, slot_size: int, wake_at: int = 16) -> None:
        if n_slots < 2:
            raise ValueError(f"n_slots must be >= 2, got {n_slots}")
        if slot_size < 16 or slot_size % 2:
            raise ValueError(f"slot_size must be an even number >= 16, got {slot_size}")
        self.n_slots = n_slots
        self.slot_size = slot_size
        self.scratch = n_slots  # row index of the scratch slot
        self.buf = np.empty((n_slots + 1, slot_size), dtype=np.uint8)
        self.buf.fill(0)  # fault every page in now, not in the capture thread's first pass
        # one more than the slots: the scratch row's (batched capture writes them)
        self.lengths = np.zeros(n_slots + 1, dtype=np.int32)
        self.arrival_ns = np.zeros(n_slots + 1, dtype=np.int64)
        self.head = 0  # next slot to fill (producer only)
        self.tail = 0  # next slot to hand out (consumer only)
        self.max_fill = 0  # highest fill seen (frames; producer only)
        self.wake_at = max(1, wake_at)
        self.waiting = False  # a consumer waits in get_batch
        self._wake = threading.Event()
        self.wake = self._wake.set  # producer: wake a waiting consumer
        self.on_release: Callable[[], None] | None = None

    def fill(self) -> int:
        """Frames in the ring not yet released."""
        return self.head - self.tail

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> Batch:
        """Up to ``max_n`` contiguous ring slots (one consumer thread only). When the ring is
        empty, waits until ``wake_at`` frames are ready, the producer goes idle or ``timeout`` s
        pass (None = no limit), and may then return an empty batch. Call :meth:`release` when done
        with the views."""
        if max_n < 1:
            raise ValueError("max_n must be >= 1")
        tail = self.tail
        avail = self.head - tail
        if avail <= 0 and timeout != 0:
            self._wake.clear()
            self.waiting = True
            try:
                avail = self.head - tail
                if avail <= 0:
                    self._wake.wait(timeout)
                    avail = self.head - tail
            finally:
                self.waiting = False
        start = tail % self.n_slots
        k = max(0, min(avail, max_n, self.n_slots - start))
        end = start + k
        return Batch(self.buf[start:end], self.lengths[start:end], self.arrival_ns[start:end])

    def release(self, n: int) -> None:
        """Give ``n`` slots (the oldest handed out) back to the producer."""
        if not 0 <= n <= self.head - self.tail:
            raise ValueError(f"cannot release {n} slots: {self.head - self.tail} in the ring")
        self.tail += n
        if n and self.on_release is not None:
            self.on_release()
