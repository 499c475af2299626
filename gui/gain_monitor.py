"""Online 55Fe gain monitor: X-ray-like energies in slices, fitted off the GUI thread.

The model feeds X-ray-like events (energy in ADC, centroid in mm, data time in s). A slice closes
after ``slice_xrays`` events or ``slice_minutes`` of data time; its spectrum is fitted with the
calibration engine (readout.calibration.fit) by ``run_fit`` in a pool thread, and the outcome
becomes a trend point: peak position, gain relative to the reference, FWHM/E and threshold in keV.
The cumulative spectrum is refitted for the display at most every ``live_fit_s``; the gain map
fits the cumulative spectrum of each of n x n regions and shows each peak relative to the median.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gui.config import MonitorConfig
from gui.history import TimeSeries
from readout.calibration.fit import FitConfig, fit_spectrum
from readout.calibration.spectrum import Spectrum

TREND_NAMES = ("peak_adc", "gain_rel", "resolution_pct", "threshold_kev", "counts", "ok")
_NAN = float("nan")


@dataclass
class FitJob:
    """A spectrum (a private copy) to fit, with the regions of the gain map when due."""

    kind: str  # "live" or "slice"
    t_start: float
    t_end: float
    spectrum: Spectrum
    regions: list[Spectrum] | None = None
    gas: str = "Ar"


@dataclass
class FitOutcome:
    kind: str
    t_start: float
    t_end: float
    counts: int
    ok: bool
    reason: str = ""
    peak_adc: float = _NAN
    peak_err: float = _NAN
    resolution: float = _NAN  # FWHM / E at 5.9 keV
    threshold_kev: float = _NAN
    n_peak: float = _NAN
    n_escape: float = _NAN
    escape_adc: float = _NAN
    chi2_ndf: float = _NAN
    curve_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    curve_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    region_peaks: np.ndarray | None = field(default=None, repr=False)


def run_fit(job: FitJob) -> FitOutcome:
    """Fit a job's spectrum (and regions); runs in a worker thread, touches nothing shared."""
    config = FitConfig(gas=job.gas)
    res = fit_spectrum(job.spectrum, config)
    out = FitOutcome(job.kind, job.t_start, job.t_end, job.spectrum.total, res.ok, res.reason)
    if res.params:
        out.peak_adc, out.peak_err = res.peak_adc, res.peak_adc_err
        out.resolution, out.threshold_kev = res.resolution, res.threshold_kev
        out.n_peak = res.params.get("n_peak", _NAN)
        out.n_escape = res.params.get("n_escape", _NAN)
        out.escape_adc = res.gain * res.lines.escape_energy_kev + res.offset_adc
        out.chi2_ndf = res.chi2_ndf
        lo, hi = res.window_adc
        edges = job.spectrum.edges
        edges = edges[(edges >= lo) & (edges <= hi)]
        if len(edges) > 1:
            out.curve_x = edges.astype(np.float32)
            out.curve_y = res.model_counts(edges).astype(np.float32)
    if job.regions is not None:
        peaks = np.full(len(job.regions), np.nan)
        for i, spec in enumerate(job.regions):
            if spec.total >= config.min_counts:
                r = fit_spectrum(spec, config)
                if r.ok:
                    peaks[i] = r.peak_adc
        out.region_peaks = peaks
    return out


