"""The 55Fe spectrum model in ADC: K-alpha + K-beta + escape line(s) + exponential background,
all seen through an error-function threshold efficiency.

Energies map to ADC as ``adc = gain * E_keV + offset_adc`` (offset fixed at 0 unless a fit frees
it). Every line shares the gain and the resolution; a line at energy E has the relative sigma
``r(E) = resolution / 2.3548 * sqrt(E_ref / E)`` where ``resolution`` is FWHM/E at the reference
line (Mn K-alpha, 5.90 keV). Its shape is either a gamma distribution of ``adc - offset`` with
mean ``gain * E`` and shape ``1 / r**2`` (the avalanche charge; skewed at poor resolution) or a
Gaussian of sigma ``r * gain * E``. Amplitudes are true counts (before the threshold
efficiency), so the K-beta share and the escape ratio read directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit
from scipy.special import gammainc, gammaln, ndtr

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # 2.3548
_TINY = 1e-12  # floor of expected counts in a bin
LINE_SHAPES = ("gamma", "gauss")
DEFAULT_LINE_SHAPE = "gamma"
_DK_REL = 1e-4  # relative step of the numerical derivative of gammainc by its shape

# parameter vector layout shared by the model and the fit
PARAM_NAMES: tuple[str, ...] = (
    "gain",  # ADC per keV
    "resolution",  # FWHM / E at the reference line
    "n_peak",  # true counts in the reference line (K-alpha)
    "n_escape",  # true counts in the escape line(s), summed
    "n_bkg",  # true counts in the background above 0 keV
    "bkg_slope_kev",  # exponential decay length of the background, keV
    "threshold_adc",  # 50 % point of the trigger efficiency, ADC
    "threshold_width_adc",  # Gaussian sigma of the efficiency edge, ADC
    "offset_adc",  # ADC at 0 keV
)
IX = {name: i for i, name in enumerate(PARAM_NAMES)}


@dataclass(frozen=True)
class Line:
    """One emission line: energy and intensity relative to the first line of its group."""

    energy_kev: float
    weight: float


@dataclass(frozen=True)
class SourceLines:
    """The 55Fe lines as seen in one gas: main group (K-alpha first) and escape group."""

    gas: str
    main: tuple[Line, ...]
    escape: tuple[Line, ...]
    # prior on n_escape / n_peak as (mean, sigma); None: the escape amplitude is left free
    escape_ratio: tuple[float, float] | None = None

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(energies, weights, is_main) of all lines; escape weights sum to 1."""
        esc_sum = sum(line.weight for line in self.escape)
        energies = [line.energy_kev for line in self.main + self.escape]
        weights = [line.weight for line in self.main]
        weights += [line.weight / esc_sum for line in self.escape]
        is_main = [True] * len(self.main) + [False] * len(self.escape)
        return np.array(energies), np.array(weights), np.array(is_main)

    @property
    def ref_energy_kev(self) -> float:
        return self.main[0].energy_kev

    @property
    def escape_energy_kev(self) -> float:
        """Energy of the strongest escape line (the one used for a linear calibration)."""
        return max(self.escape, key=lambda line: line.weight).energy_kev

    @property
    def escape_fraction_of_ref(self) -> float:
        """Escape position relative to the reference line (~0.5 in argon)."""
        return self.escape_energy_kev / self.ref_energy_kev


K_ALPHA = Line(5.90, 1.0)
K_BETA = Line(6.49, 0.14)
# Ar K escape: 8-12 % of all events (DETECTOR.md), i.e. n_escape / n_peak = 0.10-0.16 (K-beta 14 %)
ARGON = SourceLines("Ar", (K_ALPHA, K_BETA), (Line(2.94, 1.0),), escape_ratio=(0.13, 0.04))
# Xe L-alpha / L-beta escapes of Mn K-alpha; their ratio is not measured here (documented default)
XENON = SourceLines("Xe", (K_ALPHA, K_BETA), (Line(1.79, 1.0), Line(1.48, 0.5)))
GASES = {"ar": ARGON, "argon": ARGON, "xe": XENON, "xenon": XENON}


