"""Pedestals: subtraction (table, per-event or running baseline) and pedestal-run statistics.

Baseline modes (all per strip; the window is the pre-trigger bins ``b0:b1``, default 5:55 as REST):

- table: subtract a pedestal table, per strip or per SCA cell. The firmware resets the SCA write
  pointer at each event (PROTOCOL.md §6), so cell = time bin;
- event: subtract the mean of the event's own window (REST's per-channel baseline);
- running: subtract a per-strip state, then move it by ``alpha * (window mean - state)`` on quiet
  strips only (|window mean - state| < limit; the pipeline also requires "no hit"). A NaN state is
  initialised from the first window mean.

Pedestal runs accumulate, per strip, the mean and RMS of all samples (Welford/Chan, float64), the
*noise* = RMS after removing each event's strip mean and the per-chip common mode as the
processing removes it (``cm_method``: the sigma that k-sigma thresholds need), optionally per-cell
mean/RMS, and the FPN channels' means. With the FPN estimate (4 channels per chip) the common mode
is known only to ~half an FPN channel's noise, which the data then carry: a quiet strip's noise
is its own plus that error. Dead and noisy strips are judged on the strip's own noise (the common
mode from the median of the chip's quiet strips), where that shared error does not hide a dead one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.commonmode import (
    CM_FPN,
    CM_MEDIAN,
    CM_METHODS,
    CM_NONE,
    fpn_common_mode,
    quiet_common_mode,
    subtract_common_mode,
)
from agetdaq.readout.datapath.processing.waveforms import DenseBatch

DEFAULT_WINDOW = (5, 55)


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def row_window_mean(row, b0, b1):
    """Mean of row[b0:b1] (float64 accumulation, any order)."""
    acc = 0.0
    for t in range(b0, b1):
        acc += row[t]
    return acc / (b1 - b0)


@njit(cache=True, nogil=True)
def window_mean(x, b0, b1):
    """float32 (n, S): mean of samples b0:b1 of every row of x (n, S, T)."""
    n, n_s, _ = x.shape
    out = np.empty((n, n_s), dtype=np.float32)
    for e in range(n):
        for s in range(n_s):
            out[e, s] = row_window_mean(x[e, s], b0, b1)
    return out


@njit(cache=True, nogil=True)
def subtract_pedestal(x, ped):
    """In place: x (n, S, T) -= ped (S,) (per strip) or ped (S, T) (per SCA cell)."""
    n, n_s, n_t = x.shape
    for e in range(n):
        for s in range(n_s):
            if ped.ndim == 1:
                p = np.float32(ped[s])
                for t in range(n_t):
                    x[e, s, t] -= p
            else:
                for t in range(n_t):
                    x[e, s, t] -= ped[s, t]


@njit(cache=True, nogil=True)
def subtract_event_baseline(x, b0, b1):
    """In place: subtract each row's own window mean; returns the means float32 (n, S)."""
    means = window_mean(x, b0, b1)
    n, n_s, n_t = x.shape
    for e in range(n):
        for s in range(n_s):
            m = means[e, s]
            for t in range(n_t):
                x[e, s, t] -= m
    return means


@njit(cache=True, nogil=True)
def update_running_baseline(state, wmean, quiet, alpha):
    """One event: state[s] += alpha * (wmean[s] - state[s]) where quiet[s]; NaN state -> wmean."""
    for s in range(state.shape[0]):
        if np.isnan(state[s]):
            state[s] = wmean[s]
        elif quiet[s]:
            state[s] += alpha * (wmean[s] - state[s])


@njit(cache=True, nogil=True)
def subtract_running_baseline(x, state, b0, b1, alpha, limit):
    """In place, event by event: subtract state (S,), then update it on quiet strips.

    A strip is quiet when |window mean - state| < limit[s]. Returns the window means (n, S).
    """
    n, n_s, n_t = x.shape
    means = window_mean(x, b0, b1)
    quiet = np.empty(n_s, dtype=np.bool_)
    for e in range(n):
        for s in range(n_s):
            if np.isnan(state[s]):
                state[s] = means[e, s]
            quiet[s] = abs(means[e, s] - state[s]) < limit[s]
            p = np.float32(state[s])
            for t in range(n_t):
                x[e, s, t] -= p
        update_running_baseline(state, means[e], quiet, alpha)
    return means


