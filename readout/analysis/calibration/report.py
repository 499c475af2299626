"""Calibration results as JSON-able dicts and CSV rows. The plot data (``PlotData``,
``spectrum_plot``, ``trend_plot``, ``gainmap_plot``, ``render_png``) live in plotdata.py and are
re-exported here.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agetdaq.readout.analysis.calibration.fit import FitResult
from agetdaq.readout.analysis.calibration.gainmap import GainMapResult
from agetdaq.readout.analysis.calibration.mapplot import gainmap_plot
from agetdaq.readout.analysis.calibration.plotdata import (
    Label,
    Mark,
    PlotData,
    Renderer,
    Series,
    json_safe,
    render_png,
    short_reason,
)
from agetdaq.readout.analysis.calibration.spectrumplot import spectrum_plot
from agetdaq.readout.analysis.calibration.trendplot import (
    gain_trend_plot,
    resolution_trend_plot,
    threshold_trend_plot,
    trend_plot,
)
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, expand

__all__ = [
    "GAINMAP_COLUMNS",
    "TREND_COLUMNS",
    "Label",
    "Mark",
    "PlotData",
    "Renderer",
    "Series",
    "fit_to_dict",
    "gain_trend_plot",
    "gainmap_csv_rows",
    "gainmap_plot",
    "gainmap_region_dicts",
    "gainmap_to_dict",
    "json_safe",
    "render_png",
    "resolution_trend_plot",
    "short_reason",
    "spectrum_plot",
    "threshold_trend_plot",
    "trend_csv_rows",
    "trend_plot",
    "trend_to_dicts",
    "write_csv",
]


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


def trend_to_dicts(points: Iterable[TrendPoint], expanded: bool = False) -> list[dict[str, Any]]:
    """One dict per point; ``expanded``: split slices replaced by their parts."""
    points = expand(list(points)) if expanded else points
    return [json_safe(p.as_dict()) for p in points]


def trend_csv_rows(points: Iterable[TrendPoint], expanded: bool = False) -> list[list[Any]]:
    """Header row then one row per point (NaN written as empty); ``expanded``: split slices
    replaced by their parts (each row then covers its own time, none overlap)."""
    rows: list[list[Any]] = [list(TREND_COLUMNS)]
    for p in expand(list(points)) if expanded else points:
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
    "excluded",
    "bad_strips",
    "note",
)


def gainmap_region_dicts(result: GainMapResult) -> list[dict[str, Any]]:
    out = []
    for r in result.regions:
        d = {k: getattr(r, k) for k in GAINMAP_COLUMNS if hasattr(r, k)}
        d.update(ok=r.ok, resolution=r.fit.resolution if r.ok else None)
        d["bad_strips"] = " ".join(r.bad_strips)
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
            "reference_reason": ""
            if result.reference_peak_adc == result.reference_peak_adc
            else "no cell could be fitted",
            "bad_strips": result.bad_strips.to_dict(),
            "bad_strip_margin_mm": cfg.bad_strip_margin_mm,
            "outside": result.outside,
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
