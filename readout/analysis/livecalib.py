"""The parts of the online 55Fe analysis that follow a calibration run between trend points.

:class:`LiveWindow` holds the last N selected X-rays (a rolling window: it follows a drifting gain
without a reset) and fits their spectrum on request; :func:`fit_fields` and :func:`fit_curve` are
what a display needs of a fit. :class:`MapSweep` keeps the gain map's per-region spectra and
refits them one region per step, because a full map fit (36 regions) takes about a second, too
long a pause for the data path. Used by :class:`~agetdaq.readout.analysis.calibfeed.CalibFeed`.
"""

from __future__ import annotations

import math

import numpy as np

from agetdaq.readout.analysis.calibration import (
    FitConfig,
    FitResult,
    GainMap,
    GainMapConfig,
    GainMapResult,
    RegionResult,
    Spectrum,
    fit_spectrum,
)

_NAN = float("nan")


class LiveWindow:
    """The last ``size`` selected X-rays of the run (energies and times), fitted on request; with
    ``minutes`` > 0 only those of them within ``minutes`` of the newest (a drifting gain is seen
    over a short span however low the rate)."""

    def __init__(self, size: int, n_bins: int, adc_max: float, minutes: float = 0.0) -> None:
        if size < 1:
            raise ValueError(f"the live window needs >= 1 X-ray, got {size}")
        if not minutes >= 0:
            raise ValueError(f"the live window's minutes must be >= 0, got {minutes}")
        self.size = int(size)
        self.minutes = float(minutes)
        self.n_bins, self.adc_max = n_bins, adc_max
        self._energy = np.full(self.size, np.nan)
        self._time = np.full(self.size, np.nan)
        self._head = 0
        self.added = 0  # X-rays added since the run began
        self.fitted_at = 0  # ``added`` at the last fit

    @property
    def count(self) -> int:
        return min(self.added, self.size)

    @property
    def changed(self) -> bool:
        return self.added != self.fitted_at

    def add(self, energy: np.ndarray, time_s: np.ndarray) -> None:
        e = np.asarray(energy, np.float64)[-self.size :]
        t = np.asarray(time_s, np.float64)[-self.size :]
        idx = (self._head + np.arange(len(e))) % self.size
        self._energy[idx] = e
        self._time[idx] = t
        self._head = (self._head + len(e)) % self.size
        self.added += len(np.asarray(energy))

    def _inside(self) -> np.ndarray:
        """bool over the first ``count`` slots: the X-rays the window holds now."""
        t = self._time[: self.count]
        if self.minutes <= 0 or not len(t) or not np.isfinite(t).any():
            return np.ones(len(t), bool)
        return t >= np.nanmax(t) - 60.0 * self.minutes

    def spectrum(self) -> Spectrum:
        e = self._energy[: self.count]
        return Spectrum.from_values(e[self._inside()], self.n_bins, self.adc_max)

    def time_range(self) -> tuple[float, float]:
        t = self._time[: self.count][self._inside()]
        t = t[np.isfinite(t)]
        return (float(t.min()), float(t.max())) if len(t) else (_NAN, _NAN)

    def fit(self, config: FitConfig) -> tuple[Spectrum, FitResult]:
        spectrum = self.spectrum()
        self.fitted_at = self.added
        return spectrum, fit_spectrum(spectrum, config)


def fit_fields(
    fit: FitResult, reference_gain: float | None, threshold_adc: float | None
) -> dict[str, object]:
    """The numbers of a fit as a display shows them (NaN where the fit failed)."""
    ok = fit.ok
    ref = reference_gain if reference_gain else _NAN

    def v(x: float) -> float:
        return float(x) if ok else _NAN

    threshold = fit.threshold_kev if ok else _NAN
    if ok and not math.isfinite(threshold) and threshold_adc is not None:
        threshold = fit.lines.ref_energy_kev * threshold_adc / fit.peak_adc
    return {
        "ok": ok,
        "reason": fit.reason,
        "peak_adc": v(fit.peak_adc),
        "peak_adc_err": v(fit.peak_adc_err),
        "gain": v(fit.gain),
        "gain_rel": v(fit.gain) / ref,
        "gain_rel_err": v(fit.gain_err) / ref,
        "fwhm_rel": v(fit.resolution),
        "fwhm_rel_err": v(fit.resolution_err),
        "threshold_kev": threshold,
        "n_peak": v(fit.params.get("n_peak", _NAN)),
        "n_escape": v(fit.params.get("n_escape", _NAN)),
        "escape_adc": v(fit.gain * fit.lines.escape_energy_kev + fit.offset_adc),
        "chi2_ndf": v(fit.chi2_ndf),
    }


