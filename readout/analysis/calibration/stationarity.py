"""Is the gain constant inside a slice? A rank test on the X-ray energies in time order.

When the gain is constant the energies of a slice's X-rays are exchangeable: their time order
carries no information, whatever the spectrum's shape (lines, escape, background, threshold).
A gain step or drift scales every line, so energies after the change rank systematically higher
or lower than before it. The statistic is the rank CUSUM (Pettitt's test):
``U_t = 2 * sum(rank_i, i <= t) - t * (n + 1)``; ``max |U_t|`` scaled by its null standard
deviation is the supremum of a Brownian bridge, whose tail is the Kolmogorov distribution, so the
p-value is exact for large ``n`` and needs no model. ``argmax |U_t|`` locates the change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import kolmogorov
from scipy.stats import rankdata

MIN_VALUES = 20  # fewer values: no test (p = 1)


@dataclass(frozen=True)
class ChangePoint:
    """Outcome of the rank test: ``p_value`` of "no change", the index of the first value after
    the most likely change, and the direction (+1: later values are larger)."""

    p_value: float
    index: int
    direction: int
    statistic: float  # max |U_t| / sqrt(n^2 (n + 1) / 3)


def change_point(values: np.ndarray) -> ChangePoint:
    """Rank test for a change of level in ``values`` (in time order); NaN values are dropped."""
    x = np.asarray(values, dtype=np.float64)
    keep = np.flatnonzero(np.isfinite(x))
    n = keep.size
    if n < MIN_VALUES:
        return ChangePoint(1.0, int(x.size // 2), 0, 0.0)
    ranks = rankdata(x[keep])
    u = 2.0 * np.cumsum(ranks)[:-1] - np.arange(1, n) * (n + 1.0)
    k = int(np.argmax(np.abs(u)))
    stat = float(abs(u[k]) / math.sqrt(n * n * (n + 1.0) / 3.0))
    # U_t < 0: the first t values rank low, i.e. the later ones are larger
    direction = 1 if u[k] < 0 else -1
    return ChangePoint(float(kolmogorov(stat)), int(keep[k + 1]), direction, stat)


def change_point_reference(values: np.ndarray) -> tuple[float, int]:
    """Plain-Python twin of :func:`change_point` (p-value, index) for the tests: every split
    compared pairwise (sum of signs), O(n^2)."""
    x = [float(v) for v in values if math.isfinite(v)]
    n = len(x)
    best, at = -1.0, 0
    for t in range(1, n):
        u = sum((a > b) - (a < b) for a in x[:t] for b in x[t:])
        if abs(u) > best:
            best, at = abs(u), t
    stat = best / math.sqrt(n * n * (n + 1.0) / 3.0)
    return float(kolmogorov(stat)), at
