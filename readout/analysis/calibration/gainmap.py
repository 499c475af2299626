"""Gain map: the readout split into nx x ny regions by cluster position, one spectrum and one fit
per region, relative gains and a per-region ADC -> keV calibration. X-rays next to a known bad
strip (badstrips.py) lose charge on it and are left out, counted per region."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.fit import FitConfig, FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.selection import (
    Events,
    XraySelection,
    column,
    n_events,
    select_xrays,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load_table

_NAN = float("nan")


@dataclass(frozen=True)
class GainMapConfig:
    """Region grid, binning and fit. ``reference``: "median" (median peak of the good regions),
    "global" (fit of all regions summed) or a number (reference K-alpha position, ADC).
    ``linear``: calibrate each region with a free offset, i.e. linearly from the K-alpha and
    escape peaks; falls back to ADC = gain * E when the escape is not significant."""

    nx: int = 6
    ny: int = 6
    x_range_mm: tuple[float, float] = (-30.0, 30.0)
    y_range_mm: tuple[float, float] = (-30.0, 30.0)
    n_bins: int = 2048
    adc_max: float = 8192.0
    reference: str | float = "median"
    linear: bool = True
    min_escape_significance: float = 3.0
    bad_strip_margin_mm: float = 1.0
    select: bool = True
    fit: FitConfig = field(default_factory=FitConfig)
    selection: XraySelection = field(default_factory=XraySelection)

    def __post_init__(self) -> None:
        if self.nx < 1 or self.ny < 1:
            raise ValueError(f"nx and ny must be >= 1, got {self.nx} x {self.ny}")
        for name in ("x_range_mm", "y_range_mm"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise ValueError(f"{name} must be (low, high) with high > low, got {(lo, hi)}")
        if not isinstance(self.reference, (int, float)) and self.reference not in (
            "median",
            "global",
        ):
            raise ValueError(f"reference must be 'median', 'global' or a number: {self.reference}")

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration"
    ) -> GainMapConfig:
        """``[calibration.gainmap]`` with ``[calibration.fit]`` and ``[calibration.selection]``."""
        values = dict(load_table(source, f"{table}.gainmap"))
        values["fit"] = FitConfig.from_toml(source, f"{table}.fit")
        values["selection"] = XraySelection.from_toml(source, f"{table}.selection")
        return config_from_dict(cls, values, f"{table}.gainmap")


@dataclass
class RegionResult:
    """One region: its fit, relative gain and calibration ``E = (adc - offset) / slope``."""

    ix: int
    iy: int
    counts: int
    fit: FitResult = field(repr=False)
    peak_adc: float = _NAN
    peak_adc_err: float = _NAN
    rel_gain: float = _NAN
    rel_gain_err: float = _NAN
    slope_adc_per_kev: float = _NAN
    offset_adc: float = _NAN
    calibration: str = "none"  # "linear", "proportional" or "none" (fit failed)
    excluded: int = 0  # X-rays left out: next to a bad strip
    bad_strips: tuple[str, ...] = ()  # bad strips running through the region

    @property
    def ok(self) -> bool:
        return self.fit.ok

    @property
    def reason(self) -> str:
        """Why the region has no gain (empty when it has one), with the X-rays left out."""
        if self.ok:
            return ""
        reason = self.fit.reason
        if self.excluded:
            strips = ", ".join(self.bad_strips)
            reason += f"; {self.excluded} X-rays next to bad strips {strips} left out"
        return reason

    @property
    def note(self) -> str:
        """What a reader of the map should know about a good region."""
        if not self.excluded:
            return ""
        return f"{self.excluded} X-rays next to bad strips {', '.join(self.bad_strips)} left out"


@dataclass
class GainMapResult:
    """All regions plus the (ny, nx) maps for display; NaN where a region's fit failed."""

    config: GainMapConfig = field(repr=False)
    regions: list[RegionResult]
    reference_peak_adc: float
    global_fit: FitResult | None = field(repr=False)
    bad_strips: BadStrips = field(default_factory=BadStrips)
    outside: int = 0  # selected X-rays without a position in the map

    def map_of(self, attribute: str) -> np.ndarray:
        """(ny, nx) array of one RegionResult attribute, row iy, column ix."""
        out = np.full((self.config.ny, self.config.nx), _NAN)
        for r in self.regions:
            out[r.iy, r.ix] = float(getattr(r, attribute))
        return out

    @property
    def rel_gain(self) -> np.ndarray:
        return self.map_of("rel_gain")

    def to_kev(self, adc: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
        """Energies (keV) with each event's region calibration; NaN outside the map or where the
        region has no calibration."""
        region = region_index(self.config, x_mm, y_mm)
        slope = np.array([r.slope_adc_per_kev for r in self.regions] + [_NAN])
        offset = np.array([r.offset_adc for r in self.regions] + [_NAN])
        region = np.where(region < 0, len(self.regions), region)
        return (np.asarray(adc, dtype=float) - offset[region]) / slope[region]


def region_index(config: GainMapConfig, x_mm: np.ndarray, y_mm: np.ndarray) -> np.ndarray:
    """Region number iy * nx + ix of each position; -1 outside the map or for NaN."""
    x = np.asarray(x_mm, dtype=float)
    y = np.asarray(y_mm, dtype=float)
    (x0, x1), (y0, y1) = config.x_range_mm, config.y_range_mm
    with np.errstate(invalid="ignore"):
        fx = (x - x0) / (x1 - x0) * config.nx
        fy = (y - y0) / (y1 - y0) * config.ny
        inside = (fx >= 0) & (fx <= config.nx) & (fy >= 0) & (fy <= config.ny)
    ix = np.clip(np.floor(np.where(inside, fx, 0)).astype(np.int64), 0, config.nx - 1)
    iy = np.clip(np.floor(np.where(inside, fy, 0)).astype(np.int64), 0, config.ny - 1)
    return np.where(inside, iy * config.nx + ix, -1)


class GainMap:
    """Per-region spectra filled incrementally; ``fit()`` makes a GainMapResult."""

    def __init__(
        self, config: GainMapConfig | None = None, bad_strips: BadStrips | None = None
    ) -> None:
        self.config = config or GainMapConfig()
        self.bad_strips = bad_strips or BadStrips()
        cfg = self.config
        self.spectra = [Spectrum(cfg.n_bins, cfg.adc_max) for _ in range(cfg.nx * cfg.ny)]
        self.outside = 0  # selected events without a valid position
        self.excluded = np.zeros(cfg.nx * cfg.ny, np.int64)  # next to a bad strip, per region

    def fill(self, events: Events) -> None:
        """Add a batch of events (selected first unless ``config.select`` is False)."""
        cfg = self.config
        if n_events(events) == 0:
            return
        mask = select_xrays(events, cfg.selection) if cfg.select else slice(None)
        energy = column(events, "energy_adc").astype(float)[mask]
        x, y = column(events, "x_mm")[mask], column(events, "y_mm")[mask]
        region = region_index(cfg, x, y)
        self.outside += int(np.count_nonzero(region < 0))
        if self.bad_strips:
            near = self.bad_strips.near(x, y, cfg.bad_strip_margin_mm) & (region >= 0)
            self.excluded += np.bincount(region[near], minlength=self.excluded.size)
            region = np.where(near, -1, region)
        order = np.argsort(region, kind="stable")
        bounds = np.searchsorted(region[order], np.arange(len(self.spectra) + 1))
        for r, spectrum in enumerate(self.spectra):
            spectrum.fill(energy[order[bounds[r] : bounds[r + 1]]])

    def count_excluded(self, events: Events, mask: np.ndarray) -> None:
        """Count the events of ``mask`` that lie next to a bad strip as left out of their
        region (for a caller that filters them out before ``fill``)."""
        cfg = self.config
        x, y = column(events, "x_mm")[mask], column(events, "y_mm")[mask]
        if not self.bad_strips or not x.size:
            return
        region = region_index(cfg, x, y)
        near = self.bad_strips.near(x, y, cfg.bad_strip_margin_mm) & (region >= 0)
        self.excluded += np.bincount(region[near], minlength=self.excluded.size)

    def total_spectrum(self) -> Spectrum:
        total = Spectrum(self.config.n_bins, self.config.adc_max)
        for s in self.spectra:
            total.merge(s)
        return total

    def fit(self) -> GainMapResult:
        """Fit every region and the sum; regions are compared with ``config.reference``."""
        cfg = self.config
        need_global = cfg.reference == "global"
        global_fit = fit_spectrum(self.total_spectrum(), cfg.fit) if need_global else None
        return self.result([self.fit_region(r) for r in range(len(self.spectra))], global_fit)

    def result(
        self, regions: list[RegionResult], global_fit: FitResult | None = None
    ) -> GainMapResult:
        """The map of region results (e.g. fitted one at a time); sets their relative gains."""
        ref = _reference_peak(self.config, regions, global_fit)
        for reg in regions:
            if reg.ok and ref > 0:
                reg.rel_gain = reg.peak_adc / ref
                reg.rel_gain_err = reg.peak_adc_err / ref
        return GainMapResult(self.config, regions, ref, global_fit, self.bad_strips, self.outside)

    def cell_bounds(self, r: int) -> tuple[tuple[float, float], tuple[float, float]]:
        """(x range, y range) in mm of region ``r``."""
        cfg = self.config
        (x0, x1), (y0, y1) = cfg.x_range_mm, cfg.y_range_mm
        ix, iy = r % cfg.nx, r // cfg.nx
        wx, wy = (x1 - x0) / cfg.nx, (y1 - y0) / cfg.ny
        return (x0 + ix * wx, x0 + (ix + 1) * wx), (y0 + iy * wy, y0 + (iy + 1) * wy)

    def fit_region(self, r: int) -> RegionResult:
        """Fit region ``r`` (= iy * nx + ix) alone."""
        cfg = self.config
        spectrum = self.spectra[r]
        base = {
            "ix": r % cfg.nx,
            "iy": r // cfg.nx,
            "counts": spectrum.total,
            "excluded": int(self.excluded[r]),
            "bad_strips": tuple(self.bad_strips.crossing(*self.cell_bounds(r))),
        }
        fit = None
        if cfg.linear:
            # the linear calibration needs an escape peak seen in the data, not set by a prior
            linear = dataclasses.replace(cfg.fit, free_offset=True, escape_prior=False)
            fit = fit_spectrum(spectrum, linear)
            n_esc, err = fit.params.get("n_escape", 0.0), fit.errors.get("n_escape", 0.0)
            if not (fit.ok and err > 0 and n_esc / err >= cfg.min_escape_significance):
                fit = None
        kind = "linear"
        if fit is None:
            fit = fit_spectrum(spectrum, dataclasses.replace(cfg.fit, free_offset=False))
            kind = "proportional"
        if not fit.ok:
            return RegionResult(fit=fit, **base)
        return RegionResult(
            fit=fit,
            peak_adc=fit.peak_adc,
            peak_adc_err=fit.peak_adc_err,
            slope_adc_per_kev=fit.gain,
            offset_adc=fit.offset_adc,
            calibration=kind,
            **base,
        )


def _reference_peak(
    cfg: GainMapConfig, regions: list[RegionResult], global_fit: FitResult | None
) -> float:
    if isinstance(cfg.reference, (int, float)):
        return float(cfg.reference)
    if cfg.reference == "global":
        return global_fit.peak_adc if global_fit is not None and global_fit.ok else _NAN
    peaks = [r.peak_adc for r in regions if r.ok]
    return float(np.median(peaks)) if peaks else _NAN
