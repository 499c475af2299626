"""Per-strip hit finding on pedestal- and common-mode-corrected waveforms.

A strip is a *candidate* when its maximum exceeds ``thr_hit`` (k_hit * noise, REST's pulse level);
its pulse is then the run of consecutive samples above ``thr_sample`` (k_sample * noise, REST's
point level) around the maximum. It is a *hit* when that run has at least ``n_min`` samples.

Outputs per candidate strip: amplitude = maximum, peak bin = first bin of the maximum, integral =
sum of the pulse's samples, width = pulse length in bins. Non-candidates get amplitude 0, peak
bin -1, integral 0 and width 0 (so the fast path never needs a max reduction).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BLOCK = 32  # bins tested at once in the search for the maximum


@njit(cache=True, nogil=True)
def pulse_around(x, t, thr_sample):
    """(first, last) bins of the run of samples > thr_sample around bin t (last < first: none)."""
    if not x[t] > thr_sample:
        return t, t - 1
    lo = t
    while lo > 0 and x[lo - 1] > thr_sample:
        lo -= 1
    hi = t
    n_t = x.shape[0]
    while hi < n_t - 1 and x[hi + 1] > thr_sample:
        hi += 1
    return lo, hi


@njit(cache=True, nogil=True)
def row_pulse(x, thr_hit, thr_sample, n_min):
    """(amplitude, peak bin, integral, width, hit) of one corrected waveform x (T,).

    The maximum is searched block by block: a block is scanned (scalar) only when a vectorised
    test finds a sample above the best so far (initially thr_hit); most blocks are skipped.
    """
    n_t = x.shape[0]
    amp = x.dtype.type(thr_hit)
    tb = -1
    for b0 in range(0, n_t, BLOCK):
        b1 = min(n_t, b0 + BLOCK)
        above = False
        for t in range(b0, b1):
            above |= x[t] > amp
        if above:
            for t in range(b0, b1):
                if x[t] > amp:
                    amp = x[t]
                    tb = t
    if tb < 0:
        return np.float32(0.0), -1, np.float32(0.0), 0, False
    lo, hi = pulse_around(x, tb, thr_sample)
    integral = np.float32(0.0)
    for t in range(lo, hi + 1):
        integral += x[t]
    width = hi - lo + 1
    return amp, tb, integral, width, width >= n_min


@njit(cache=True, nogil=True)
def find_hits(x, thr_hit, thr_sample, n_min):
    """Hit finding over x (n, S, T) with per-strip thresholds (S,).

    Returns amplitude float32, peak bin int16, integral float32, width int16, hit bool, all (n, S).
    """
    n, n_s, _ = x.shape
    amp = np.empty((n, n_s), dtype=np.float32)
    tbin = np.empty((n, n_s), dtype=np.int16)
    integral = np.empty((n, n_s), dtype=np.float32)
    width = np.empty((n, n_s), dtype=np.int16)
    hit = np.empty((n, n_s), dtype=np.bool_)
    for e in range(n):
        for s in range(n_s):
            a, t, q, w, h = row_pulse(x[e, s], thr_hit[s], thr_sample[s], n_min)
            amp[e, s] = a
            tbin[e, s] = t
            integral[e, s] = q
            width[e, s] = w
            hit[e, s] = h
    return amp, tbin, integral, width, hit
