"""The strips as the monitor's histograms bin them: one hitmap bin per X and Y strip of the mapping
(bin edges half-way between strip centres). Light on purpose: the monitor imports it at start-up
without the 55Fe analysis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agetdaq.protocol.mapping import StripMapping


def strip_edges(positions_mm: np.ndarray) -> np.ndarray:
    """Bin edges half-way between strip centres (and half a pitch beyond the ends)."""
    p = np.sort(np.asarray(positions_mm, np.float64))
    if len(p) < 2:
        return np.array([p[0] - 0.5, p[0] + 0.5]) if len(p) else np.array([0.0, 1.0])
    mid = 0.5 * (p[1:] + p[:-1])
    return np.concatenate(([p[0] - (mid[0] - p[0])], mid, [p[-1] + (p[-1] - mid[-1])]))


@dataclass(frozen=True)
class StripGeometry:
    """The strips as the histograms bin them: one hitmap bin per X and Y strip."""

    x_edges: np.ndarray
    y_edges: np.ndarray
    n_strips: int

    @classmethod
    def from_mapping(cls, mapping: StripMapping) -> StripGeometry:
        return cls(
            strip_edges(mapping.x_positions_mm), strip_edges(mapping.y_positions_mm),
            mapping.n_strips,
        )  # fmt: skip

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.x_edges) - 1, len(self.y_edges) - 1

    @property
    def area_mm(self) -> tuple[float, float, float, float]:
        x, y = self.x_edges, self.y_edges
        return float(x[0]), float(x[-1]), float(y[0]), float(y[-1])
