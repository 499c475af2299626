"""Poisson maximum-likelihood fit of the 55Fe model to a Spectrum.

Lines and background are fitted above the turn-on, the threshold edge is then fitted on fine bins
(prefit.fit_edge), and the lines again from just above the edge with its efficiency held fixed
(see ``fit_spectrum``). A failed fit is a FitResult with ``ok=False`` and a ``reason``, never a
bare number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from agetdaq.readout.analysis.calibration.fitresult import FitResult, valley_to_peak
from agetdaq.readout.analysis.calibration.model import (
    DEFAULT_LINE_SHAPE,
    FWHM_PER_SIGMA,
    IX,
    PARAM_NAMES,
    SourceLines,
    check_line_shape,
    deviance_residuals,
    expected_counts,
    lines_for_gas,
    model_and_jacobian,
)
from agetdaq.readout.analysis.calibration.prefit import (
    Edge,
    StartValues,
    find_start,
    fit_edge,
    window_hi,
)
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.config import build as config_from_dict
from agetdaq.readout.config import load_table

__all__ = ["FitConfig", "FitResult", "fit_spectrum", "valley_to_peak"]

_NAN = float("nan")
_EDGE_PARAMS = ("threshold_adc", "threshold_width_adc")


@dataclass(frozen=True)
class FitConfig:
    """How to fit one spectrum. The window is automatic unless ``window_adc`` is given."""

    gas: str = "Ar"  # line set: "Ar" or "Xe" (escape lines differ)
    custom_lines: SourceLines | None = None  # overrides ``gas`` when given
    line_shape: str = DEFAULT_LINE_SHAPE  # "gamma" (avalanche charge, skewed) or "gauss"
    min_counts: int = 100  # fewer counts in the spectrum: fail without fitting
    free_offset: bool = False  # fit ADC = gain * E + offset instead of ADC = gain * E
    bins_per_sigma: float = 4.0  # fit bin width ~ K-alpha sigma / bins_per_sigma
    max_fit_bins: int = 150
    window_adc: tuple[float, float] | None = None  # (lo, hi) ADC
    resolution_limits: tuple[float, float] = (0.03, 1.2)  # FWHM/E bounds at 5.9 keV
    bkg_slope_limits_kev: tuple[float, float] = (0.5, 100.0)
    min_significance: float = 5.0  # K-alpha counts / their error
    max_valley_to_peak: float = 0.5  # model minimum in [0.5, 1] x peak / model at the peak
    edge_max_width: float = 0.05  # largest efficiency-edge sigma, as a fraction of the threshold
    max_chi2_ndf: float = 5.0
    max_nfev: int = 200
    # constrain n_escape / n_peak by the line set's prior (argon: 0.13 +- 0.04); without it the
    # escape and the background are degenerate once the threshold nears the escape peak
    escape_prior: bool = True

    def __post_init__(self) -> None:
        check_line_shape(self.line_shape)

    @property
    def lines(self) -> SourceLines:
        return self.custom_lines or lines_for_gas(self.gas)

    @classmethod
    def from_toml(
        cls, source: str | Path | dict[str, Any], table: str = "calibration.fit"
    ) -> FitConfig:
        cfg = config_from_dict(cls, load_table(source, table), table)
        cfg.lines  # noqa: B018  (an unknown gas raises here)
        return cfg


def _fit_bins(spectrum: Spectrum, lo: float, hi: float, width: float) -> tuple:
    """Sum the spectrum's bins in [lo, hi) into groups of ~``width`` ADC."""
    bw = spectrum.bin_width
    factor = max(1, int(width // bw))
    i0 = max(0, int(np.floor((lo - spectrum.adc_min) / bw)))
    i1 = min(spectrum.n_bins, int(np.ceil((hi - spectrum.adc_min) / bw)))
    n = (i1 - i0) // factor
    counts = spectrum.counts[i0 : i0 + n * factor].reshape(n, factor).sum(axis=1)
    return spectrum.adc_min + bw * (i0 + factor * np.arange(n + 1)), counts.astype(float)


def fit_spectrum(spectrum: Spectrum, config: FitConfig | None = None) -> FitResult:
    """Fit the 55Fe model to ``spectrum`` by binned Poisson likelihood.

    1. lines + background above the turn-on, efficiency 1; 2. the threshold edge on fine bins
    with fit 1 as the plateau (prefit.fit_edge); 3. lines + background again from just above
    the edge with its efficiency held fixed and the window's upper end set from the fitted
    width. With ``config.window_adc`` only one fit in that window, efficiency 1.
    """
    config = config or FitConfig()
    lines = config.lines
    n_counts = spectrum.total
    base = {"n_counts": n_counts, "lines": lines, "line_shape": config.line_shape}
    if n_counts == 0:
        return FitResult(False, "empty spectrum", **base)
    if n_counts < config.min_counts:
        return FitResult(False, f"too few counts ({n_counts} < {config.min_counts})", **base)
    start = find_start(spectrum, lines)
    if isinstance(start, str):
        return FitResult(False, start, **base)
    p = start.as_array()
    p[IX["threshold_adc"]], p[IX["threshold_width_adc"]] = -np.inf, 1.0
    if config.window_adc is not None:
        return _fit_lines(spectrum, config.window_adc, p, start, config, None)
    first = _fit_lines(spectrum, (start.window_lo, start.window_hi), p, start, config, None, 1e-4)
    if not first.params:
        return first
    p = first.param_array

    def plateau(edges: np.ndarray) -> np.ndarray:
        return expected_counts(edges, p, lines, config.line_shape)

    edge = fit_edge(spectrum, start, plateau, config.edge_max_width)
    lo, hi = start.window_lo, window_hi(first.peak_adc, first.resolution)
    if edge.found:
        p = p.copy()
        p[IX["threshold_adc"]], p[IX["threshold_width_adc"]] = edge.threshold_adc, edge.width_adc
        lo = min(edge.threshold_adc + edge.width_adc, lo)
    result = _fit_lines(spectrum, (lo, hi), p, start, config, edge if edge.found else None)
    result.edge = edge
    return result


def _bounds(start: StartValues, config: FitConfig) -> tuple[dict, dict]:
    n = max(float(start.total), 1.0) * 10.0
    pk, g0 = start.peak_adc, start.gain
    (r_lo, r_hi), (s_lo, s_hi) = config.resolution_limits, config.bkg_slope_limits_kev
    lower = dict(zip(PARAM_NAMES, (0.5 * g0, r_lo, 0.0, 0.0, 0.0, s_lo, -np.inf, 0.0, -0.5 * pk)))
    upper = dict(zip(PARAM_NAMES, (2.0 * g0, r_hi, n, n, n, s_hi, np.inf, np.inf, 0.5 * pk)))
    return lower, upper


def _fit_lines(
    spectrum: Spectrum,
    window: tuple[float, float],
    p0: np.ndarray,
    start: StartValues,
    config: FitConfig,
    edge: Edge | None,
    tol: float = 1e-6,
) -> FitResult:
    """Fit lines and background in ``window`` with the efficiency parameters of ``p0`` fixed;
    ``tol`` is the relative tolerance of least_squares (cost, step and gradient)."""
    lines = config.lines
    lo, hi = max(window[0], spectrum.adc_min), min(window[1], spectrum.adc_max)
    sigma0 = start.resolution / FWHM_PER_SIGMA * start.peak_adc
    width = max(sigma0 / config.bins_per_sigma, (hi - lo) / config.max_fit_bins)
    edges, data = _fit_bins(spectrum, lo, hi, width)
    common = {
        "n_counts": spectrum.total,
        "lines": lines,
        "line_shape": config.line_shape,
        "window_adc": (lo, hi),
        "edge": edge,
    }
    if data.size < len(PARAM_NAMES) + 3 or data.sum() < 0.5 * config.min_counts:
        reason = f"too few bins or counts in the fit window [{lo:.0f}, {hi:.0f}) ADC"
        return FitResult(False, reason, **common)
    lower, upper = _bounds(start, config)
    fixed = _EDGE_PARAMS + (() if config.free_offset else ("offset_adc",))
    free = [i for i, name in enumerate(PARAM_NAMES) if name not in fixed]
    lb = np.array([lower[PARAM_NAMES[i]] for i in free])
    ub = np.array([upper[PARAM_NAMES[i]] for i in free])
    p = np.array(p0, dtype=float)
    x0 = np.clip(p[free], lb + 1e-6 * (ub - lb), ub - 1e-6 * (ub - lb))
    prior = lines.escape_ratio if config.escape_prior else None
    cache: dict[str, np.ndarray] = {}

    def evaluate(x: np.ndarray) -> None:
        if "x" not in cache or not np.array_equal(cache["x"], x):
            p[free] = x
            m, jac = model_and_jacobian(edges, p, lines, shape=config.line_shape)
            r, slope = deviance_residuals(data, m)
            j = slope[:, None] * jac[:, free]
            if prior is not None:
                r_p, j_p = _escape_prior(p, prior)
                r, j = np.append(r, r_p), np.vstack((j, j_p[free]))
            cache.update(x=x.copy(), r=r, j=j)

    def residuals(x: np.ndarray) -> np.ndarray:
        evaluate(x)
        return cache["r"]

    def jacobian(x: np.ndarray) -> np.ndarray:
        evaluate(x)
        return cache["j"]

    try:
        sol = least_squares(
            residuals,
            x0,
            jac=jacobian,
            bounds=(lb, ub),
            x_scale="jac",
            max_nfev=config.max_nfev,
            ftol=tol,
            xtol=tol,
            gtol=tol,
        )
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        return FitResult(False, f"fit raised {type(exc).__name__}: {exc}", **common)
    p[free] = sol.x
    cov = _covariance(sol.jac, sol.x, lb, ub, free)
    ndf = int(data.size - len(free)) + (prior is not None)  # the prior is one more measurement
    result = FitResult(
        ok=False,
        params={name: float(v) for name, v in zip(PARAM_NAMES, p)},
        errors=_errors(cov, edge),
        covariance=cov,
        fixed=fixed,
        chi2_ndf=float(2.0 * sol.cost / max(ndf, 1)),
        ndf=ndf,
        nfev=int(sol.nfev),
        converged=bool(sol.status > 0),
        edges=edges,
        data=data,
        **common,
    )
    result.reason = _quality_problem(result, sol.status, sol.message, lower, upper, config)
    result.ok = result.reason == ""
    return result


def _escape_prior(p: np.ndarray, prior: tuple[float, float]) -> tuple[float, np.ndarray]:
    """Gaussian constraint on n_escape / n_peak: its residual and gradient (all parameters)."""
    mean, sigma = prior
    n_peak, n_esc = max(p[IX["n_peak"]], 1.0), p[IX["n_escape"]]
    grad = np.zeros(len(PARAM_NAMES))
    grad[IX["n_escape"]] = 1.0 / (n_peak * sigma)
    grad[IX["n_peak"]] = -n_esc / (n_peak**2 * sigma)
    return (n_esc / n_peak - mean) / sigma, grad


def _covariance(
    jac: np.ndarray, x: np.ndarray, lb: np.ndarray, ub: np.ndarray, free: list[int]
) -> np.ndarray:
    """Covariance (all parameters, zero rows for fixed ones) from the Gauss-Newton curvature of
    the likelihood; a parameter stuck at a bound is left out of the inversion (error 0)."""
    cov = np.zeros((len(PARAM_NAMES), len(PARAM_NAMES)))
    tol = 1e-6 * np.where(np.isfinite(ub - lb), ub - lb, 1.0)
    inside = np.flatnonzero((x > lb + tol) & (x < ub - tol))
    j = jac[:, inside]
    try:
        sub = np.linalg.inv(j.T @ j)
    except np.linalg.LinAlgError:
        sub = np.full((inside.size, inside.size), np.nan)
    idx = np.array([free[c] for c in inside], dtype=int)
    cov[np.ix_(idx, idx)] = sub
    return cov


def _errors(cov: np.ndarray, edge: Edge | None) -> dict[str, float]:
    diag = np.diag(cov)
    errs = {n: float(np.sqrt(v)) if v >= 0 else _NAN for n, v in zip(PARAM_NAMES, diag)}
    if edge is not None and edge.found:
        errs["threshold_adc"], errs["threshold_width_adc"] = edge.threshold_err, edge.width_err
    return errs


def _at_bound(value: float, lo: float, hi: float) -> bool:
    tol = 1e-4 * (hi - lo)
    return value <= lo + tol or value >= hi - tol


def _quality_problem(
    res: FitResult, status: int, message: str, lower: dict, upper: dict, config: FitConfig
) -> str:
    """Empty string when the fit is good, else the first problem found."""
    if status <= 0:
        return f"fit did not converge: {message}"
    for name, what in (("gain", "peak position"), ("resolution", "resolution")):
        if _at_bound(res.params[name], lower[name], upper[name]):
            return f"{what} at its fit limit ({name} = {res.params[name]:.4g})"
    lo, hi = res.window_adc
    if not lo < res.peak_adc < hi:
        return f"peak at {res.peak_adc:.0f} ADC outside the fit window [{lo:.0f}, {hi:.0f})"
    for name in ("gain", "resolution", "n_peak"):
        if not np.isfinite(res.errors[name]) or res.errors[name] <= 0:
            return f"parameter error of {name} undefined"
    significance = res.params["n_peak"] / res.errors["n_peak"]
    if significance < config.min_significance:
        return f"K-alpha peak not significant ({significance:.1f} sigma)"
    valley = valley_to_peak(res)
    if valley > config.max_valley_to_peak:
        return f"no K-alpha peak standing out of the spectrum (valley/peak = {valley:.2f})"
    if res.chi2_ndf > config.max_chi2_ndf:
        return f"poor fit quality (chi2/ndf = {res.chi2_ndf:.2f} > {config.max_chi2_ndf})"
    return ""
