"""Trend figures: gain, resolution and threshold against time (UTC dates when the slices
carry unix times). Good slices are points with error bars, flagged ones hollow, the reference
slice a star; failed slices are x markers at the bottom with their reasons under the plot; split
slices are shown by their parts."""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np

from agetdaq.readout.analysis.calibration.model import FWHM_PER_SIGMA
from agetdaq.readout.analysis.calibration.plotdata import PlotData, Series, reason_kind
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, expand

UNIX_EPOCH_MIN = 1e8  # times above this are unix seconds (drawn as dates)
MAX_LISTED = 6  # failed slices listed one by one


def _times(points: list[TrendPoint]) -> tuple[np.ndarray, bool, str]:
    t = np.array([p.t_mid_s for p in points], dtype=float)
    if t.size and np.all(np.isfinite(t)):
        if np.all(t > UNIX_EPOCH_MIN):
            return t, True, "time (UTC)"
        return t, False, "time (s)"
    return np.array([p.index for p in points], dtype=float), False, "slice"


def _failed_notes(failed: list[TrendPoint], x_time: bool) -> list[str]:
    if not failed:
        return []
    lines = [f"failed slices ({len(failed)}), drawn as x at the bottom:"]
    if len(failed) <= MAX_LISTED:
        for p in failed:
            when = _when(p.t_mid_s, x_time) if math.isfinite(p.t_mid_s) else f"slice {p.index}"
            part = f" part {p.part}" if p.part else ""
            lines.append(f"  {when}{part}: {p.reason}")
    else:
        for reason, n in Counter(reason_kind(p.reason) for p in failed).most_common():
            lines.append(f"  {n} x {reason}")
    return lines


def _when(t: float, x_time: bool) -> str:
    if x_time:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
    return f"t = {t:.1f} s"


STYLE = {
    "ok": {"color": "C0", "marker": "o"},
    "flagged": {"color": "C4", "marker": "s", "hollow": True},
    "reference": {"color": "C1", "marker": "*"},
}


def _status_series(
    plot: PlotData, pts: list[TrendPoint], x: np.ndarray, y: np.ndarray, yerr, name: str
) -> None:
    status = np.array([p.status for p in pts])
    ref = np.array([p.reference for p in pts], dtype=bool)
    for label, sel, style in (
        (name, (status == "ok") & ~ref, STYLE["ok"]),
        (f"{name}: flagged (see below)", (status == "flagged") & ~ref, STYLE["flagged"]),
        (f"{name}: reference slice", ref, STYLE["reference"]),
    ):
        if sel.any() or label == name:
            e = yerr[sel] if yerr is not None else None
            plot.series.append(Series(label, x[sel], y[sel], "points", e, **style))


def _marked(plot: PlotData, points: list[TrendPoint], pts: list[TrendPoint], x) -> None:
    """Failed slices as a rug with their reasons, flagged and split slices explained."""
    failed = np.array([not p.good for p in pts], dtype=bool)
    if failed.any():
        plot.series.append(
            Series(
                "failed slice (reason below)",
                x[failed],
                np.zeros(int(failed.sum())),
                "rug",
                color="C3",
                marker="x",
            )
        )
    plot.footer += _failed_notes([p for p in pts if not p.good], plot.x_time)
    flagged = [p for p in pts if p.status == "flagged"]
    if flagged:
        plot.footer.append(f"flagged ({len(flagged)}): " + _flag_summary(flagged))
    split = [p for p in points if p.status == "split"]
    for p in split[:MAX_LISTED]:
        when = _when(p.t_mid_s, plot.x_time) if math.isfinite(p.t_mid_s) else ""
        plot.footer.append(f"slice {p.index} {when}: {p.reason} into {len(p.parts)} parts")
    if len(split) > MAX_LISTED:
        plot.footer.append(f"... {len(split) - MAX_LISTED} more split slices (trend.json)")


def trend_plot(
    points: list[TrendPoint], quantity: str = "gain_rel", name: str = "", scale: float = 1.0
) -> PlotData:
    """One trend quantity (a TrendPoint field, with ``*_err`` when there is one) against time:
    good slices as points with error bars, flagged ones hollow, the reference slice a star,
    failed ones as x markers at the bottom with their reasons listed. Split slices are shown
    by their parts."""
    pts = expand(points)
    x, x_time, x_label = _times(pts)
    plot = PlotData("trend", quantity, x_label, quantity, x_time=x_time)
    y = np.array([getattr(p, quantity) for p in pts], dtype=float) * scale
    err_name = f"{quantity}_err"
    yerr = None
    if err_name in TrendPoint.__dataclass_fields__:
        yerr = np.array([getattr(p, err_name) for p in pts], dtype=float) * scale
    _status_series(plot, pts, x, y, yerr, name or quantity)
    _marked(plot, points, pts, x)
    return plot


