"""Calibration results as JSON-able dicts, CSV rows and plot data.

No plotting library is imported here: ``*_plot`` functions return a PlotData (plain arrays and
labels) and ``render_png`` hands it to a renderer callable supplied by the caller (the GUI's
pyqtgraph exporter, or matplotlib where installed).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration.fit import FitResult
from agetdaq.readout.analysis.calibration.gainmap import GainMapResult
from agetdaq.readout.analysis.calibration.model import component_counts
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trend import TrendPoint


def json_safe(value: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN and inf to None, recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fit_to_dict(fit: FitResult) -> dict[str, Any]:
    """The fit's outcome, parameters, errors and derived values."""
    d: dict[str, Any] = {
        "ok": fit.ok,
        "reason": fit.reason,
        "gas": fit.lines.gas,
        "n_counts": fit.n_counts,
        "window_adc": list(fit.window_adc),
        "chi2_ndf": fit.chi2_ndf,
        "ndf": fit.ndf,
        "nfev": fit.nfev,
        "converged": fit.converged,
        "params": dict(fit.params),
        "errors": dict(fit.errors),
        "fixed": list(fit.fixed),
    }
    if fit.params:
        d.update(
            peak_adc=fit.peak_adc,
            peak_adc_err=fit.peak_adc_err,
            gain_adc_per_kev=fit.gain,
            resolution_fwhm=fit.resolution,
            resolution_fwhm_err=fit.resolution_err,
            threshold_found=fit.threshold_found,
            threshold_kev=fit.threshold_kev,
            threshold_kev_err=fit.threshold_kev_err,
        )
    if fit.edge is not None and not fit.edge.found:
        d["threshold_reason"] = fit.edge.reason
    return json_safe(d)


TREND_COLUMNS = tuple(k for k in TrendPoint.__dataclass_fields__ if k not in ("fit", "parts"))


def trend_to_dicts(points: Iterable[TrendPoint]) -> list[dict[str, Any]]:
    return [json_safe(p.as_dict()) for p in points]


def trend_csv_rows(points: Iterable[TrendPoint]) -> list[list[Any]]:
    """Header row then one row per point (NaN written as empty)."""
    rows: list[list[Any]] = [list(TREND_COLUMNS)]
    for p in points:
        d = json_safe(p.as_dict())
        rows.append(["" if d[k] is None else d[k] for k in TREND_COLUMNS])
    return rows


GAINMAP_COLUMNS = (
    "ix",
    "iy",
    "counts",
    "ok",
    "reason",
    "peak_adc",
    "peak_adc_err",
    "rel_gain",
    "rel_gain_err",
    "resolution",
    "slope_adc_per_kev",
    "offset_adc",
    "calibration",
)


def gainmap_region_dicts(result: GainMapResult) -> list[dict[str, Any]]:
    out = []
    for r in result.regions:
        d = {k: getattr(r, k) for k in GAINMAP_COLUMNS if hasattr(r, k)}
        d.update(ok=r.ok, reason=r.fit.reason, resolution=r.fit.resolution if r.ok else None)
        out.append(json_safe({k: d[k] for k in GAINMAP_COLUMNS}))
    return out


def gainmap_to_dict(result: GainMapResult) -> dict[str, Any]:
    cfg = result.config
    return json_safe(
        {
            "nx": cfg.nx,
            "ny": cfg.ny,
            "x_range_mm": cfg.x_range_mm,
            "y_range_mm": cfg.y_range_mm,
            "reference": cfg.reference,
            "reference_peak_adc": result.reference_peak_adc,
            "rel_gain": result.rel_gain,
            "regions": gainmap_region_dicts(result),
        }
    )


def gainmap_csv_rows(result: GainMapResult) -> list[list[Any]]:
    rows: list[list[Any]] = [list(GAINMAP_COLUMNS)]
    for d in gainmap_region_dicts(result):
        rows.append(["" if d[k] is None else d[k] for k in GAINMAP_COLUMNS])
    return rows


