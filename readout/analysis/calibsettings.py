"""The DAQ's ``[calibration]`` settings table: how the online 55Fe analysis of calibration runs
(:class:`~agetdaq.readout.analysis.calibfeed.CalibFeed`) slices, fits its live window and sweeps
its gain map. Light on purpose (no fitting code): every command loads the DAQ settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agetdaq.readout.config import setting

if TYPE_CHECKING:
    from agetdaq.readout.analysis.calibration.trend import TrendConfig

MAX_WINDOW = 100_000  # X-rays of the live window at most


@dataclass(frozen=True)
class CalibFeedSettings:
    """The DAQ's ``[calibration]`` table: how the online 55Fe analysis slices and fits."""

    slice_xrays: int = setting(
        1000, "a gain trend point every N selected X-rays ...", lo=1, hi=10_000_000
    )
    slice_minutes: float = setting(
        10.0, "... or every T minutes, whichever comes first (0: X-rays only)", lo=0.0,
        hi=10_000.0, unit="min",
    )  # fmt: skip
    window_xrays: int = setting(
        2000, "the live fit: the last N selected X-rays ...", lo=50, hi=MAX_WINDOW
    )
    window_minutes: float = setting(
        2.0, "... of the last T minutes (0: no time limit)", lo=0.0, hi=10_000.0, unit="min"
    )
    window_min_xrays: int = setting(
        200, "the live window is fitted from this many X-rays on", lo=10, hi=MAX_WINDOW
    )
    live_interval_s: float = setting(2.0, "the live fit this often", gt=0.0, hi=3600.0, unit="s")
    map_n: int = setting(6, "gain map of n x n regions", lo=1, hi=30)
    map_step_s: float = setting(
        1.0, "one gain-map region refitted this often", gt=0.0, hi=3600.0, unit="s"
    )
    map_min_xrays: int = setting(
        200, "X-rays a gain-map region needs to be fitted", lo=10, hi=10_000_000
    )

    def trend(self, threshold_adc: float | None = None) -> TrendConfig:
        """The GainTrend's slicing (its fit and selection: the defaults)."""
        from agetdaq.readout.analysis.calibration.trend import TrendConfig

        minutes = self.slice_minutes if self.slice_minutes > 0 else math.inf
        return TrendConfig(self.slice_xrays, minutes, threshold_adc=threshold_adc)
