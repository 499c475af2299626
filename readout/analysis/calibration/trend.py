"""Gain, resolution and threshold versus time, from batches of events.

Events are fed in batches (any size); a time slice closes after ``slice_xrays`` selected X-rays
or ``slice_minutes`` of event time (``time_s``), whichever comes first. Each closed slice is
fitted and becomes a TrendPoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration.fit import FitConfig, FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.selection import (
    Events,
    XraySelection,
    column,
    has_field,
    n_events,
    select_xrays,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.datapath.processing.trigger import config_from_dict, load_table

_NAN = float("nan")


@dataclass(frozen=True)
class TrendConfig:
    """How events are sliced and fitted. ``threshold_adc`` is the DAQ threshold on the event
    energy sum, if known; ``reference_gain`` (ADC/keV) is the reference for the relative gain,
    or None for the first good slice."""

    slice_xrays: int = 1000
    slice_minutes: float = math.inf  # inf: slices close on the X-ray count only
    threshold_adc: float | None = None
    reference_gain: float | None = None
    select: bool = True  # False: the events fed are already X-ray-like
    n_bins: int = 2048
    adc_max: float = 8192.0
    fit: FitConfig = field(default_factory=FitConfig)
    selection: XraySelection = field(default_factory=XraySelection)

    def __post_init__(self) -> None:
        if self.slice_xrays < 1:
            raise ValueError(f"slice_xrays must be >= 1, got {self.slice_xrays}")
        if not self.slice_minutes > 0:
            raise ValueError(f"slice_minutes must be > 0, got {self.slice_minutes}")

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration"
    ) -> TrendConfig:
        """``[calibration.trend]`` with ``[calibration.fit]`` and ``[calibration.selection]``."""
        values = dict(load_table(source, f"{table}.trend"))
        values["fit"] = FitConfig.from_toml(source, f"{table}.fit")
        values["selection"] = XraySelection.from_toml(source, f"{table}.selection")
        return config_from_dict(cls, values, f"{table}.trend")


@dataclass
class TrendPoint:
    """One time slice. Fitted values are NaN when ``ok`` is False; ``reason`` says why."""

    index: int
    t_start_s: float
    t_stop_s: float
    n_events: int  # events fed during the slice
    n_xrays: int  # selected events
    ok: bool
    reason: str
    peak_adc: float
    peak_adc_err: float
    gain: float  # ADC per keV
    gain_err: float
    gain_rel: float  # gain / reference gain
    gain_rel_err: float
    resolution: float  # FWHM / E at 5.9 keV
    resolution_err: float
    threshold_kev_adc: float  # E_ref * threshold_adc / peak_adc
    threshold_kev_spectrum: float  # turn-on of the spectrum (fitted efficiency edge)
    threshold_kev_spectrum_err: float
    chi2_ndf: float
    fit: FitResult | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("fit")
        return d


def point_from_fit(
    fit: FitResult,
    index: int,
    t_range: tuple[float, float],
    counts: tuple[int, int],
    reference_gain: float | None,
    threshold_adc: float | None,
) -> TrendPoint:
    """The trend quantities of one fitted slice."""
    ok = fit.ok
    ref = reference_gain if reference_gain else _NAN
    gain = fit.gain if ok else _NAN
    gain_err = fit.gain_err if ok else _NAN
    thr_adc = _NAN
    if ok and threshold_adc is not None:
        thr_adc = fit.lines.ref_energy_kev * threshold_adc / fit.peak_adc
    spectral = ok and fit.threshold_found
    return TrendPoint(
        index=index,
        t_start_s=t_range[0],
        t_stop_s=t_range[1],
        n_events=counts[0],
        n_xrays=counts[1],
        ok=ok,
        reason=fit.reason,
        peak_adc=fit.peak_adc if ok else _NAN,
        peak_adc_err=fit.peak_adc_err if ok else _NAN,
        gain=gain,
        gain_err=gain_err,
        gain_rel=gain / ref,
        gain_rel_err=gain_err / ref,
        resolution=fit.resolution if ok else _NAN,
        resolution_err=fit.resolution_err if ok else _NAN,
        threshold_kev_adc=thr_adc,
        threshold_kev_spectrum=fit.threshold_kev if spectral else _NAN,
        threshold_kev_spectrum_err=fit.threshold_kev_err if spectral else _NAN,
        chi2_ndf=fit.chi2_ndf if ok else _NAN,
        fit=fit,
    )


class GainTrend:
    """Incremental trend: ``feed`` batches, read ``points``; the open slice is ``spectrum``."""

    def __init__(self, config: TrendConfig | None = None) -> None:
        self.config = config or TrendConfig()
        self.points: list[TrendPoint] = []
        self.reference_gain: float | None = self.config.reference_gain
        self.spectrum = Spectrum(self.config.n_bins, self.config.adc_max)
        self._reset_slice()

    def _reset_slice(self) -> None:
        self.spectrum.clear()
        self._n_events = 0
        self._n_xrays = 0
        self._t_start = _NAN
        self._t_stop = _NAN

    @property
    def open_counts(self) -> tuple[int, int]:
        """(events, X-rays) in the open slice."""
        return self._n_events, self._n_xrays

    def set_reference(self, gain: float) -> None:
        """Use ``gain`` (ADC/keV) as the reference from now on (past points keep theirs)."""
        if not gain > 0:
            raise ValueError(f"reference gain must be > 0, got {gain}")
        self.reference_gain = float(gain)

    def set_reference_from_spectrum(self, spectrum: Spectrum) -> FitResult:
        """Fit a reference run's spectrum and use its gain; a failed fit raises ValueError."""
        fit = fit_spectrum(spectrum, self.config.fit)
        if not fit.ok:
            raise ValueError(f"reference spectrum fit failed: {fit.reason}")
        self.set_reference(fit.gain)
        return fit

    def feed(self, events: Events) -> list[TrendPoint]:
        """Add a batch of events; returns the points of the slices it closed."""
        cfg = self.config
        n = n_events(events)
        if n == 0:
            return []
        energy = column(events, "energy_adc").astype(float)
        mask = select_xrays(events, cfg.selection) if cfg.select else np.ones(n, dtype=bool)
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
                chunk = mask[i:j]
                self.spectrum.fill(energy[i:j][chunk])
                self._n_events += j - i
                self._n_xrays += int(chunk.sum())
                self._t_stop = times[j - 1]
            if j < n or (j == j_count and k < cum.size):
                closed.append(self.close())
            i = j
        return closed

    def fit_open(self) -> FitResult:
        """Fit the open slice without closing it (for a live display)."""
        return fit_spectrum(self.spectrum, self.config.fit)

    def close(self) -> TrendPoint:
        """Close the open slice (e.g. at the end of a run), fit it and return its point."""
        fit = fit_spectrum(self.spectrum, self.config.fit)
        if fit.ok and self.reference_gain is None:
            self.reference_gain = fit.gain
        point = point_from_fit(
            fit,
            len(self.points),
            (self._t_start, self._t_stop),
            (self._n_events, self._n_xrays),
            self.reference_gain,
            self.config.threshold_adc,
        )
        self.points.append(point)
        self._reset_slice()
        return point

    def arrays(self) -> dict[str, np.ndarray]:
        """The points as columns (for plots): every numeric TrendPoint field."""
        names = [k for k in TrendPoint.__dataclass_fields__ if k not in ("fit", "reason")]
        return {k: np.array([getattr(p, k) for p in self.points]) for k in names}
