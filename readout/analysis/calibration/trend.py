"""Gain, resolution and threshold versus time, from batches of events.

Events are fed in batches (any size); a time slice closes after ``slice_xrays`` selected X-rays
or ``slice_minutes`` of event time (``time_s``), whichever comes first. Each closed slice is
judged (judge.py: fitted, tested for a gain change inside it and for a spectrum that is not one
line, split or refused) and becomes a TrendPoint (trendpoint.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.fit import FitConfig, FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.judge import SliceJudge, SliceXrays
from agetdaq.readout.analysis.calibration.linecheck import LineCheckConfig
from agetdaq.readout.analysis.calibration.selection import (
    Events,
    XraySelection,
    column,
    has_field,
    n_events,
    select_xrays,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, expand, point_from_fit
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load_table

_NAN = float("nan")


@dataclass(frozen=True)
class TrendConfig:
    """How events are sliced and fitted. ``threshold_adc`` is the DAQ threshold on the event
    energy sum, if known; ``reference_gain`` (ADC/keV, error ``reference_gain_err``) is the
    reference for the relative gain, or None for the first good slice. X-rays closer than
    ``bad_strip_margin_mm`` to a bad strip given to the GainTrend lose charge on it and are
    left out (badstrips.py)."""

    slice_xrays: int = 1000
    slice_minutes: float = math.inf  # inf: slices close on the X-ray count only
    threshold_adc: float | None = None
    reference_gain: float | None = None
    reference_gain_err: float = 0.0
    bad_strip_margin_mm: float = 1.0  # X-rays this close to a known bad strip are not used
    select: bool = True  # False: the events fed are already X-ray-like
    n_bins: int = 2048
    adc_max: float = 8192.0
    fit: FitConfig = field(default_factory=FitConfig)
    selection: XraySelection = field(default_factory=XraySelection)
    check: LineCheckConfig = field(default_factory=LineCheckConfig)

    def __post_init__(self) -> None:
        if self.slice_xrays < 1:
            raise ValueError(f"slice_xrays must be >= 1, got {self.slice_xrays}")
        if not self.slice_minutes > 0:
            raise ValueError(f"slice_minutes must be > 0, got {self.slice_minutes}")

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration"
    ) -> TrendConfig:
        """``[calibration.trend]`` with ``[calibration.fit]``, ``[calibration.selection]`` and
        ``[calibration.linecheck]``."""
        values = dict(load_table(source, f"{table}.trend"))
        values["fit"] = FitConfig.from_toml(source, f"{table}.fit")
        values["selection"] = XraySelection.from_toml(source, f"{table}.selection")
        check = load_table(source, f"{table}.linecheck")
        values["check"] = config_from_dict(LineCheckConfig, check, f"{table}.linecheck")
        return config_from_dict(cls, values, f"{table}.trend")


class _OpenSlice:
    """The selected X-rays of the open slice, in the order they were fed."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, energy: np.ndarray, ordinal: np.ndarray, time: np.ndarray) -> None:
        if energy.size:
            self._parts.append((energy, ordinal, time))

    def xrays(self, n_events: int, t_range: tuple[float, float]) -> SliceXrays:
        cols = [np.concatenate([p[i] for p in self._parts]) if self._parts else np.zeros(0)
                for i in range(3)]  # fmt: skip
        return SliceXrays(cols[0], cols[1].astype(np.int64), cols[2], n_events, t_range)