@njit(cache=True, nogil=True)
def accumulate_row_stats(x, use, count, mean, m2):
    """Chan/Welford merge of every used row of x (n, S, T) into count/mean/m2 (S,) float64."""
    n, n_s, n_t = x.shape
    for e in range(n):
        for s in range(n_s):
            if not use[e, s]:
                continue
            acc = 0.0
            for t in range(n_t):
                acc += x[e, s, t]
            m_b = acc / n_t
            acc2 = 0.0
            for t in range(n_t):
                d = x[e, s, t] - m_b
                acc2 += d * d
            n_a = count[s]
            n_ab = n_a + n_t
            delta = m_b - mean[s]
            mean[s] += delta * n_t / n_ab
            m2[s] += acc2 + delta * delta * n_a * n_t / n_ab
            count[s] = n_ab


@njit(cache=True, nogil=True)
def accumulate_cell_stats(x, use, count, mean, m2):
    """Welford per SCA cell: count (S,) events, mean/m2 (S, T) float64."""
    n, n_s, n_t = x.shape
    for e in range(n):
        for s in range(n_s):
            if not use[e, s]:
                continue
            count[s] += 1
            k = count[s]
            for t in range(n_t):
                d = x[e, s, t] - mean[s, t]
                mean[s, t] += d / k
                m2[s, t] += d * (x[e, s, t] - mean[s, t])


