"""The stream decoder's output buffers: a pool of reusable buffer sets, and the open event carried
from one batch to the next.

A buffer set is (events int64 (n, N_EV_COLS), channels int32 (n, N_CH_COLS), time bins uint16,
ADC uint16, aux int32 (n, N_AUX_COLS)), columns of :mod:`agetdaq.protocol.decode_kernel`. A
:class:`~agetdaq.protocol.decode.DecodedBatch` holds views into one set; the set is written again
only once no view of it is alive, or at once with ``reuse`` (the views are then valid until the
next decode call). Fresh memory is slow to touch, so sets are kept and used again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from agetdaq.protocol import decode_kernel as dk

Buffers = tuple[np.ndarray, ...]  # events, channels, time bins, ADC, aux
Rows = tuple[int, int, int, int]  # events, channels, samples, aux

POOL_SETS = 4  # buffer sets kept while batches are still referenced
POOL_REFS = 3  # getrefcount of an array held only by its pool tuple (+ loop name + argument)
NO_ROWS: Rows = (0, 0, 0, 0)


@dataclass
class Carry:
    """Where the open event lies: buffers, first rows, ends (events, chans, samples, aux)."""

    bufs: Buffers
    start: Rows
    end: Rows

    def sizes(self) -> Rows:
        return tuple(e - s for s, e in zip(self.start, self.end))  # type: ignore[return-value]

    def rebased(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the event row and channel rows with offsets from row / sample 0."""
        ev, ch = self.bufs[0], self.bufs[1]
        e0, c0, s0, a0 = self.start
        event = ev[e0].copy()
        event[dk.EV_CHAN_START] -= c0
        event[dk.EV_AUX_START] -= a0
        channels = ch[c0 : self.end[1]].copy()
        channels[:, dk.CH_SAMPLE_START] -= s0
        return event, channels


def fits(bufs: Buffers, need: tuple[int, ...]) -> bool:
    return (
        bufs[0].shape[0] >= need[0]
        and bufs[1].shape[0] >= need[1]
        and bufs[2].shape[0] >= need[2]
        and bufs[4].shape[0] >= need[3]
    )


class OutputBuffers:
    """The buffer sets of one decoder and its open event (:attr:`carry`, None between events)."""

    def __init__(self, reuse: bool = False) -> None:
        self.reuse = reuse
        self.carry: Carry | None = None
        self.sets: list[Buffers] = []  # kept for the next batches

    def _free(self, bufs: Buffers) -> bool:
        """Whether a buffer set may be overwritten: forced reuse, or no view of it is alive."""
        return self.reuse or all(sys.getrefcount(a) <= POOL_REFS for a in bufs)

    def get(self, need: Rows) -> Buffers:
        """A free buffer set with room for ``need`` rows."""
        for b in self.sets:
            if fits(b, need) and self._free(b):
                return b
        n_ev, n_ch, n_s, n_aux = (2 * x + 1 for x in need)  # room to continue in place
        b = (
            np.empty((n_ev, dk.N_EV_COLS), np.int64),
            np.empty((n_ch, dk.N_CH_COLS), np.int32),
            np.empty(n_s, np.uint16),
            np.empty(n_s, np.uint16),
            np.empty((n_aux, dk.N_AUX_COLS), np.int32),
        )
        max_sets = 1 if self.reuse else POOL_SETS
        free = [k for k, old in enumerate(self.sets) if self._free(old)]
        if len(self.sets) < max_sets:
            self.sets.append(b)
        elif free:  # replace a set too small for this batch
            self.sets[free[0]] = b
        return b

    def place(self, bound: Rows) -> tuple[Buffers, Rows, Rows, int | None]:
        """Buffers for a batch of at most ``bound`` new rows: (buffers, first rows of the batch,
        rows in use, channel rows the open event moved back by or None). A large open event
        stays where it is if the reused buffers have room after it; otherwise it moves to the
        front (the output then starts at the same, cache-warm, place each call)."""
        c = self.carry
        if c is None:
            return self.get(bound), NO_ROWS, NO_ROWS, None
        if (
            c.end[2] - c.start[2] > bound[2] // 8
            and any(c.bufs is b for b in self.sets)
            and self._free(c.bufs)
            and fits(c.bufs, tuple(e + b for e, b in zip(c.end, bound)))
        ):
            return c.bufs, c.start, c.end, None
        sizes = c.sizes()
        bufs = self.get(tuple(n + b for n, b in zip(sizes, bound)))  # type: ignore[arg-type]
        ev, ch, tb, adc, aux = bufs
        _, c0, s0, a0 = c.start
        ev[0], ch[: sizes[1]] = c.rebased()
        tb[: sizes[2]] = c.bufs[2][s0 : c.end[2]]  # numpy copes with overlap
        adc[: sizes[2]] = c.bufs[3][s0 : c.end[2]]
        aux[: sizes[3]] = c.bufs[4][a0 : c.end[3]]
        return bufs, NO_ROWS, sizes, c0