class GainMonitor:
    """Slices, trend and gain map of one stream (no Qt; the caller runs the jobs)."""

    def __init__(self, config: MonitorConfig, area_mm: tuple[float, float, float, float]) -> None:
        self.config = config
        self.area = area_mm  # x_lo, x_hi, y_lo, y_hi
        self.trend = TimeSeries(TREND_NAMES, config.calib_points)
        self.reference_adc: float | None = None
        self.reference_is_manual = False
        self.slice_xrays = config.slice_xrays
        self.slice_minutes = config.slice_minutes
        self.in_flight: set[str] = set()
        self.reset()

    def _spectrum(self) -> Spectrum:
        return Spectrum(self.config.spectrum_bins, self.config.spectrum_adc_max)

    def reset(self) -> None:
        """Forget the spectra (not the trend nor the reference)."""
        n = self.config.gainmap_n
        self.spectrum = self._spectrum()
        self.slice = self._spectrum()
        self.regions = [self._spectrum() for _ in range(n * n)]
        self.slice_start: float | None = None
        self.last_time: float | None = None
        self.live: FitOutcome | None = None
        self.gain_map = np.full((n, n), np.nan, np.float32)  # [ix, iy], relative to the median
        self._live_total = -1
        self._live_time = -math.inf

    def add(self, t: np.ndarray, energy: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
        """Account X-ray-like events (arrays of equal length)."""
        if not len(energy):
            return
        t_min, t_max = float(np.nanmin(t)), float(np.nanmax(t))
        if self.slice_start is None:
            self.slice_start = t_min
        self.last_time = t_max if self.last_time is None else max(self.last_time, t_max)
        self.spectrum.fill(energy)
        self.slice.fill(energy)
        n = self.config.gainmap_n
        x_lo, x_hi, y_lo, y_hi = self.area
        ix = np.floor((x_mm - x_lo) / (x_hi - x_lo) * n)
        iy = np.floor((y_mm - y_lo) / (y_hi - y_lo) * n)
        ok = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
        region = (ix[ok] * n + iy[ok]).astype(np.int64)
        e = np.asarray(energy)[ok]
        for r in np.unique(region):
            self.regions[int(r)].fill(e[region == r])

    def slice_job(self, now: float | None = None, force: bool = False) -> FitJob | None:
        """Close the slice when full, old enough (data time ``now``) or forced; else None."""
        start = self.slice_start
        if start is None or "slice" in self.in_flight:
            return None
        now = self.last_time if now is None else now
        n = self.slice.total
        aged = now is not None and now - start >= 60.0 * self.slice_minutes
        if not (force or n >= self.slice_xrays or (aged and n >= self.config.min_slice_counts)):
            return None
        job = FitJob("slice", start, float(now if now is not None else start), self.slice,
                     [r.copy() for r in self.regions], self.config.gas)  # fmt: skip
        self.slice = self._spectrum()
        self.slice_start = None
        self.in_flight.add("slice")
        return job

    def live_job(self, now: float) -> FitJob | None:
        """A fit of the cumulative spectrum when it changed and the last one is old enough."""
        total = self.spectrum.total
        if (
            "live" in self.in_flight
            or total == self._live_total
            or now - self._live_time < self.config.live_fit_s
            or total < 50
        ):
            return None
        self._live_total, self._live_time = total, now
        self.in_flight.add("live")
        t0 = self.slice_start or 0.0
        return FitJob("live", t0, self.last_time or t0, self.spectrum.copy(), None, self.config.gas)

    def gain_rel(self, peak_adc: float) -> float:
        ref = self.reference_adc
        return peak_adc / ref if ref and math.isfinite(peak_adc) else _NAN

    def set_reference(self, peak_adc: float | None, manual: bool = True) -> None:
        self.reference_adc = peak_adc if peak_adc and math.isfinite(peak_adc) else None
        self.reference_is_manual = manual and self.reference_adc is not None

    def accept(self, out: FitOutcome) -> None:
        """Take a finished fit: the live result, or a trend point (and gain map)."""
        self.in_flight.discard(out.kind)
        if out.kind == "live":
            self.live = out
            return
        if out.ok and self.reference_adc is None:
            self.set_reference(out.peak_adc, manual=False)
        self.trend.append(
            out.t_end,
            {
                "peak_adc": out.peak_adc if out.ok else None,
                "gain_rel": self.gain_rel(out.peak_adc) if out.ok else None,
                "resolution_pct": 100.0 * out.resolution if out.ok else None,
                "threshold_kev": out.threshold_kev if out.ok else None,
                "counts": out.counts,
                "ok": 1.0 if out.ok else 0.0,
            },
        )
        if out.region_peaks is not None:
            peaks = out.region_peaks
            med = np.nanmedian(peaks) if np.any(np.isfinite(peaks)) else np.nan
            n = self.config.gainmap_n
            self.gain_map = (peaks / med).reshape(n, n).astype(np.float32)

    def abandon(self, kind: str) -> None:
        """A job that raised: allow the next one."""
        self.in_flight.discard(kind)