def lines_for_gas(gas: str) -> SourceLines:
    """The line set for a gas name ("Ar" or "Xe", case-insensitive)."""
    try:
        return GASES[gas.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown gas {gas!r}; expected one of Ar, Xe") from None


def bin_efficiency(edges: np.ndarray, threshold_adc: float, width_adc: float) -> np.ndarray:
    """Efficiency averaged over each bin, so the edge moves smoothly even inside one wide bin."""
    w = max(width_adc, 1e-9)
    edges = np.asarray(edges, dtype=float)
    z = (edges - threshold_adc) / w
    with np.errstate(invalid="ignore"):
        antiderivative = w * (z * ndtr(z) + np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi))
        eff = np.diff(antiderivative) / np.diff(edges)
    return np.where(z[:-1] > 30.0, 1.0, eff)  # fully efficient (also for threshold = -inf)


def check_line_shape(shape: str) -> str:
    """``shape`` if it names a line shape, else a clear ValueError."""
    if shape not in LINE_SHAPES:
        raise ValueError(f"unknown line shape {shape!r}; expected one of {', '.join(LINE_SHAPES)}")
    return shape


def _gamma_lines(
    edges: np.ndarray, p: np.ndarray, lines: SourceLines, jacobian: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-shaped lines before efficiency: counts per bin (n_bins,) and, if asked, their
    derivatives (n_bins, n_params); the derivative of gammainc by its shape is numerical."""
    energies, weights, is_main = lines.table
    gain, res, off = p[IX["gain"]], max(p[IX["resolution"]], 1e-9), p[IX["offset_adc"]]
    mean = max(gain, 1e-12) * energies
    k = (FWHM_PER_SIGMA / res) ** 2 * energies / lines.ref_energy_kev  # 1 / r(E)**2
    y = np.clip((np.asarray(edges, dtype=float)[None, :] - off) / mean[:, None], 0.0, None)
    kk = k[:, None]
    t = kk * y
    cdf = gammainc(kk, t)
    amp = np.where(is_main, p[IX["n_peak"]], p[IX["n_escape"]]) * weights
    per_line = np.diff(cdf, axis=1)
    s = amp @ per_line
    nb = s.size
    if not jacobian:
        return s, np.zeros((0, len(PARAM_NAMES)))
    with np.errstate(divide="ignore"):
        dens = np.where(t > 0.0, np.exp((kk - 1.0) * np.log(t) - t - gammaln(kk)), 0.0)
    h = _DK_REL * kk
    d_a = (gammainc(kk + h, t) - gammainc(kk - h, t)) / (2.0 * h)
    d_gain = -dens * t / gain
    d_off = -dens * kk / mean[:, None]
    d_res = (d_a + dens * y) * (-2.0 * kk / res)
    ds = np.zeros((nb, len(PARAM_NAMES)))
    ds[:, IX["gain"]] = amp @ np.diff(d_gain, axis=1)
    ds[:, IX["resolution"]] = amp @ np.diff(d_res, axis=1)
    ds[:, IX["n_peak"]] = (weights * is_main) @ per_line
    ds[:, IX["n_escape"]] = (weights * ~is_main) @ per_line
    ds[:, IX["offset_adc"]] = amp @ np.diff(d_off, axis=1)
    return s, ds


def _line_counts(
    edges: np.ndarray, p: np.ndarray, lines: SourceLines, shape: str = DEFAULT_LINE_SHAPE
) -> np.ndarray:
    """Binned counts (before efficiency) of the main and escape groups: shape (2, n_bins)."""
    energies, weights, is_main = lines.table
    gain = p[IX["gain"]]
    mu = gain * energies + p[IX["offset_adc"]]
    if check_line_shape(shape) == "gamma":
        r = (
            max(p[IX["resolution"]], 1e-9)
            / FWHM_PER_SIGMA
            * np.sqrt(lines.ref_energy_kev / energies)
        )
        k = 1.0 / r**2
        scale = gain * energies / k
        x = np.clip((edges[None, :] - p[IX["offset_adc"]]) / scale[:, None], 0.0, None)
        per_line = np.diff(gammainc(k[:, None], x), axis=1)
    else:
        k = p[IX["resolution"]] / FWHM_PER_SIGMA * np.sqrt(lines.ref_energy_kev)
        sigma = np.maximum(gain * k * np.sqrt(energies), 1e-9)
        per_line = np.diff(ndtr((edges[None, :] - mu[:, None]) / sigma[:, None]), axis=1)
    per_line *= weights[:, None]
    return np.stack(
        (
            p[IX["n_peak"]] * per_line[is_main].sum(axis=0),
            p[IX["n_escape"]] * per_line[~is_main].sum(axis=0),
        )
    )


def component_counts(
    edges: np.ndarray, p: np.ndarray, lines: SourceLines, shape: str = DEFAULT_LINE_SHAPE
) -> dict[str, np.ndarray]:
    """Expected counts per bin of each component (after efficiency) for bin ``edges`` in ADC.

    ``n_peak`` is the K-alpha count (K-beta adds its weight on top); ``n_escape`` is the total of
    the escape group.
    """
    edges = np.asarray(edges, dtype=float)
    eff = bin_efficiency(edges, p[IX["threshold_adc"]], p[IX["threshold_width_adc"]])
    main, escape = _line_counts(edges, p, lines, shape)
    e_kev = np.clip((edges - p[IX["offset_adc"]]) / p[IX["gain"]], 0.0, None)
    slope = max(p[IX["bkg_slope_kev"]], 1e-9)
    bkg = p[IX["n_bkg"]] * -np.diff(np.exp(-e_kev / slope))
    return {"peak": main * eff, "escape": escape * eff, "background": bkg * eff}


def expected_counts_reference(
    edges: np.ndarray, p: np.ndarray, lines: SourceLines, shape: str = DEFAULT_LINE_SHAPE
) -> np.ndarray:
    """Expected counts per bin of the full model (plain numpy; reference for the kernel)."""
    parts = component_counts(edges, p, lines, shape)
    return parts["peak"] + parts["escape"] + parts["background"]


def expected_counts(
    edges: np.ndarray, p: np.ndarray, lines: SourceLines, shape: str = DEFAULT_LINE_SHAPE
) -> np.ndarray:
    """Expected counts per bin of the full model for bin ``edges`` in ADC."""
    return model_and_jacobian(edges, p, lines, jacobian=False, shape=shape)[0]


def model_and_jacobian(
    edges: np.ndarray,
    p: np.ndarray,
    lines: SourceLines,
    jacobian: bool = True,
    shape: str = DEFAULT_LINE_SHAPE,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected counts per bin and, if asked, their derivatives (n_bins, n_params) by parameter.

    Gaussian lines are computed in the kernel; gamma lines (scipy's gammainc) are computed here
    and handed to the kernel, which adds background and efficiency either way."""
    energies, weights, is_main = lines.table
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    p = np.ascontiguousarray(p, dtype=np.float64)
    gauss = check_line_shape(shape) == "gauss"
    if gauss:
        line_s, line_ds = np.zeros(edges.size - 1), np.zeros((0, len(PARAM_NAMES)))
    else:
        line_s, line_ds = _gamma_lines(edges, p, lines, jacobian)
    return _model_kernel(
        edges,
        p,
        energies,
        weights,
        is_main,
        float(lines.ref_energy_kev),
        jacobian,
        gauss,
        line_s,
        np.ascontiguousarray(line_ds),
    )


_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, nogil=True)
def _phi_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


