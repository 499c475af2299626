"""The spectrum figure: data with Poisson error bars, the fit's model over the whole displayed
range (solid in the fit window, dotted outside) and its components, the peaks labelled, both
threshold estimates marked; keV axis with the ADC on top."""

from __future__ import annotations

import numpy as np

from agetdaq.readout.analysis.calibration.fitresult import FitResult
from agetdaq.readout.analysis.calibration.linecheck import symptoms
from agetdaq.readout.analysis.calibration.model import component_counts
from agetdaq.readout.analysis.calibration.plotdata import Label, Mark, PlotData, Series
from agetdaq.readout.analysis.calibration.spectrum import Spectrum

DISPLAY_BINS = 120  # bins of a spectrum over its displayed range


def display_bins(spectrum: Spectrum, hi_adc: float) -> tuple[np.ndarray, np.ndarray]:
    """(edges, counts) of the spectrum from its start to ``hi_adc`` in ~DISPLAY_BINS bins."""
    factor = max(1, round((hi_adc - spectrum.adc_min) / spectrum.bin_width / DISPLAY_BINS))
    n = min(
        int(np.ceil((hi_adc - spectrum.adc_min) / spectrum.bin_width / factor)),
        spectrum.n_bins // factor,
    )
    counts = spectrum.counts[: n * factor].reshape(n, factor).sum(axis=1).astype(float)
    return spectrum.adc_min + spectrum.bin_width * factor * np.arange(n + 1), counts


def spectrum_plot(
    spectrum: Spectrum,
    fit: FitResult | None = None,
    title: str = "",
    threshold_adc: float | None = None,
    adc_label: str = "energy sum (ADC)",
) -> PlotData:
    """The spectrum with Poisson error bars and, for a fit with parameters, the model over the
    whole displayed range (solid in the fit window, dotted outside), its components, the peaks
    labelled and the two threshold estimates; keV axis with the ADC on top."""
    counts = spectrum.counts.astype(float)
    nz = np.flatnonzero(counts)
    fitted = fit is not None and bool(fit.params) and fit.gain > 0
    hi = spectrum.edges[min(nz[-1] + 1, spectrum.n_bins)] if nz.size else spectrum.adc_max
    if fitted:
        hi = max(hi * 1.02, fit.peak_adc * (1.45 + 1.2 * fit.resolution))
    hi = min(hi, spectrum.adc_max)
    edges_adc, data = display_bins(spectrum, hi)
    gain, offset = (fit.gain, fit.offset_adc) if fitted else (1.0, 0.0)
    to_x = (lambda a: (np.asarray(a, float) - offset) / gain) if fitted else np.asarray
    edges = to_x(edges_adc)
    centers = 0.5 * (edges[1:] + edges[:-1])
    plot = PlotData(
        "spectrum",
        title or "55Fe spectrum",
        "energy (keV)" if fitted else adc_label,
        f"counts / {edges_adc[1] - edges_adc[0]:.0f} ADC",
        x_range=(0.0, float(edges[-1])),
    )
    plot.series.append(
        Series("data", centers, data, "points", np.sqrt(data), color="k", marker=".")
    )
    plot.notes.append(f"{spectrum.total} X-rays")
    if fit is None:
        return plot
    if not fitted:
        plot.notes.insert(0, f"fit failed: {fit.reason}")
        return plot
    plot.secondary_x = (gain, offset, adc_label)
    _model_series(plot, fit, edges_adc, centers)
    _peak_labels(plot, fit, edges_adc, centers)
    lo, hi_w = fit.window_adc
    plot.span, plot.span_label = (float(to_x(lo)), float(to_x(hi_w))), "fit window"
    if threshold_adc is not None:
        e_thr = float(to_x(threshold_adc))
        plot.marks.append(Mark(e_thr, f"DAQ threshold / gain {e_thr:.2f} keV", "C3", "--"))
    if fit.threshold_found:
        plot.marks.append(
            Mark(fit.threshold_kev, f"spectrum turn-on {fit.threshold_kev:.2f} keV", "C2", ":")
        )
    plot.notes += _fit_notes(fit)
    return plot


def _model_series(plot: PlotData, fit: FitResult, edges_adc: np.ndarray, x: np.ndarray) -> None:
    parts = component_counts(edges_adc, fit.param_array, fit.lines, fit.line_shape)
    total = sum(parts.values())
    lo, hi = fit.window_adc
    mid = 0.5 * (edges_adc[1:] + edges_adc[:-1])
    inside = (mid >= lo) & (mid <= hi)
    plot.series.append(Series("fit", x, np.where(inside, total, np.nan), color="C3"))
    plot.series.append(
        Series(
            "model outside the fit window",
            x,
            np.where(inside, np.nan, total),
            color="C3",
            linestyle=":",
        )
    )
    names = {"peak": "Mn Kα + Kβ", "escape": f"{fit.lines.gas} escape", "background": "background"}
    for key, name in names.items():
        plot.series.append(Series(name, x, parts[key], linestyle="--"))


def _peak_labels(plot: PlotData, fit: FitResult, edges_adc: np.ndarray, x: np.ndarray) -> None:
    """A label over each line, above the data and the model there."""
    energies, _, is_main = fit.lines.table
    data = plot.series[0].y
    top = np.fmax(data + np.sqrt(data), np.nan_to_num(plot.series[1].y))
    names = ["Mn Kα", "Mn Kβ"] + [f"{fit.lines.gas} escape"] * int((~is_main).sum())
    for e, name in zip(energies, names):
        i = int(np.clip(np.searchsorted(x, e), 0, x.size - 1))
        y = float(np.nanmax(top[max(i - 3, 0) : i + 4])) if top.size else 0.0
        plot.labels.append(Label(float(e), y, f"{name}\n{e:.2f} keV"))


def _fit_notes(fit: FitResult) -> list[str]:
    notes = [
        f"K-alpha at {fit.peak_adc:.1f} +- {fit.peak_adc_err:.1f} ADC "
        f"(gain {fit.gain:.2f} ADC/keV)",
        f"FWHM/E at 5.9 keV {100 * fit.resolution:.1f} +- {100 * fit.resolution_err:.1f} %",
        f"chi2/ndf {fit.chi2_ndf:.2f} ({fit.ndf} ndf)",
    ]
    if not fit.ok:
        notes.append(f"NOT OK: {fit.reason}")
    else:
        notes += [f"NOT ONE LINE: {s}" for s in symptoms(fit)]
    return notes