def flag_channels(
    noise: np.ndarray, count: np.ndarray, dead_ratio: float = 0.3, noisy_ratio: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Dead / noisy flags: noise below dead_ratio or above noisy_ratio times the median noise.

    A strip never seen (count 0) is dead.
    """
    seen = count > 0
    if not np.any(seen):
        return ~seen, np.zeros_like(seen)
    med = float(np.median(noise[seen]))
    dead = ~seen | (noise < dead_ratio * med)
    noisy = seen & (noise > noisy_ratio * med)
    return dead, noisy


@dataclass
class PedestalTable:
    """Result of a pedestal run (float32 arrays over the strips)."""

    mean: np.ndarray  # (S,) pedestal
    sigma: np.ndarray  # (S,) raw RMS (includes the common mode)
    noise: np.ndarray  # (S,) RMS after event-mean and common-mode removal
    count: np.ndarray  # (S,) events accumulated
    fpn_mean: np.ndarray  # (chips, 4) FPN channel pedestals
    dead: np.ndarray  # bool (S,)
    noisy: np.ndarray  # bool (S,)
    cell_mean: np.ndarray | None = None  # (S, T) per SCA cell
    cell_sigma: np.ndarray | None = None

    def thresholds(self, k: float = 5.0) -> np.ndarray:
        """k * noise per strip (float32); dead and noisy strips get +inf."""
        thr = (k * self.noise).astype(np.float32)
        thr[self.dead | self.noisy] = np.inf
        return thr

    @classmethod
    def flat(
        cls, n_strips: int, mean: float = 250.0, noise: float = 3.0, n_chips: int = 4
    ) -> PedestalTable:
        """A uniform table (before any pedestal run)."""
        full = np.full(n_strips, 1, np.float32)
        return cls(
            mean=full * mean, sigma=full * noise, noise=full * noise, count=np.zeros(n_strips),
            fpn_mean=np.full((n_chips, 4), mean, np.float32), dead=np.zeros(n_strips, np.bool_),
            noisy=np.zeros(n_strips, np.bool_),
        )  # fmt: skip


class PedestalAccumulator:
    """Accumulates pedestal-run batches (no signals expected; full readout, no zero suppression)."""

    def __init__(
        self,
        chip: np.ndarray,
        n_chips: int = 4,
        per_cell: bool = False,
        cm_method: str = "median",
        n_samples: int = 512,
    ) -> None:
        if cm_method not in CM_METHODS:
            raise ValueError(f"cm_method must be one of {sorted(CM_METHODS)}, not {cm_method!r}")
        self.chip = np.ascontiguousarray(chip, dtype=np.int64)
        self.n_chips = n_chips
        self.cm = CM_METHODS[cm_method]
        n_s = self.chip.shape[0]
        self.events = np.zeros(n_s, np.int64)
        self.count = np.zeros(n_s, np.int64)
        self.mean = np.zeros(n_s)
        self.m2 = np.zeros(n_s)
        self.noise_count = np.zeros(n_s, np.int64)
        self.noise_mean = np.zeros(n_s)
        self.noise_m2 = np.zeros(n_s)
        self.own = (  # the strips' own noise (flags), when the thresholds' noise differs
            None if self.cm == CM_MEDIAN else
            (np.zeros(n_s, np.int64), np.zeros(n_s), np.zeros(n_s))
        )  # fmt: skip
        self.fpn_count = np.zeros(n_chips * 4, np.int64)
        self.fpn_mean = np.zeros(n_chips * 4)
        self.fpn_m2 = np.zeros(n_chips * 4)
        self.cell_count = np.zeros(n_s, np.int64) if per_cell else None
        self.cell_mean = np.zeros((n_s, n_samples)) if per_cell else None
        self.cell_m2 = np.zeros((n_s, n_samples)) if per_cell else None

    def add_dense(self, dense: DenseBatch) -> None:
        """Add a scattered batch (complete rows only)."""
        self.add(dense.strips, dense.complete, dense.fpn, dense.fpn_complete)

    def add(
        self,
        strips: np.ndarray,
        complete: np.ndarray | None = None,
        fpn: np.ndarray | None = None,
        fpn_complete: np.ndarray | None = None,
    ) -> None:
        """Add a batch: strips (n, S, T) float32 and FPN (n, C, 4, T), with masks (n, S) /
        (n, C, 4) of the rows to use, i.e. read with all their samples (default: all)."""
        strips = np.ascontiguousarray(strips, dtype=np.float32)
        if strips.ndim != 3 or strips.shape[1] != self.chip.shape[0]:
            raise ValueError(f"strips must be (n, {self.chip.shape[0]}, T), got {strips.shape}")
        n = strips.shape[0]
        use = _mask(complete, strips.shape[:2])
        self.events += use.sum(axis=0)
        accumulate_row_stats(strips, use, self.count, self.mean, self.m2)
        if self.cell_mean is not None:
            accumulate_cell_stats(strips, use, self.cell_count, self.cell_mean, self.cell_m2)
        resid = strips - strips.mean(axis=2, keepdims=True, dtype=np.float64).astype(np.float32)
        if self.own is not None:
            own = resid.copy()
            cm, ok = quiet_common_mode(own, self.chip, use, True, self.n_chips)
            subtract_common_mode(own, cm, self.chip, ok)
            accumulate_row_stats(own, use, *self.own)
        cm_ok = np.zeros((n, self.n_chips), np.bool_)
        if fpn is not None:
            fpn = np.ascontiguousarray(fpn, dtype=np.float32)
            fpn_use = _mask(fpn_complete, fpn.shape[:3])
            flat_fpn = fpn.reshape(n, -1, fpn.shape[-1])
            accumulate_row_stats(
                flat_fpn, fpn_use.reshape(n, -1), self.fpn_count, self.fpn_mean, self.fpn_m2
            )
            if self.cm == CM_FPN:
                zero = np.zeros(fpn.shape[1:3], np.float32)
                fres = fpn - fpn.mean(axis=3, keepdims=True, dtype=np.float64).astype(np.float32)
                cm, cm_ok = fpn_common_mode(fres, fpn_use, zero)
                subtract_common_mode(resid, cm, self.chip, cm_ok)
        if self.cm != CM_NONE and not cm_ok.all():
            cm, ok = quiet_common_mode(resid, self.chip, use, self.cm == CM_MEDIAN, self.n_chips)
            ok &= ~cm_ok
            subtract_common_mode(resid, cm, self.chip, ok)
        accumulate_row_stats(resid, use, self.noise_count, self.noise_mean, self.noise_m2)

    def result(self, dead_ratio: float = 0.3, noisy_ratio: float = 3.0) -> PedestalTable:
        """The pedestal table so far (a strip never seen reads mean 0 and is flagged dead)."""

        def rms(m2: np.ndarray, count: np.ndarray) -> np.ndarray:
            return np.sqrt(m2 / np.maximum(count, 1)).astype(np.float32)

        noise = rms(self.noise_m2, self.noise_count)
        own = noise if self.own is None else rms(self.own[2], self.own[0])
        dead, noisy = flag_channels(own, self.events, dead_ratio, noisy_ratio)
        table = PedestalTable(
            mean=self.mean.astype(np.float32),
            sigma=rms(self.m2, self.count),
            noise=noise,
            count=self.events.copy(),
            fpn_mean=self.fpn_mean.reshape(self.n_chips, 4).astype(np.float32),
            dead=dead,
            noisy=noisy,
        )
        if self.cell_mean is not None:
            table.cell_mean = self.cell_mean.astype(np.float32)
            table.cell_sigma = np.sqrt(
                self.cell_m2 / np.maximum(self.cell_count, 1)[:, None]
            ).astype(np.float32)
        return table


def _mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return np.ones(shape, np.bool_)
    mask = np.ascontiguousarray(mask, dtype=np.bool_)
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {shape}, got {mask.shape}")
    return mask
