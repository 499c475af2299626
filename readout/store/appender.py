"""Rows of one extensible dataset of the run file, staged and handed to the chunk sink
(store/chunks.py) as whole, chunk-aligned slices.

One thread only: the run writer's appenders are touched by the thread that writes (the data
path's); other threads hand their rows over through the writer (e.g. its status inbox).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from agetdaq.readout.store.chunks import InlineWrites


class Appender:
    """Stages rows of one extensible dataset in a buffer of its own and hands them to the chunk
    sink (store/chunks.py) as whole, chunk-aligned slices: every chunk is compressed once, never
    read back, and leaves no stale versions in the file. At a flush the open chunk goes too, and
    its rows stay at the head of the buffer (``held``) until the chunk is full and written again,
    whole."""

    def __init__(self, dset: h5py.Dataset, chunk_rows: int, sink: Any = None) -> None:
        self.dset = dset
        self.chunk_rows = max(1, chunk_rows)
        self.flush_rows = self.chunk_rows  # kept for callers that force small writes
        self.buf = np.empty(2 * self.chunk_rows, dtype=dset.dtype)
        self.sink = sink if sink is not None else InlineWrites()
        self.held = 0  # rows at the head of buf already handed over (the open chunk's)
        self.pending = 0  # rows after them, not handed over yet
        self.written = int(dset.shape[0])  # rows handed over to the file

    @property
    def total(self) -> int:
        """Rows written plus rows pending: the index the next appended row will get."""
        return self.written + self.pending

    def reserve(self, n: int) -> np.ndarray:
        """The next ``n`` staged rows, to be filled in place by the caller."""
        start = self.held + self.pending
        end = start + n
        if end > len(self.buf):
            grown = np.empty(max(2 * len(self.buf), end + self.chunk_rows), dtype=self.buf.dtype)
            grown[:start] = self.buf[:start]
            self.buf = grown
        view = self.buf[start:end]
        self.pending += n
        return view

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self.reserve(len(rows))[...] = rows

    def full(self) -> bool:
        return self.pending >= self.flush_rows or (
            self.pending and self.held + self.pending >= self.chunk_rows
        )

    def write_chunks(self) -> None:
        """Hand over the whole chunks staged (everything when flush_rows < chunk_rows)."""
        if self.flush_rows < self.chunk_rows:
            self.write()
        else:
            self._whole_chunks()

    def _whole_chunks(self) -> None:
        staged = self.held + self.pending
        whole = staged // self.chunk_rows
        if not whole or not self.pending:
            return
        c = self.chunk_rows
        base = self.written - self.held  # the row of buf[0]
        rest = staged - whole * c
        old = self.buf  # handed over whole: only the rest is copied, into a fresh buffer
        self.buf = self.sink.buffer(old.nbytes).view(old.dtype)
        if rest:
            self.buf[:rest] = old[whole * c : staged]
        self.sink.put_chunks(self.dset, base, old, whole, c)
        self.written = base + whole * c
        self.held = 0
        self.pending = rest

    def write(self) -> None:
        """Hand over every staged row (the open chunk too)."""
        self._whole_chunks()
        if self.pending:
            staged = self.held + self.pending
            self.sink.put(self.dset, self.written - self.held, self.buf[:staged], self.chunk_rows)
            self.written += self.pending
            self.held = staged
            self.pending = 0
