"""The card's per-channel pedestal histograms (``serve_target 2``, ``hped ...``; PROTOCOL.md §2).

One histogram per (chip, DAQ slot): 512 bins of width 1 starting at ``offset`` (0 for negative
signals, 3584 for positive). :meth:`PedestalHistos.fill` is fed by the card processing with every
sample of every read slot after ``subtract_ped``. ``centermean`` sets ped = target - round(mean)
clamped to [-256, 255]; ``setthr`` sets thr = target + round(factor x sigma) capped at 511 for ZS
polarity 0, or target - round(factor x sigma) floored at 0 for polarity 1. Channels with an empty
histogram are left unchanged by both [I].
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from agetdaq.protocol.monitoring import HistoStats
from agetdaq.readout.simulation.emulator.cardproc import N_CHIPS, N_SLOTS

N_BINS = 512
PED_MIN, PED_MAX = -256, 255
THR_MAX_POL0 = 511


class PedestalHistos:
    """Counts (4, 79, 512) uint32 and offsets (4, 79) of the pedestal histograms."""

    def __init__(self) -> None:
        self.counts = np.zeros((N_CHIPS, N_SLOTS, N_BINS), dtype=np.uint32)
        self.offset = np.zeros((N_CHIPS, N_SLOTS), dtype=np.int32)
        self._bins = np.arange(N_BINS, dtype=np.float64)

    @staticmethod
    def _cells(chips: Iterable[int], chans: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        c = np.asarray(list(chips), dtype=np.int64)
        i = np.asarray(list(chans), dtype=np.int64)
        return np.repeat(c, i.size), np.tile(i, c.size)

    def clear(self, chips: Iterable[int], chans: Iterable[int]) -> None:
        c, i = self._cells(chips, chans)
        self.counts[c, i] = 0

    def set_offset(self, chips: Iterable[int], chans: Iterable[int], value: int) -> None:
        c, i = self._cells(chips, chans)
        self.offset[c, i] = value

    def moments(self, chip: int, chan: int) -> tuple[int, float, float]:
        """(entries, mean, stddev) of one histogram in ADC units (offset included)."""
        h = self.counts[chip, chan].astype(np.float64)
        n = h.sum()
        if n <= 0:
            return 0, 0.0, 0.0
        m = float((h * self._bins).sum() / n)
        var = float((h * (self._bins - m) ** 2).sum() / n)
        return int(n), m + int(self.offset[chip, chan]), float(np.sqrt(max(var, 0.0)))

    def math(self, chip: int, chan: int) -> HistoStats:
        """The nine statistics of one histogram (min/max value = lowest/highest non-empty bin)."""
        n, mean, sd = self.moments(chip, chan)
        off = int(self.offset[chip, chan])
        nz = np.flatnonzero(self.counts[chip, chan])
        lo = off + int(nz[0]) if nz.size else 0
        hi = off + int(nz[-1]) if nz.size else 0
        return HistoStats(off, off + N_BINS - 1, 1, N_BINS, lo, hi, mean, sd, n)

    def summary(
        self, chips: Iterable[int], chans: Iterable[int]
    ) -> list[tuple[int, int, float, float]]:
        """(chip, chan, mean, stddev) items in chip-major order, for ``getsummary``."""
        chans = list(chans)
        out = []
        for c in chips:
            for i in chans:
                _, mean, sd = self.moments(c, i)
                out.append((c, i, mean, sd))
        return out

    def centermean(
        self, chips: Iterable[int], chans: Iterable[int], target: int, ped: np.ndarray
    ) -> int:
        """Write ped = target - round(mean) into the ``ped`` LUT; return channels changed."""
        chans = list(chans)
        n_set = 0
        for c in chips:
            for i in chans:
                n, mean, _ = self.moments(c, i)
                if n:
                    ped[c, i] = int(np.clip(target - round(mean), PED_MIN, PED_MAX))
                    n_set += 1
        return n_set

    def setthr(
        self,
        chips: Iterable[int],
        chans: Iterable[int],
        target: int,
        factor: float,
        zs_polarity: np.ndarray,
        thr: np.ndarray,
    ) -> int:
        """Write thr = target +- round(factor x sigma) into the ``thr`` LUT; return channels set."""
        chans = list(chans)
        n_set = 0
        for c in chips:
            for i in chans:
                n, _, sd = self.moments(c, i)
                if not n:
                    continue
                step = round(factor * sd)
                if zs_polarity[c] == 0:
                    thr[c, i] = min(target + step, THR_MAX_POL0)
                else:
                    thr[c, i] = max(target - step, 0)
                n_set += 1
        return n_set
