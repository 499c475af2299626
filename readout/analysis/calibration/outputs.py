"""The files of a calibration campaign (campaign.Outcome): trend.csv/json, gainmap.csv/json,
summary.json and the PNG figures (spectrum, gain/resolution/threshold against time, gain map,
and ``slices/slice_NNNN.png`` for the slices that were not plain good points)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.readout.analysis.calibration import report
from agetdaq.readout.analysis.calibration.campaign import Outcome
from agetdaq.readout.analysis.calibration.plotdata import PlotData, Renderer, render_png
from agetdaq.readout.analysis.calibration.trendpoint import STATUSES


def utc(t: float) -> str:
    if not np.isfinite(t) or t <= 0:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def counts_by_status(out: Outcome) -> dict[str, int]:
    """Slices per status, and the good points (slices and parts) in the trend."""
    d = {s: sum(p.status == s for p in out.points) for s in STATUSES}
    d["good_points"] = sum(p.good for _, p in out.rows)
    return d


def summary(out: Outcome, extra: dict[str, Any]) -> dict[str, Any]:
    """summary.json: the inputs in ``extra`` plus what the analysis found."""
    return report.json_safe(
        {
            **extra,
            "events": out.events,
            "xray_candidates": out.candidates,
            "xrays": out.xrays,
            "xrays_next_to_bad_strips": out.excluded,
            "map_dropped_xrays": out.map_dropped,
            "map_rms": out.map_rms,
            "points": len(out.points),
            "points_ok": sum(p.good for p in out.points),
            "slices": counts_by_status(out),
            "last_run_fit": report.fit_to_dict(out.run_fit) if out.run_fit is not None else None,
            "last_run_scaled_to_gain_rel": out.run_gain_rel,
        }
    )


def write_tables(out: Outcome, outdir: Path, summary_dict: dict) -> list[Path]:
    """trend.csv / trend.json (split slices replaced by their parts; the slices themselves in
    trend.json's "slices"), gainmap.csv / gainmap.json and summary.json."""
    rows_in = out.rows
    rows = report.trend_csv_rows([p for _, p in rows_in])
    rows[0] = ["run", *rows[0], "t_mid_utc"]
    for i, (run, p) in enumerate(rows_in, start=1):
        rows[i] = [run, *rows[i], utc(p.t_mid_s)]
    points = [
        {"run": r, **d}
        for (r, _), d in zip(rows_in, report.trend_to_dicts([p for _, p in rows_in]))
    ]
    slices = [
        {"run": r, **d, "parts": len(p.parts)}
        for r, p, d in zip(out.point_runs, out.points, report.trend_to_dicts(out.points))
    ]
    written = [
        report.write_csv(rows, outdir / "trend.csv"),
        report.write_csv(report.gainmap_csv_rows(out.gainmap), outdir / "gainmap.csv"),
    ]
    for name, data in (
        ("trend.json", {"points": points, "slices": slices}),
        ("gainmap.json", report.gainmap_to_dict(out.gainmap)),
        ("summary.json", summary_dict),
    ):
        path = outdir / name
        path.write_text(json.dumps(data, indent=1) + "\n")
        written.append(path)
    return written


def figures(out: Outcome, threshold_adc: float | None) -> list[tuple[str, PlotData]]:
    """(file stem, plot data) of every figure."""
    pts = out.points
    figs: list[tuple[str, PlotData]] = []
    if out.run_spectrum is not None:
        run = out.point_runs[-1] if out.point_runs else ""
        n = sum(1 for r, p in out.rows if r == run and p.good)
        plot = report.spectrum_plot(
            out.run_spectrum,
            out.run_fit,
            f"55Fe spectrum of the last run ({run}), drift-corrected",
            threshold_adc,
            "energy sum (ADC at the run's median gain)",
        )
        plot.footer.append(
            f"each X-ray scaled by the gain of its own slice ({n} good points) to the run's "
            f"median gain ({out.run_gain_rel:.4f} of the reference): in-run drift removed"
        )
        figs.append(("spectrum", plot))
    figs += [
        ("gain_vs_time", report.gain_trend_plot(pts)),
        ("resolution_vs_time", report.resolution_trend_plot(pts)),
        ("threshold_vs_time", report.threshold_trend_plot(pts, threshold_adc)),
        ("gainmap", report.gainmap_plot(out.gainmap)),
    ]
    for item in out.slice_spectra:
        p = item.point
        when = utc(p.t_mid_s) or f"slice {p.index}"
        plot = report.spectrum_plot(
            item.spectrum,
            p.fit,
            f"slice {p.index} of {item.run} ({when}): {p.status}",
            threshold_adc,
        )
        plot.footer.append(f"{p.status}: {p.reason or p.flag}")
        plot.footer += [
            f"part {q.part}: {q.status}, "
            + (f"gain_rel {q.gain_rel:.4f} +- {q.gain_rel_err:.4f}" if q.good else q.reason)
            for q in p.parts
        ]
        figs.append((f"slices/slice_{p.index:04d}", plot))
    return figs


def write_plots(
    out: Outcome, outdir: Path, threshold_adc: float | None, renderer: Renderer
) -> list[Path]:
    """Every figure as a PNG under ``outdir``."""
    written = []
    for stem, plot in figures(out, threshold_adc):
        path = outdir / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(render_png(plot, path, renderer))
    return written