class GainTrend:
    """Incremental trend: ``feed`` batches, read ``points`` (one per slice; ``expand(points)``
    puts the parts of split slices in their place); the open slice is ``spectrum``."""

    def __init__(
        self, config: TrendConfig | None = None, bad_strips: BadStrips | None = None
    ) -> None:
        self.config = config or TrendConfig()
        self.bad_strips = bad_strips or BadStrips()
        self.excluded = 0  # selected X-rays left out: next to a bad strip
        self.points: list[TrendPoint] = []
        self._reference_gain: float | None = self.config.reference_gain
        self.reference_gain_err = self.config.reference_gain_err if self._reference_gain else 0.0
        self.spectrum = Spectrum(self.config.n_bins, self.config.adc_max)
        self._open = _OpenSlice()
        self._reset_slice()

    def _reset_slice(self) -> None:
        self.spectrum.clear()
        self._open.clear()
        self._n_events = 0
        self._n_xrays = 0
        self._t_start = _NAN
        self._t_stop = _NAN

    @property
    def reference_gain(self) -> float | None:
        """Reference gain (ADC/keV) of ``gain_rel``; None until a good slice or a caller sets
        it. Assigning it sets its error to 0 (use ``set_reference`` to give one)."""
        return self._reference_gain

    @reference_gain.setter
    def reference_gain(self, gain: float | None) -> None:
        self._reference_gain = None if gain is None else float(gain)
        self.reference_gain_err = 0.0

    @property
    def open_counts(self) -> tuple[int, int]:
        """(events, X-rays) in the open slice."""
        return self._n_events, self._n_xrays

    def set_reference(self, gain: float, gain_err: float = 0.0) -> None:
        """Use ``gain`` (ADC/keV) +- ``gain_err`` as the reference from now on (past points keep
        theirs); the error enters every later ``gain_rel_err``."""
        if not gain > 0:
            raise ValueError(f"reference gain must be > 0, got {gain}")
        if not gain_err >= 0:
            raise ValueError(f"reference gain error must be >= 0, got {gain_err}")
        self._reference_gain = float(gain)
        self.reference_gain_err = float(gain_err)

    def set_reference_from_spectrum(self, spectrum: Spectrum) -> FitResult:
        """Fit a reference run's spectrum and use its gain and error; a failed fit raises
        ValueError."""
        fit = fit_spectrum(spectrum, self.config.fit)
        if not fit.ok:
            raise ValueError(f"reference spectrum fit failed: {fit.reason}")
        self.set_reference(fit.gain, fit.gain_err)
        return fit

    def feed(self, events: Events) -> list[TrendPoint]:
        """Add a batch of events; returns the points of the slices it closed."""
        cfg = self.config
        n = n_events(events)
        if n == 0:
            return []
        energy = column(events, "energy_adc").astype(float)
        mask, near = self._usable(events)
        self.excluded += near
        timed = has_field(events, "time_s")
        if math.isfinite(cfg.slice_minutes) and not timed:
            raise ValueError("slice_minutes is set but the events lack the field 'time_s'")
        times = column(events, "time_s").astype(float) if timed else np.full(n, _NAN)
        closed: list[TrendPoint] = []
        i = 0
        while i < n:
            if self._n_events == 0:
                self._t_start = times[i]
            need = cfg.slice_xrays - self._n_xrays
            cum = np.cumsum(mask[i:])
            k = int(np.searchsorted(cum, need))  # index of the X-ray that fills the slice
            j_count = i + k + 1 if k < cum.size else n
            j_time = n
            if math.isfinite(cfg.slice_minutes):
                late = np.flatnonzero(times[i:] >= self._t_start + 60.0 * cfg.slice_minutes)
                j_time = i + int(late[0]) if late.size else n
            j = min(j_count, j_time)
            if j > i:
                idx = i + np.flatnonzero(mask[i:j])
                self.spectrum.fill(energy[idx])
                good = idx[np.isfinite(energy[idx])]
                self._open.add(energy[good], self._n_events + good - i, times[good])
                self._n_events += j - i
                self._n_xrays += idx.size
                self._t_stop = times[j - 1]
            if j < n or (j == j_count and k < cum.size):
                closed.append(self.close())
            i = j
        return closed

    def usable(self, events: Events) -> np.ndarray:
        """The X-rays of a batch this trend uses: selected (unless ``config.select`` is False)
        and not next to a known bad strip."""
        return self._usable(events)[0]

    def _usable(self, events: Events) -> tuple[np.ndarray, int]:
        cfg = self.config
        n = n_events(events)
        mask = select_xrays(events, cfg.selection) if cfg.select else np.ones(n, dtype=bool)
        if not self.bad_strips:
            return mask, 0
        x, y = column(events, "x_mm"), column(events, "y_mm")
        near = mask & self.bad_strips.near(x, y, cfg.bad_strip_margin_mm)
        return mask & ~near, int(near.sum())

    def fit_open(self) -> FitResult:
        """Fit the open slice without closing it (for a live display)."""
        return fit_spectrum(self.spectrum, self.config.fit)

    def judge(self) -> SliceJudge:
        """The slice judge of the current configuration."""
        cfg = self.config
        return SliceJudge(cfg.fit, cfg.check, cfg.n_bins, cfg.adc_max, cfg.threshold_adc)

    def close(self) -> TrendPoint:
        """Close the open slice (e.g. at the end of a run), judge it and return its point (a
        split slice's good pieces are in ``point.parts``)."""
        xrays = self._open.xrays(self._n_events, (self._t_start, self._t_stop))
        point = self.judge().judge(xrays, len(self.points))
        point.n_xrays = self._n_xrays  # selected, with any non-finite energy
        self._apply_reference(point)
        self.points.append(point)
        self._reset_slice()
        return point

    def _apply_reference(self, point: TrendPoint) -> None:
        if self._reference_gain is None:
            first = next((p for p in [point, *point.parts] if p.good), None)
            if first is None:
                point.set_reference(None)
                return
            self.set_reference(first.gain, first.gain_err)
            point.set_reference(first.gain, first.gain_err)
            first.set_reference(first.gain, first.gain_err, own=True)
            return
        point.set_reference(self._reference_gain, self.reference_gain_err)

    def arrays(self, expanded: bool = False) -> dict[str, np.ndarray]:
        """The points as columns (for plots): every numeric TrendPoint field; ``expanded``:
        split slices replaced by their parts."""
        points = expand(self.points) if expanded else self.points
        skip = ("fit", "parts", "reason", "status", "flag", "part")
        names = [k for k in TrendPoint.__dataclass_fields__ if k not in skip]
        return {k: np.array([getattr(p, k) for p in points]) for k in names}


__all__ = [
    "GainTrend",
    "TrendConfig",
    "TrendPoint",
    "expand",
    "point_from_fit",
]
