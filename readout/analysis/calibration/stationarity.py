"""Is the gain constant inside a slice? A rank test on the X-ray energies in time order.

When the gain is constant the energies of a slice's X-rays are exchangeable: their time order
carries no information, whatever the spectrum's shape (lines, escape, background, threshold).
A gain step or drift scales every line, so energies after the change rank systematically higher
or lower than before it. The statistic is the rank CUSUM (Pettitt's test)
``U_t = 2 * sum(rank_i, i <= t) - t * (n + 1)``, with null variance ``t (n - t) (n + 1) / 3``.
Two maxima are used, each with its own tail:

- ``max |U_t| / sqrt(n^2 (n + 1) / 3)``: the supremum of a Brownian bridge, Kolmogorov tail
  (most powerful for a change near the middle);
- ``max |U_t| / sd(U_t)`` over ``t`` in ``[m, n - m]`` (``m`` = 1 % of ``n``, at least 10): the
  standardised bridge, an Ornstein-Uhlenbeck process in ``s = log(t / (n - t)) / 2``, whose
  maximum over a length ``L`` exceeds ``z`` with probability ~``2 (L z phi(z) + Phi(-z))``
  (sees a step near either end of the slice, which the first one misses).

The p-value is twice the smaller one (Bonferroni); ``argmax`` of that statistic locates the
change. Both tails are exact for large ``n`` (the second is slightly conservative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import kolmogorov, ndtr
from scipy.stats import rankdata

MIN_VALUES = 20  # fewer values: no test (p = 1)
EDGE_SHARE, EDGE_MIN = 0.01, 10  # the standardised maximum skips this many values at each end


@dataclass(frozen=True)
class ChangePoint:
    """Outcome of the rank test: ``p_value`` of "no change", the index of the first value after
    the most likely change, and the direction (+1: later values are larger)."""

    p_value: float
    index: int
    direction: int
    statistic: float  # max |U_t| / sqrt(n^2 (n + 1) / 3)


def _edge_tail(z: float, a: float) -> float:
    """P(max of |standardised bridge| over [a, 1 - a] > z)."""
    length = math.log((1.0 - a) / a)  # s from -L/2 to L/2
    phi = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return min(1.0, 2.0 * (length * z * phi + float(ndtr(-z))))


def _tests(u: np.ndarray, n: int) -> tuple[float, int, float, float, int]:
    """(Kolmogorov p, its argmax, its statistic, standardised p, its argmax) of U_1..U_{n-1}."""
    k = int(np.argmax(np.abs(u)))
    stat = float(abs(u[k]) / math.sqrt(n * n * (n + 1.0) / 3.0))
    m = max(EDGE_MIN, int(EDGE_SHARE * n))
    t = np.arange(1, n, dtype=np.float64)
    z = np.abs(u) / np.sqrt(t * (n - t) * (n + 1.0) / 3.0)
    inner = slice(m - 1, n - m)
    if n - m <= m - 1:
        return float(kolmogorov(stat)), k, stat, 1.0, k
    j = m - 1 + int(np.argmax(z[inner]))
    return float(kolmogorov(stat)), k, stat, _edge_tail(float(z[j]), m / n), j


def change_point(values: np.ndarray) -> ChangePoint:
    """Rank test for a change of level in ``values`` (in time order); NaN values are dropped."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(x))
    n = keep.size
    if n < MIN_VALUES:
        return ChangePoint(1.0, int(x.size // 2), 0, 0.0)
    ranks = rankdata(x[keep])
    u = 2.0 * np.cumsum(ranks)[:-1] - np.arange(1, n) * (n + 1.0)
    p_mid, k_mid, stat, p_edge, k_edge = _tests(u, n)
    k = k_mid if p_mid <= p_edge else k_edge
    # U_t < 0: the first t values rank low, i.e. the later ones are larger
    direction = 1 if u[k] < 0 else -1
    return ChangePoint(min(1.0, 2.0 * min(p_mid, p_edge)), int(keep[k + 1]), direction, stat)


def change_point_reference(values: np.ndarray) -> tuple[float, int]:
    """Plain-Python twin of :func:`change_point` (p-value, index) for the tests: every split
    compared pairwise (sum of signs), O(n^2)."""
    x = [float(v) for v in values if math.isfinite(v)]
    n = len(x)
    u = [sum((a > b) - (a < b) for a in x[:t] for b in x[t:]) for t in range(1, n)]
    best = max(range(n - 1), key=lambda i: abs(u[i]))
    p_mid = float(kolmogorov(abs(u[best]) / math.sqrt(n * n * (n + 1.0) / 3.0)))
    m = max(EDGE_MIN, int(EDGE_SHARE * n))
    z = [abs(u[t - 1]) / math.sqrt(t * (n - t) * (n + 1.0) / 3.0) for t in range(m, n - m + 1)]
    j = max(range(len(z)), key=lambda i: z[i])
    p_edge = _edge_tail(z[j], m / n)
    at = best + 1 if p_mid <= p_edge else m + j
    return min(1.0, 2.0 * min(p_mid, p_edge)), at
