"""AGET pulse shape: a semi-Gaussian CR-RC^n response sampled at the SCA clock.

The response to a charge arriving at t = 0 is ``(t/tp)^n exp(n (1 - t/tp))`` for t > 0: it rises
from zero, peaks at exactly 1.0 at the peaking time tp and decays within ~5 tp. Amplitudes are
therefore "peak ADC for charge arriving at once". The real AGET shaper is close to, not exactly,
this form [U]; the peaking time comes from the AGET code table (PROTOCOL.md §6).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

TAIL_PEAKING_TIMES = 6.0  # the sampled kernel reaches 6 tp, where it is below 1e-5


def semi_gaussian(t_ns: np.ndarray, peaking_ns: float, order: int = 4) -> np.ndarray:
    """Unit-peak CR-RC^order response at times ``t_ns`` (0 for t <= 0), float64."""
    x = np.asarray(t_ns, dtype=np.float64) / peaking_ns
    out = np.zeros_like(x)
    pos = x > 0
    xp = x[pos]
    out[pos] = np.exp(order * (np.log(xp) + 1.0 - xp))
    return out


def kernel(peaking_ns: float, bin_ns: float, order: int = 4) -> np.ndarray:
    """The response sampled at t = 0, bin, 2 bin, ... up to ~6 peaking times (float32)."""
    n = max(2, int(np.ceil(TAIL_PEAKING_TIMES * peaking_ns / bin_ns)) + 1)
    return semi_gaussian(np.arange(n) * bin_ns, peaking_ns, order).astype(np.float32)


def pulses_at(
    amplitudes: np.ndarray,
    t0_bins: float,
    n_samples: int,
    bin_ns: float,
    peaking_ns: float,
    order: int = 4,
) -> np.ndarray:
    """(k, n_samples) float32: row i is ``amplitudes[i]`` x the response started at t0_bins.

    All rows share one arrival time (an X-ray cloud arrives at once); t0_bins may be fractional.
    """
    shape = semi_gaussian((np.arange(n_samples) - t0_bins) * bin_ns, peaking_ns, order)
    amps = np.asarray(amplitudes, dtype=np.float64)
    return (amps[:, None] * shape[None, :]).astype(np.float32)


def strip_fractions(
    pos_mm: np.ndarray,
    sigma_mm: np.ndarray,
    centres: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    n_sigma: float = 5.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Share of Gaussian clouds (m positions, sigmas) read by the strips of one axis.

    ``centres``, ``lo``, ``hi``: strip centres and edges (mm), sorted. Only the strips within
    ``n_sigma`` of each cloud are evaluated. Returns (cols (m, w) int64 strip positions in the
    sorted order, frac (m, w) float64); unused slots have frac 0.
    """
    pos = np.atleast_1d(np.asarray(pos_mm, dtype=np.float64))
    sig = np.maximum(np.broadcast_to(np.asarray(sigma_mm, dtype=np.float64), pos.shape), 1e-6)
    n = len(centres)
    pitch = float(np.min(hi - lo)) if n else 1.0
    half = int(np.ceil(n_sigma * float(sig.max(initial=0.0)) / pitch)) + 1
    near = np.searchsorted(centres, pos)
    cols = near[:, None] + np.arange(-half, half + 1)[None, :]
    valid = (cols >= 0) & (cols < n)
    cols = np.minimum(np.maximum(cols, 0), max(n - 1, 0))
    s = sig[:, None]
    frac = ndtr((hi[cols] - pos[:, None]) / s) - ndtr((lo[cols] - pos[:, None]) / s)
    return cols, np.where(valid, frac, 0.0)


def bin_charge(
    cols: np.ndarray, weights: np.ndarray, t_bins: np.ndarray, n_rows: int, n_samples: int
) -> np.ndarray:
    """(n_rows, n_samples) float64 charge per strip and SCA bin.

    ``weights[j, i]`` arrives on strip ``cols[j, i]`` at fractional bin ``t_bins[j]``; it is split
    linearly between the two neighbouring bins (keeping its mean time); bins outside are dropped.
    """
    t = np.asarray(t_bins, dtype=np.float64)
    lo = np.floor(t).astype(np.int64)
    w_hi = t - lo
    width = n_samples + 2  # guard columns for bins -1 and n_samples, dropped at the end
    out = np.zeros(n_rows * width)
    for b, f in ((lo, 1.0 - w_hi), (lo + 1, w_hi)):
        col = np.clip(b, -1, n_samples) + 1
        flat = (cols * width + col[:, None]).ravel()
        out += np.bincount(flat, (weights * f[:, None]).ravel(), minlength=n_rows * width)
    return out.reshape(n_rows, width)[:, 1 : n_samples + 1]


class Shaper:
    """Convolves per-bin charge with the sampled response (FFT, the kernel spectrum cached)."""

    def __init__(self, kern: np.ndarray, n_samples: int) -> None:
        self.n_samples = n_samples
        self.nfft = 1 << int(np.ceil(np.log2(n_samples + len(kern))))
        self.spectrum = np.fft.rfft(kern.astype(np.float64), self.nfft)

    def __call__(self, charge: np.ndarray) -> np.ndarray:
        """(k, n) charge -> (k, n) float32 waveforms (causal, cut to n bins)."""
        if charge.shape[0] == 0:
            return np.zeros(charge.shape, dtype=np.float32)
        f = np.fft.rfft(charge, self.nfft, axis=1) * self.spectrum[None, :]
        return np.fft.irfft(f, self.nfft, axis=1)[:, : self.n_samples].astype(np.float32)