def _flag_summary(flagged: list[TrendPoint]) -> str:
    parts = sum(1 for p in flagged if p.part)
    changes = len(flagged) - parts
    out = []
    if parts:
        out.append(f"{parts} parts of split slices")
    if changes:
        out.append(f"{changes} with a gain change inside within the tolerance")
    return "; ".join(out)


def gain_trend_plot(points: list[TrendPoint]) -> PlotData:
    plot = trend_plot(points, "gain_rel", "gain / reference")
    plot.title, plot.y_label = "gain relative to the reference", "gain / reference"
    pts = expand(points)
    ref = next((p for p in pts if p.reference), None)
    good = [p for p in pts if p.good]
    if ref is not None:
        plot.notes.append(
            f"reference: slice {ref.index} ({ref.gain:.2f} +- {ref.gain_err:.2f} ADC/keV)"
        )
    elif good:
        p = good[0]
        plot.notes.append(
            f"reference: {p.reference_gain:.2f} +- {p.reference_gain_err:.2f} ADC/keV (given)"
        )
    plot.notes.append("error bars include the reference's own error")
    return plot


def resolution_trend_plot(points: list[TrendPoint]) -> PlotData:
    """FWHM/E as fitted (in-slice drift and gain-map spread included) and intrinsic (both
    removed), both against time."""
    plot = trend_plot(points, "resolution", "fitted (drift and map spread included)", 100.0)
    every = expand(points)
    x, _, _ = _times(every)
    good = np.array([p.good for p in every], dtype=bool)
    pts = [p for p in every if p.good]
    intr = np.array([p.resolution_intrinsic for p in pts], dtype=float) * 100.0
    err = np.array([p.resolution_intrinsic_err for p in pts], dtype=float) * 100.0
    name = "intrinsic (in-slice drift and map spread removed)"
    plot.series.append(Series(name, x[good], intr, "points", err, color="C2", marker="_"))
    plot.title, plot.y_label = "energy resolution", "FWHM / E at 5.9 keV (%)"
    if pts:
        drift = max(p.drift_rms for p in pts)
        spread = max(p.map_rms for p in pts)
        plot.footer.append(
            "intrinsic = fitted with the gain spread inside the slice removed in quadrature: "
            f"in-slice drift (up to {100 * drift:.1f} % RMS) and gain-map spread "
            f"({100 * spread:.1f} % RMS); FWHM = {FWHM_PER_SIGMA:.3f} x RMS"
        )
    return plot


THRESHOLD_EXPLAINED = (
    "DAQ threshold / gain: the DAQ's cut on the energy sum (energy_min) divided by the fitted "
    "gain: where the DAQ stops recording X-rays.",
    "spectrum turn-on: the energy where the measured spectrum reaches half of its height. When "
    "the DAQ threshold lies below the escape peak's low tail there is nothing below that tail: "
    "the turn-on then marks the low end of the 55Fe spectrum, not the threshold, and reads "
    "higher (hollow). It measures the threshold only when the threshold cuts into the spectrum.",
)
TURN_ON_MATCH_KEV = 0.3  # a turn-on this close to DAQ threshold / gain measures the threshold


def threshold_trend_plot(points: list[TrendPoint], threshold_adc: float | None) -> PlotData:
    """Both threshold estimates against time, and what each one means."""
    pts = expand(points)
    x, x_time, x_label = _times(pts)
    plot = PlotData("trend", "energy threshold", x_label, "threshold (keV)", x_time=x_time)
    good = np.array([p.good for p in pts], dtype=bool)
    daq = np.array([p.threshold_kev_adc for p in pts], dtype=float)
    turn = np.array([p.threshold_kev_spectrum for p in pts], dtype=float)
    seen = good & np.isfinite(turn)
    turn_err = np.array([p.threshold_kev_spectrum_err for p in pts], dtype=float)
    with np.errstate(invalid="ignore"):
        above = turn - daq > TURN_ON_MATCH_KEV
    if threshold_adc is not None:
        plot.series.append(
            Series("DAQ threshold / gain", x[good], daq[good], "points", color="C3", marker="v")
        )
        plot.notes.append(f"DAQ threshold on the energy sum: {threshold_adc:.0f} ADC")
    else:
        plot.notes.append("DAQ threshold unknown: no 'DAQ threshold / gain'")
    groups = (
        (
            ("spectrum turn-on: at the DAQ threshold", seen & ~above, False),
            ("spectrum turn-on: end of the 55Fe spectrum, above the threshold", seen & above, True),
        )
        if threshold_adc is not None
        else (("spectrum turn-on", seen, False),)
    )
    for label, sel, hollow in groups:
        if sel.any():
            plot.series.append(
                Series(
                    label,
                    x[sel],
                    turn[sel],
                    "points",
                    turn_err[sel],
                    color="C0",
                    marker="o",
                    hollow=hollow,
                )
            )
    _marked(plot, points, pts, x)
    plot.footer = list(THRESHOLD_EXPLAINED) + plot.footer
    return plot
