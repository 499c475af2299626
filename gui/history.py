"""Bounded time series for trends: a fixed-capacity ring buffer with ordered, copy-free views."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


class TimeSeries:
    """Rows ``(t, v0, v1, ...)`` in time order, the oldest dropped beyond ``capacity``.

    Every row is written twice (at ``i`` and ``i + capacity``) so the last ``len`` rows are always
    one contiguous slice: reading a window costs a binary search and no copy.
    """

    def __init__(self, names: Sequence[str], capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.names = tuple(names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.capacity = int(capacity)
        self._t = np.zeros(2 * self.capacity, np.float64)
        self._v = np.full((2 * self.capacity, len(self.names)), np.nan, np.float32)
        self._head = 0  # next write position in [0, capacity)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def clear(self) -> None:
        self._head = 0
        self._len = 0

    def append(self, t: float, values: Mapping[str, float | None]) -> None:
        """Add one row; names not given (or None) are NaN. Times should not decrease."""
        row = np.full(len(self.names), np.nan, np.float32)
        for name, value in values.items():
            i = self.index.get(name)
            if i is not None and value is not None:
                row[i] = value
        h = self._head
        self._t[h] = self._t[h + self.capacity] = t
        self._v[h] = self._v[h + self.capacity] = row
        self._head = (h + 1) % self.capacity
        self._len = min(self._len + 1, self.capacity)

    def _span(self) -> tuple[int, int]:
        if self._len < self.capacity:
            return 0, self._len
        return self._head, self._head + self.capacity

    @property
    def t(self) -> np.ndarray:
        a, b = self._span()
        return self._t[a:b]

    def column(self, name: str) -> np.ndarray:
        a, b = self._span()
        return self._v[a:b, self.index[name]]

    def last(self, name: str) -> float | None:
        """The newest finite value of ``name``, or None."""
        col = self.column(name)
        end = len(col)
        while end > 0:  # newest first, in blocks: usually the last row is finite
            start = max(0, end - 256)
            ok = np.flatnonzero(np.isfinite(col[start:end]))
            if len(ok):
                return float(col[start + ok[-1]])
            end = start
        return None

    def last_time(self) -> float | None:
        return float(self.t[-1]) if self._len else None

    def window(
        self, t_min: float, names: Sequence[str], max_points: int | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Times and columns of the rows with ``t >= t_min``, thinned to <= ``max_points``."""
        t = self.t
        first = int(np.searchsorted(t, t_min, side="left"))
        step = 1
        if max_points and len(t) - first > max_points:
            step = -(-(len(t) - first) // max_points)
        a, _ = self._span()
        sl = slice(a + first, a + len(t), step)
        return self._t[sl], {n: self._v[sl, self.index[n]] for n in names}

    def value_at(self, name: str, t: float) -> float | None:
        """The newest finite value of ``name`` at or before time ``t``."""
        times = self.t
        i = int(np.searchsorted(times, t, side="right"))
        col = self.column(name)[:i]
        ok = np.flatnonzero(np.isfinite(col))
        return float(col[ok[-1]]) if len(ok) else None