@njit(cache=True, nogil=True)
def _phi_pdf(z: float) -> float:
    return _INV_SQRT_2PI * math.exp(-0.5 * z * z)


@njit(cache=True, nogil=True)
def _model_kernel(edges, p, energies, weights, is_main, e_ref, jacobian, gauss, line_s, line_ds):
    """Binned model and analytic Jacobian; parameter order as PARAM_NAMES. With ``gauss`` false
    the lines are not computed here but taken from ``line_s`` / ``line_ds`` (before efficiency)."""
    nb = edges.size - 1
    gain, res, n_pk, n_esc, n_bkg, lam, thr, tw, off = p
    tw = max(tw, 1e-9)
    lam = max(lam, 1e-9)
    k = res / 2.3548200450309493 * math.sqrt(e_ref)
    m = np.zeros(nb)
    jac = np.zeros((nb if jacobian else 0, 9))
    s = np.zeros(nb)  # model before efficiency
    ds = np.zeros((nb if jacobian else 0, 9))
    if not gauss:
        s[:] = line_s
        if jacobian:
            ds[:, :] = line_ds
    for li in range(energies.size if gauss else 0):
        e = energies[li]
        mu = gain * e + off
        sig = max(gain * k * math.sqrt(e), 1e-9)
        amp = (n_pk if is_main[li] else n_esc) * weights[li]
        za = (edges[0] - mu) / sig
        ca, pa = _phi_cdf(za), _phi_pdf(za)
        for i in range(nb):
            zb = (edges[i + 1] - mu) / sig
            cb, pb = _phi_cdf(zb), _phi_pdf(zb)
            s[i] += amp * (cb - ca)
            if jacobian:
                d_mu = -(pb - pa) / sig
                d_sig = -(zb * pb - za * pa) / sig
                ds[i, 0] += amp * (d_mu * e + d_sig * sig / gain)
                ds[i, 1] += amp * d_sig * sig / max(res, 1e-12)
                ds[i, 2 if is_main[li] else 3] += weights[li] * (cb - ca)
                ds[i, 8] += amp * d_mu
            za, ca, pa = zb, cb, pb
    for i in range(nb):
        ea = max((edges[i] - off) / gain, 0.0)
        eb = max((edges[i + 1] - off) / gain, 0.0)
        xa, xb = math.exp(-ea / lam), math.exp(-eb / lam)
        s[i] += n_bkg * (xa - xb)
        if jacobian:
            ds[i, 4] = xa - xb
            ds[i, 5] = n_bkg * (ea * xa - eb * xb) / (lam * lam)
            ds[i, 0] += n_bkg * (ea * xa - eb * xb) / (lam * gain)
            ia = 1.0 if ea > 0.0 else 0.0
            ib = 1.0 if eb > 0.0 else 0.0
            ds[i, 8] += n_bkg * (ia * xa - ib * xb) / (lam * gain)
    # efficiency averaged over each bin: G(x) = w (z Phi(z) + phi(z)), dG/dt = -Phi, dG/dw = phi
    za = (edges[0] - thr) / tw
    ca, pa = _phi_cdf(za), _phi_pdf(za)
    for i in range(nb):
        zb = (edges[i + 1] - thr) / tw
        cb, pb = _phi_cdf(zb), _phi_pdf(zb)
        width = edges[i + 1] - edges[i]
        if za > 30.0:  # fully efficient (also for threshold = -inf)
            eff = 1.0
        else:
            eff = tw * ((zb * cb + pb) - (za * ca + pa)) / width
        m[i] = s[i] * eff
        if jacobian:
            for j in range(9):
                jac[i, j] = ds[i, j] * eff
            jac[i, 6] = -s[i] * (cb - ca) / width
            jac[i, 7] = s[i] * (pb - pa) / width
        za, ca, pa = zb, cb, pb
    return m, jac