def write_csv(rows: list[list[Any]], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@dataclass
class Series:
    """One curve: ``style`` is "step" (histogram, x are the len(y)+1 edges), "line" or
    "points" (with optional ``yerr``)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    style: str = "line"
    yerr: np.ndarray | None = None


@dataclass
class PlotData:
    """Everything needed to draw one figure, without a plotting library."""

    kind: str  # "spectrum", "trend" or "gainmap"
    title: str
    x_label: str = ""
    y_label: str = ""
    series: list[Series] = field(default_factory=list)
    image: np.ndarray | None = None  # (ny, nx), row 0 at the bottom
    extent: tuple[float, float, float, float] | None = None  # x0, x1, y0, y1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "kind": self.kind,
                "title": self.title,
                "x_label": self.x_label,
                "y_label": self.y_label,
                "series": [s.__dict__ for s in self.series],
                "image": self.image,
                "extent": self.extent,
                "notes": self.notes,
            }
        )


def spectrum_plot(spectrum: Spectrum, fit: FitResult | None = None, title: str = "") -> PlotData:
    """Spectrum as a step histogram plus, for a fit with parameters, the model and its parts."""
    plot = PlotData("spectrum", title or "55Fe spectrum", "energy sum (ADC)", "counts / bin")
    plot.series.append(Series("data", spectrum.edges, spectrum.counts.astype(float), "step"))
    if fit is None or not fit.params:
        if fit is not None:
            plot.notes.append(f"fit failed: {fit.reason}")
        return plot
    lo, hi = fit.window_adc
    edges = spectrum.edges
    i0, i1 = np.searchsorted(edges, [lo, hi])
    e = edges[max(i0 - 1, 0) : i1 + 1]
    centers = 0.5 * (e[1:] + e[:-1])
    parts = component_counts(e, fit.param_array, fit.lines, fit.line_shape)
    plot.series.append(Series("model", centers, sum(parts.values()), "line"))
    for name, counts in parts.items():
        plot.series.append(Series(name, centers, counts, "line"))
    plot.notes += [
        f"peak {fit.peak_adc:.1f} +- {fit.peak_adc_err:.1f} ADC, gain {fit.gain:.2f} ADC/keV",
        f"FWHM/E {100 * fit.resolution:.1f} +- {100 * fit.resolution_err:.1f} %",
        f"chi2/ndf {fit.chi2_ndf:.2f}" + ("" if fit.ok else f"  NOT OK: {fit.reason}"),
    ]
    if fit.threshold_found:
        plot.notes.append(f"turn-on {fit.threshold_kev:.2f} +- {fit.threshold_kev_err:.2f} keV")
    return plot


def trend_plot(points: list[TrendPoint], quantity: str = "gain_rel") -> PlotData:
    """One trend quantity (a TrendPoint field with a matching ``*_err``) versus slice time (or
    slice index when the events had no time)."""
    t = np.array([0.5 * (p.t_start_s + p.t_stop_s) for p in points], dtype=float)
    use_time = t.size > 0 and bool(np.all(np.isfinite(t)))
    x = (t - t[0]) / 3600.0 if use_time else np.array([p.index for p in points], dtype=float)
    y = np.array([getattr(p, quantity) for p in points], dtype=float)
    err_name = f"{quantity}_err"
    yerr = None
    if err_name in TrendPoint.__dataclass_fields__:
        yerr = np.array([getattr(p, err_name) for p in points], dtype=float)
    plot = PlotData("trend", quantity, "time (h)" if use_time else "slice", quantity)
    plot.series.append(Series(quantity, x, y, "points", yerr))
    return plot


def gainmap_plot(result: GainMapResult, attribute: str = "rel_gain") -> PlotData:
    cfg = result.config
    plot = PlotData("gainmap", f"gain map ({attribute})", "x (mm)", "y (mm)")
    plot.image = result.map_of(attribute)
    plot.extent = (*cfg.x_range_mm, *cfg.y_range_mm)
    plot.notes.append(f"reference peak {result.reference_peak_adc:.1f} ADC ({cfg.reference})")
    return plot


Renderer = Callable[[PlotData, Path], None]


def render_png(plot: PlotData, path: str | Path, renderer: Renderer) -> Path:
    """Draw ``plot`` into ``path`` with ``renderer(plot, path)``; checks a file was written."""
    path = Path(path)
    renderer(plot, path)
    if not path.is_file():
        raise RuntimeError(f"renderer {renderer!r} wrote no file at {path}")
    return path
