"""Is a fitted 55Fe spectrum one line? Symptoms of a spectrum the line model cannot explain.

A slice whose gain stepped (or a sum of regions of different gain) holds two copies of the
55Fe spectrum; the one-line fit then locks onto one of them or averages them, and its chi2 and
escape/K-alpha ratio give it away (issue 15: +23 %, chi2/ndf 3.6, ratio 0.48 against the prior
0.13 +- 0.04). Three symptoms, each with its figure in the reason:

- the escape/K-alpha ratio off its prior (argon: ``(ratio - 0.13) / 0.04 > max_escape_pull``;
  a second K-alpha below the first reads as a huge escape peak);
- a chi2 the line model cannot explain (Poisson deviance with a p-value below
  ``max_chi2_p`` *and* chi2/ndf above ``max_chi2_ndf``, so that the small shape imperfections of
  a large clean spectrum do not count);
- a double peak: two copies of the line model (two gains, one resolution) describe the spectrum
  better than one by more than ``min_double_delta`` in -2 ln L, with both copies holding at least
  ``min_double_fraction`` of the counts and more than ``min_double_separation`` line sigmas apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.stats import chi2 as chi2_dist

from agetdaq.readout.analysis.calibration.fitresult import FitResult
from agetdaq.readout.analysis.calibration.model import (
    FWHM_PER_SIGMA,
    IX,
    deviance_residuals,
    expected_counts,
)

_NAN = float("nan")


@dataclass(frozen=True)
class LineCheckConfig:
    """Thresholds of the one-line checks (TOML ``[calibration.linecheck]``) and of the in-slice
    change test and split (see trend.py / judge.py)."""

    max_escape_pull: float = 4.0  # (escape ratio - prior) / prior sigma
    max_chi2_p: float = 1e-6  # deviance p-value below this ...
    max_chi2_ndf: float = 1.6  # ... and chi2/ndf above this: the model cannot explain it
    double_peak: bool = True  # run the two-line test
    min_double_delta: float = 30.0  # -2 ln L gained by a second line
    min_double_fraction: float = 0.1  # smaller share of the two lines
    min_double_separation: float = 1.0  # line sigmas between the two lines
    change_p: float = 1e-3  # in-slice rank test: "gain not constant" below this p-value
    change_tolerance: float = 0.01  # |relative gain change| tolerated inside a good slice
    min_part_xrays: int = 200  # smallest part of a split slice that is fitted
    max_split_depth: int = 6  # a slice is split at most this many times over (<= 64 parts)
    cut_guard: float = 16.0  # X-rays either side of a cut left out: this / separation^2

    def __post_init__(self) -> None:
        if self.min_part_xrays < 1 or self.max_split_depth < 0 or self.cut_guard < 0:
            raise ValueError("min_part_xrays must be >= 1, max_split_depth >= 0 and cut_guard >= 0")
        if not 0.0 < self.change_p < 1.0:
            raise ValueError(f"change_p must be in (0, 1), got {self.change_p}")


@dataclass(frozen=True)
class TwoLines:
    """The two-line fit: gains (ADC/keV) of the lower and upper copy, the upper copy's share of
    the K-alpha counts, the -2 ln L gained over one line, and the separation in line sigmas."""

    gain_low: float
    gain_high: float
    fraction_high: float
    delta: float
    separation: float

    @property
    def ratio(self) -> float:
        return self.gain_high / self.gain_low - 1.0


def escape_ratio(fit: FitResult) -> float:
    """Fitted n_escape / n_peak (NaN without parameters)."""
    n_peak = fit.params.get("n_peak", _NAN)
    return fit.params.get("n_escape", _NAN) / n_peak if n_peak and n_peak > 0 else _NAN


def bin_deviance(fit: FitResult) -> float:
    """Poisson deviance of the fit over its bins (without the escape prior's term)."""
    if not fit.params or fit.data.size == 0:
        return _NAN
    r, _ = deviance_residuals(fit.data, fit.model_counts())
    return float(np.sum(r * r))


def chi2_p_value(fit: FitResult) -> float:
    """p-value of the fit's deviance for its ndf (NaN without a fit)."""
    if not fit.params or fit.ndf < 1 or not math.isfinite(fit.chi2_ndf):
        return _NAN
    return float(chi2_dist.sf(fit.chi2_ndf * fit.ndf, fit.ndf))


def two_line_fit(fit: FitResult) -> TwoLines | None:
    """Fit two copies of the line model (own gain and K-alpha count, shared resolution, escape
    ratio, background and threshold efficiency of ``fit``) to the fit's bins; None when it
    cannot be done."""
    if not fit.params or fit.data.size < 8:
        return None
    edges, data = fit.edges, fit.data
    p0 = fit.param_array
    g, res, n_peak = p0[IX["gain"]], p0[IX["resolution"]], p0[IX["n_peak"]]
    ratio = p0[IX["n_escape"]] / max(n_peak, 1e-9)
    sigma_rel = res / FWHM_PER_SIGMA
    line_only = p0.copy()
    line_only[IX["n_bkg"]] = 0.0
    bkg_p = p0.copy()
    bkg_p[IX["n_peak"]] = bkg_p[IX["n_escape"]] = 0.0
    background = expected_counts(edges, bkg_p, fit.lines, fit.line_shape)

    def model(x: np.ndarray) -> np.ndarray:
        g1, g2, frac, n, r = x
        out = background.copy()
        for gain, share in ((g1, 1.0 - frac), (g2, frac)):
            p = line_only.copy()
            p[IX["gain"]], p[IX["resolution"]] = gain, r
            p[IX["n_peak"]] = n * share
            p[IX["n_escape"]] = ratio * n * share
            out += expected_counts(edges, p, fit.lines, fit.line_shape)
        return out

    def residuals(x: np.ndarray) -> np.ndarray:
        return deviance_residuals(data, model(x))[0]

    lo = np.array([0.5 * g, 0.5 * g, 0.0, 0.0, 0.03])
    hi = np.array([2.0 * g, 2.0 * g, 1.0, 10.0 * max(n_peak, 10.0), 1.2])
    best = None
    for d in (1.0, 2.5):  # starts: half a sigma and 1.25 sigma either side
        x0 = np.array([g * (1 - 0.5 * d * sigma_rel), g * (1 + 0.5 * d * sigma_rel), 0.5,
                       n_peak, max(0.6 * res, 0.035)])  # fmt: skip
        x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
        try:
            sol = least_squares(residuals, x0, bounds=(lo, hi), max_nfev=200, x_scale="jac")
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        return None
    g1, g2, frac, _, r = best.x
    if g1 > g2:
        g1, g2, frac = g2, g1, 1.0 - frac
    delta = bin_deviance(fit) - 2.0 * best.cost
    separation = (g2 - g1) / (0.5 * (g1 + g2) * max(r, 1e-9) / FWHM_PER_SIGMA)
    return TwoLines(float(g1), float(g2), float(frac), float(delta), float(separation))


def symptoms(fit: FitResult, config: LineCheckConfig | None = None) -> list[str]:
    """Why the fitted spectrum is not one line (empty list: it is, or there is no fit)."""
    cfg = config or LineCheckConfig()
    if not fit.params:
        return []
    found = []
    prior = fit.lines.escape_ratio
    ratio = escape_ratio(fit)
    if prior is not None and math.isfinite(ratio):
        pull = (ratio - prior[0]) / prior[1]
        if pull > cfg.max_escape_pull:
            found.append(
                f"escape/K-alpha ratio {ratio:.2f} against {prior[0]:.2f} +- {prior[1]:.2f}"
            )
    p = chi2_p_value(fit)
    if math.isfinite(p) and p < cfg.max_chi2_p and fit.chi2_ndf > cfg.max_chi2_ndf:
        found.append(f"chi2/ndf {fit.chi2_ndf:.2f} (p = {p:.0e}) not explained by one line")
    if cfg.double_peak:
        two = two_line_fit(fit)
        if (
            two is not None
            and two.delta > cfg.min_double_delta
            and min(two.fraction_high, 1.0 - two.fraction_high) >= cfg.min_double_fraction
            and two.separation > cfg.min_double_separation
        ):
            e = fit.lines.ref_energy_kev
            found.append(
                f"double peak at {two.gain_low * e:.0f} and {two.gain_high * e:.0f} ADC "
                f"({100 * two.ratio:+.0f} %, -2 ln L {two.delta:.0f} better than one line)"
            )
    return found