def deviance_residuals_reference(data: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, ...]:
    """Poisson deviance residuals r (sum of r**2 = -2 ln(L / L_saturated)) and dr/dmodel."""
    m = np.maximum(model, _TINY)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(data > 0, data * np.log(np.maximum(data, _TINY) / m), 0.0)
    r = np.sign(data - m) * np.sqrt(np.maximum(2.0 * (m - data + log_term), 0.0))
    small = np.abs(r) < 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(small, -1.0 / np.sqrt(m), (1.0 - data / m) / np.where(small, 1.0, r))
    slope[model < _TINY] = 0.0
    return r, slope


def deviance_residuals(data: np.ndarray, model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poisson deviance residuals and their derivatives by the model (numba kernel)."""
    return _deviance_kernel(
        np.ascontiguousarray(data, dtype=np.float64), np.ascontiguousarray(model, dtype=np.float64)
    )


@njit(cache=True, nogil=True)
def _deviance_kernel(data, model):
    n = data.size
    r = np.empty(n)
    slope = np.empty(n)
    for i in range(n):
        d = data[i]
        m = max(model[i], _TINY)
        dev = 2.0 * (m - d + (d * math.log(d / m) if d > 0.0 else 0.0))
        ri = math.sqrt(max(dev, 0.0))
        if d < m:
            ri = -ri
        elif d == m:
            ri = 0.0
        r[i] = ri
        if model[i] < _TINY:
            slope[i] = 0.0
        elif abs(ri) < 1e-6:
            slope[i] = -1.0 / math.sqrt(m)
        else:
            slope[i] = (1.0 - d / m) / ri
    return r, slope