def fit_curve(fit: FitResult, spectrum: Spectrum) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges, model counts per bin) of a good fit over its window, on the spectrum's bins."""
    if not fit.ok:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    lo, hi = fit.window_adc
    edges = spectrum.edges
    edges = edges[(edges >= lo) & (edges <= hi)]
    if len(edges) < 2:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return edges.astype(np.float32), fit.model_counts(edges).astype(np.float32)


class MapSweep:
    """Gain map filled with selected X-rays; after new data, ``step`` refits one region at a time
    (regions below ``min_xrays`` are skipped with that reason) and returns the map after every
    step of a sweep: fitted regions show their newest fit, the others why not (``120 of 200
    X-rays``, ``fit failed: ...``, ``700 X-rays, fit due``)."""

    def __init__(self, config: GainMapConfig, min_xrays: int = 200) -> None:
        self.map = GainMap(config)
        self.min_xrays = int(min_xrays)
        self.regions: list[RegionResult] = [self._too_few(r) for r in range(self.n_regions)]
        self._next: int | None = None  # next region of the running sweep
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.dirty = False

    @property
    def config(self) -> GainMapConfig:
        return self.map.config

    @property
    def n_regions(self) -> int:
        return len(self.map.spectra)

    def fill(self, energy: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
        """Selected X-rays; kept until the next step (one map fill for many data-path batches)."""
        if len(energy):
            self._pending.append((np.asarray(energy), np.asarray(x_mm), np.asarray(y_mm)))
            self.dirty = True

    def _fill_pending(self) -> None:
        if self._pending:
            e, x, y = (np.concatenate(c) for c in zip(*self._pending))
            self._pending = []
            self.map.fill({"energy_adc": e, "x_mm": x, "y_mm": y})

    def _too_few(self, r: int) -> RegionResult:
        n = self.map.spectra[r].total
        fit = FitResult(False, f"{n} of {self.min_xrays} X-rays", n_counts=n)
        return RegionResult(ix=r % self.config.nx, iy=r // self.config.nx, counts=n, fit=fit)

    def step(self) -> GainMapResult | None:
        """Refit the next region with enough X-rays (at most one fit); the map while a sweep
        runs, None when there was nothing new to sweep."""
        self._fill_pending()
        if self._next is None:
            if not self.dirty:
                return None
            self._next, self.dirty = 0, False
        while self._next < self.n_regions:
            r = self._next
            self._next += 1
            if self.map.spectra[r].total >= self.min_xrays:
                self.regions[r] = self.map.fit_region(r)
                break
            self.regions[r] = self._too_few(r)
        if self._next >= self.n_regions:
            self._next = None
        return self.map.result([self._shown(r) for r in range(self.n_regions)])

    def _shown(self, r: int) -> RegionResult:
        """Region ``r`` as the map shows it now: its last fit, or why it has none yet."""
        reg = self.regions[r]
        n = self.map.spectra[r].total
        if reg.ok:
            return reg
        if n < self.min_xrays:
            return self._too_few(r)
        if reg.counts < self.min_xrays:  # enough X-rays now, but not fitted yet
            fit = FitResult(False, f"{n} X-rays, fit due", n_counts=n)
            return RegionResult(ix=reg.ix, iy=reg.iy, counts=n, fit=fit)
        return reg


def map_arrays(result: GainMapResult) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """Header fields and [ix, iy] arrays of a gain map for the stream."""
    cfg = result.config
    rel = np.full((cfg.nx, cfg.ny), np.nan, np.float32)
    peak = np.full((cfg.nx, cfg.ny), np.nan, np.float32)
    counts = np.zeros((cfg.nx, cfg.ny), np.int64)
    reasons = [""] * (cfg.nx * cfg.ny)
    for reg in result.regions:
        rel[reg.ix, reg.iy] = reg.rel_gain
        peak[reg.ix, reg.iy] = reg.peak_adc
        counts[reg.ix, reg.iy] = reg.counts
        reasons[reg.ix * cfg.ny + reg.iy] = "" if reg.ok else reg.fit.reason
    header = {
        "nx": cfg.nx,
        "ny": cfg.ny,
        "x_range_mm": list(cfg.x_range_mm),
        "y_range_mm": list(cfg.y_range_mm),
        "reference_peak_adc": result.reference_peak_adc,
        "reasons": reasons,
    }
    return header, {"rel_gain": rel, "peak_adc": peak, "counts": counts}
