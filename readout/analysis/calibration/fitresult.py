"""FitResult: the outcome of one 55Fe spectrum fit (fit.py) and the quantities derived from it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agetdaq.readout.analysis.calibration.model import (
    DEFAULT_LINE_SHAPE,
    IX,
    PARAM_NAMES,
    SourceLines,
    expected_counts,
    lines_for_gas,
)
from agetdaq.readout.analysis.calibration.prefit import Edge

_NAN = float("nan")


@dataclass
class FitResult:
    """Outcome of one fit. Values mean something only when ``ok``; ``reason`` says why not."""

    ok: bool
    reason: str = ""
    params: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    covariance: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)
    fixed: tuple[str, ...] = ()
    chi2_ndf: float = _NAN  # Poisson deviance (Baker-Cousins chi2) / ndf
    ndf: int = 0
    n_counts: int = 0  # counts in the whole spectrum
    nfev: int = 0
    converged: bool = False
    window_adc: tuple[float, float] = (_NAN, _NAN)
    edge: Edge | None = None
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    data: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    lines: SourceLines = field(default_factory=lambda: lines_for_gas("Ar"), repr=False)
    line_shape: str = DEFAULT_LINE_SHAPE

    def _p(self, name: str) -> float:
        return float(self.params.get(name, _NAN))

    def _e(self, name: str) -> float:
        return float(self.errors.get(name, _NAN))

    @property
    def param_array(self) -> np.ndarray:
        return np.array([self._p(n) for n in PARAM_NAMES])

    @property
    def gain(self) -> float:
        """ADC per keV."""
        return self._p("gain")

    @property
    def gain_err(self) -> float:
        return self._e("gain")

    @property
    def offset_adc(self) -> float:
        return self._p("offset_adc")

    @property
    def peak_adc(self) -> float:
        """Fitted K-alpha position in ADC."""
        return self.gain * self.lines.ref_energy_kev + self.offset_adc

    @property
    def peak_adc_err(self) -> float:
        """Error of the K-alpha position, with the gain-offset correlation."""
        if self.covariance.shape != (len(PARAM_NAMES), len(PARAM_NAMES)):
            return _NAN
        v = np.zeros(len(PARAM_NAMES))
        v[IX["gain"]], v[IX["offset_adc"]] = self.lines.ref_energy_kev, 1.0
        return float(np.sqrt(max(v @ self.covariance @ v, 0.0)))

    @property
    def resolution(self) -> float:
        """FWHM / E at the reference line (5.9 keV)."""
        return self._p("resolution")

    @property
    def resolution_err(self) -> float:
        return self._e("resolution")

    @property
    def threshold_found(self) -> bool:
        """True when the spectrum shows a threshold edge that was fitted."""
        return self.edge is not None and self.edge.found

    @property
    def threshold_kev(self) -> float:
        """Energy of the efficiency edge (50 % point); NaN when no edge was found."""
        if not self.threshold_found:
            return _NAN
        return (self._p("threshold_adc") - self.offset_adc) / self.gain

    @property
    def threshold_kev_err(self) -> float:
        if not self.threshold_found:
            return _NAN
        rel = self.gain_err / self.gain
        return float(np.hypot(self._e("threshold_adc") / self.gain, self.threshold_kev * rel))

    def energy_kev(self, adc: np.ndarray | float) -> np.ndarray:
        """ADC -> keV with this fit's calibration."""
        return (np.asarray(adc, dtype=float) - self.offset_adc) / self.gain

    def model_counts(self, edges: np.ndarray | None = None) -> np.ndarray:
        """Expected counts of the fitted model in ``edges`` (default: the fit bins)."""
        edges = self.edges if edges is None else edges
        return expected_counts(edges, self.param_array, self.lines, self.line_shape)


def valley_to_peak(res: FitResult) -> float:
    """Lowest model density between half the peak position and the peak, over the density at
    the peak (threshold efficiency left out): ~0 for a clean 55Fe spectrum, ~0.3 at 50 % FWHM,
    near 1 when the "peak" is only a shoulder of noise."""
    p = res.param_array
    p[IX["threshold_adc"]] = -np.inf
    pk = res.peak_adc
    edges = np.linspace(0.5 * pk, pk, 101)
    density = expected_counts(edges, p, res.lines, res.line_shape)
    return float(density.min() / max(density[-1], 1e-300))
