"""What is read from a spectrum before the main fit: starting values, the automatic window and
the threshold edge (an error-function efficiency scanned on fine bins)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.special import ndtr

from agetdaq.readout.analysis.calibration.model import FWHM_PER_SIGMA, PARAM_NAMES, SourceLines
from agetdaq.readout.analysis.calibration.spectrum import Spectrum

_TINY = 1e-12
_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_NEWTON_STEPS = 6
_MAX_TILT = 2.0  # |k|: the plateau may change by up to e**2 across the edge region
_EDGE_ZONE = 0.05  # scale of the threshold-edge fit region, as a fraction of the peak ADC

_SMOOTH_BINS = 1.5  # Gaussian smoothing (coarse bins) for the starting-value search
_COARSE_BINS = 80  # coarse bins over the populated range
_MIN_PEAK_SIGMA = 5.0  # prominence of a candidate peak / noise of the smoothed spectrum


@dataclass
class StartValues:
    """Starting values and automatic fit window, found from the spectrum itself."""

    peak_adc: float
    resolution: float
    n_peak: float
    n_escape: float
    n_bkg: float
    bkg_slope_kev: float
    threshold_adc: float
    threshold_width_adc: float
    window_lo: float
    window_hi: float
    total: int
    coarse_bin_adc: float
    ref_energy_kev: float

    @property
    def gain(self) -> float:
        return self.peak_adc / self.ref_energy_kev

    def as_array(self) -> np.ndarray:
        values = {
            "gain": self.gain,
            "resolution": self.resolution,
            "n_peak": self.n_peak,
            "n_escape": self.n_escape,
            "n_bkg": self.n_bkg,
            "bkg_slope_kev": self.bkg_slope_kev,
            "threshold_adc": self.threshold_adc,
            "threshold_width_adc": self.threshold_width_adc,
            "offset_adc": 0.0,
        }
        return np.array([values[n] for n in PARAM_NAMES], dtype=float)


def _half_crossing_left(s: np.ndarray, i: int, level: float) -> float:
    """Fractional index where ``s`` falls below ``level`` walking left from ``i``."""
    j = i
    while j > 0 and s[j] > level:
        j -= 1
    if s[j] > level or s[j + 1] == s[j]:
        return float(j)
    return j + (level - s[j]) / (s[j + 1] - s[j])


def find_start(spectrum: Spectrum, lines: SourceLines) -> StartValues | str:
    """Starting values from a smoothed coarse copy of the spectrum, or the reason none exist.

    K-alpha is the highest-ADC peak among the significant peaks with at least 30 % of the largest
    prominence (this skips the K-beta shoulder, the escape peak and a threshold bump); the turn-on
    is where the smoothed spectrum first reaches half of its level just above the lowest counts;
    the escape is looked for at ``E_escape / E_ref`` of the peak.
    """
    counts = spectrum.counts
    cum = np.cumsum(counts)
    total = int(cum[-1])
    i_hi = int(np.searchsorted(cum, 0.995 * total)) + 1
    factor = max(1, i_hi // _COARSE_BINS)
    n = counts.size // factor
    coarse = counts[: n * factor].reshape(n, factor).sum(axis=1).astype(float)
    cbw = spectrum.bin_width * factor
    centers = spectrum.adc_min + cbw * (np.arange(n) + 0.5)
    s = gaussian_filter1d(coarse, _SMOOTH_BINS, mode="constant")
    noise = np.sqrt(np.maximum(s, 1.0) / (2.0 * np.sqrt(np.pi) * _SMOOTH_BINS))
    peaks, props = find_peaks(s, prominence=0.0)
    prom = props["prominences"]
    keep = prom >= _MIN_PEAK_SIGMA * noise[peaks]
    if not np.any(keep):
        return "no significant peak found"
    peaks, prom = peaks[keep], prom[keep]
    ip = int(peaks[prom >= 0.3 * prom.max()].max())
    shift = 0.0
    if 0 < ip < n - 1:
        denom = s[ip - 1] - 2 * s[ip] + s[ip + 1]
        shift = 0.5 * (s[ip - 1] - s[ip + 1]) / denom if denom < 0 else 0.0
    peak = float(centers[ip] + shift * cbw)
    if peak <= 0:
        return f"peak found at a non-positive ADC ({peak:.0f})"
    hwhm = (ip - _half_crossing_left(s, ip, 0.5 * s[ip])) * cbw
    sigma = np.sqrt(max((hwhm / 1.1774) ** 2 - (_SMOOTH_BINS * cbw) ** 2, (0.5 * cbw) ** 2))
    resolution = float(np.clip(FWHM_PER_SIGMA * sigma / peak, 0.05, 1.0))
    sigma = resolution / FWHM_PER_SIGMA * peak
    # turn-on: half of the level just above the lowest populated bins
    i_low = int(np.searchsorted(np.cumsum(coarse), 0.003 * total))
    plateau = s[i_low : min(i_low + 4, ip + 1)].max()
    i_thr = int(np.argmax(s >= 0.5 * plateau))
    thr = float(centers[i_thr] - 0.5 * cbw)
    in_peak = np.abs(centers - peak) < 2.0 * sigma
    n_peak = max(float(coarse[in_peak].sum()) / 0.954 * 0.88, 1.0)
    frac = lines.escape_fraction_of_ref
    ie = int(np.clip((peak * frac - spectrum.adc_min) / cbw, 0, ip))
    sigma_e = sigma * np.sqrt(frac)
    if centers[ie] > thr:
        excess = max(s[ie] - s[ie : ip + 1].min(), 0.0)
        n_escape = max(excess * sigma_e * np.sqrt(2 * np.pi) / cbw, 0.02 * n_peak)
    else:
        n_escape = 0.1 * n_peak
    n_bkg = max(total - 1.14 * n_peak - n_escape, 0.02 * total)
    zone = max(cbw, _EDGE_ZONE * peak)
    return StartValues(
        peak_adc=peak,
        resolution=resolution,
        n_peak=n_peak,
        n_escape=n_escape,
        n_bkg=n_bkg,
        bkg_slope_kev=0.5 * lines.ref_energy_kev,
        threshold_adc=thr,
        threshold_width_adc=cbw,
        window_lo=max(spectrum.adc_min, min(thr + 2.0 * zone, 0.6 * peak)),
        window_hi=min(spectrum.adc_max, window_hi(peak, max(resolution, 0.3))),
        total=total,
        coarse_bin_adc=cbw,
        ref_energy_kev=lines.ref_energy_kev,
    )


@dataclass(frozen=True)
class Edge:
    """The threshold turn-on: 50 % point and Gaussian width of the efficiency, in ADC."""

    found: bool
    threshold_adc: float
    width_adc: float
    threshold_err: float = float("nan")
    width_err: float = float("nan")
    reason: str = ""


def _edge_bins(spectrum: Spectrum, lo: float, hi: float, width: float) -> tuple:
    bw = spectrum.bin_width
    factor = max(1, int(width // bw))
    i0 = max(0, int(np.floor((lo - spectrum.adc_min) / bw)))
    i1 = min(spectrum.n_bins, int(np.ceil((hi - spectrum.adc_min) / bw)))
    n = (i1 - i0) // factor
    counts = spectrum.counts[i0 : i0 + n * factor].reshape(n, factor).sum(axis=1)
    return spectrum.adc_min + bw * (i0 + factor * np.arange(n + 1)), counts.astype(float)


def _profile_interval(profile: np.ndarray, grid: np.ndarray) -> float:
    """Half-width of the grid region where a profiled -ln L is within 0.5 of its minimum."""
    inside = grid[profile <= profile.min() + 0.5]
    step = grid[1] - grid[0] if grid.size > 1 else 0.0
    return float(max(0.5 * (inside.max() - inside.min()), 0.5 * abs(step)))


def _tilted_nll(data: np.ndarray, base: np.ndarray, u: np.ndarray) -> np.ndarray:
    """-ln L (without constants) of ``exp(a + k u) * base`` with ``a`` and ``k`` fitted for every
    row of ``base`` (..., bins) by Newton steps (a Poisson regression with a log link)."""
    base = np.maximum(base, _TINY)
    a = np.log(data.sum() / base.sum(axis=-1))
    k = np.zeros_like(a)
    for _ in range(_NEWTON_STEPS):
        mu = np.exp(a[..., None] + k[..., None] * u) * base
        r = mu - data
        g_a, g_k = r.sum(axis=-1), (r * u).sum(axis=-1)
        h_aa, h_ak, h_kk = mu.sum(axis=-1), (mu * u).sum(axis=-1), (mu * u * u).sum(axis=-1)
        det = np.maximum(h_aa * h_kk - h_ak * h_ak, _TINY)
        a -= (h_kk * g_a - h_ak * g_k) / det
        k = np.clip(k - (h_aa * g_k - h_ak * g_a) / det, -_MAX_TILT, _MAX_TILT)
    mu = np.exp(a[..., None] + k[..., None] * u) * base
    has = data > 0
    return mu.sum(axis=-1) - (np.log(np.maximum(mu[..., has], _TINY)) * data[has]).sum(axis=-1)


def fit_edge(
    spectrum: Spectrum,
    start: StartValues,
    plateau: Callable[[np.ndarray], np.ndarray],
    max_width: float = 0.05,
) -> Edge:
    """Fit ``plateau(x) * exp(a + k x) * efficiency(x; t, w)`` to fine bins around the turn-on.

    ``plateau(edges)`` gives the counts per bin the spectrum would have without a threshold (the
    main fit, extrapolated below its window); the free tilt ``exp(a + k x)`` lets the data just
    above the edge correct that extrapolation. ``t`` is the 50 % point of the efficiency, i.e.
    where the measured spectrum reaches half of its plateau. The likelihood is scanned on a
    (t, w) grid with ``a`` and ``k`` profiled out, which finds the global maximum even with a
    handful of events at the edge; errors are the profile-likelihood half-widths. The edge
    sigma ``w`` is at most ``max_width`` times the threshold: with few events a wide edge and a
    rising plateau cannot be told apart, and a noise-limited edge is narrow.
    """
    zone = edge_zone(start)
    t0 = start.threshold_adc
    lo = max(spectrum.adc_min, t0 - 2.0 * zone)
    hi = min(t0 + 3.0 * zone, 0.8 * start.peak_adc)
    fine = max(spectrum.bin_width, start.peak_adc / 400.0)
    edges, data = _edge_bins(spectrum, lo, hi, fine)
    if data.size < 6 or data.sum() < 5:
        return Edge(False, lo, 0.0, reason="too few counts at the threshold edge")
    expected = np.maximum(plateau(edges), _TINY)
    u = (0.5 * (edges[1:] + edges[:-1]) - t0) / (hi - lo)
    w_min = 0.25 * fine
    w_max = max(max_width * max(t0, start.peak_adc / 50.0), 4.0 * w_min)
    t_grid = np.arange(edges[0], edges[-1] - 0.5 * zone, fine)
    w_grid = np.geomspace(w_min, w_max, 8)
    z = (edges[None, None, :] - t_grid[:, None, None]) / w_grid[None, :, None]
    antiderivative = w_grid[None, :, None] * (z * ndtr(z) + np.exp(-0.5 * z * z) / _SQRT_2PI)
    nll = _tilted_nll(data, expected * np.diff(antiderivative, axis=-1) / np.diff(edges), u)
    no_edge = _tilted_nll(data, expected[None, :], u)[0]
    it, iw = np.unravel_index(int(np.argmin(nll)), nll.shape)
    t, w = float(t_grid[it]), float(w_grid[iw])
    if t - 2.0 * w <= edges[0] or it >= t_grid.size - 1:
        return Edge(False, t, w, reason="no threshold edge inside the spectrum")
    if no_edge - nll[it, iw] < 2.0:
        return Edge(False, t, w, reason="threshold edge not significant")
    t_err = _profile_interval(nll.min(axis=1), t_grid)
    w_err = _profile_interval(nll.min(axis=0), w_grid)
    return Edge(True, t, w, t_err, w_err)


def window_hi(peak_adc: float, resolution: float) -> float:
    """Upper end of the fit window: K-beta plus ~5 of its sigmas."""
    return peak_adc * (1.3 + 2.5 * resolution)


def edge_zone(start: StartValues) -> float:
    """Length scale (ADC) of the region searched for the threshold edge."""
    return max(start.coarse_bin_adc, _EDGE_ZONE * start.peak_adc)
