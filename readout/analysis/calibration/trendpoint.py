"""TrendPoint: one time slice of the gain trend, and how it is derived from a fit.

A point's ``status`` says what it is: ``ok`` (one line, a good point), ``flagged`` (a good point
with a note in ``flag``: a part of a split slice, or a small in-slice change within the
tolerance), ``split`` (a slice that was not one line: not a good point; its good and failed
pieces are in ``parts``) or ``failed`` (no good fit, or not one line and not splittable: the
reason is in ``reason``). ``ok`` is True for ``ok`` and ``flagged`` only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from agetdaq.readout.analysis.calibration.fitresult import FitResult
from agetdaq.readout.analysis.calibration.linecheck import chi2_p_value, escape_ratio
from agetdaq.readout.analysis.calibration.model import FWHM_PER_SIGMA

_NAN = float("nan")
STATUSES = ("ok", "flagged", "split", "failed")


@dataclass
class TrendPoint:
    """One time slice. Fitted values are NaN when ``ok`` is False; ``reason`` says why."""

    index: int
    t_start_s: float
    t_stop_s: float
    n_events: int  # events fed during the slice
    n_xrays: int  # selected events
    ok: bool
    reason: str
    peak_adc: float
    peak_adc_err: float
    gain: float  # ADC per keV
    gain_err: float
    gain_rel: float  # gain / reference gain
    gain_rel_err: float  # with the reference's own error
    resolution: float  # FWHM / E at 5.9 keV as fitted (in-slice drift and map spread included)
    resolution_err: float
    threshold_kev_adc: float  # E_ref * threshold_adc / peak_adc
    threshold_kev_spectrum: float  # turn-on of the spectrum (fitted efficiency edge)
    threshold_kev_spectrum_err: float
    chi2_ndf: float
    status: str = "ok"  # ok | flagged | split | failed
    flag: str = ""  # why a good point is marked
    part: str = ""  # "k/n": a part of split slice ``index``
    reference: bool = False  # this slice set the reference gain
    gain_rel_err_stat: float = _NAN  # the slice's own error (reference taken as exact)
    reference_gain: float = _NAN  # ADC per keV
    reference_gain_err: float = _NAN
    escape_ratio: float = _NAN  # fitted n_escape / n_peak
    chi2_p: float = _NAN  # p-value of the fit's deviance
    change_p: float = _NAN  # p-value of "the gain is constant inside the slice" (rank test)
    change_rel: float = _NAN  # gain after / before the most likely change - 1
    change_rel_err: float = _NAN
    drift_rms: float = 0.0  # relative RMS of the gain over the slice's X-rays (in-slice change)
    map_rms: float = 0.0  # relative RMS of the gain map over the slice's X-rays, when known
    resolution_intrinsic: float = _NAN  # FWHM/E with drift_rms and map_rms removed
    resolution_intrinsic_err: float = _NAN
    fit: FitResult | None = field(default=None, repr=False)
    parts: list[TrendPoint] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("fit")
        d.pop("parts")
        return d

    @property
    def good(self) -> bool:
        return self.status in ("ok", "flagged")

    @property
    def t_mid_s(self) -> float:
        return 0.5 * (self.t_start_s + self.t_stop_s)

    def set_spread(self, drift_rms: float | None = None, map_rms: float | None = None) -> None:
        """Set the known gain spreads and recompute the intrinsic resolution: the fitted FWHM/E
        with the spreads removed in quadrature (relative variances add)."""
        if drift_rms is not None:
            self.drift_rms = float(drift_rms)
        if map_rms is not None:
            self.map_rms = float(map_rms)
        r, spread = self.resolution, FWHM_PER_SIGMA * math.hypot(self.drift_rms, self.map_rms)
        if not math.isfinite(r):
            self.resolution_intrinsic = self.resolution_intrinsic_err = _NAN
            return
        intrinsic = math.sqrt(max(r * r - spread * spread, 0.0))
        self.resolution_intrinsic = intrinsic
        self.resolution_intrinsic_err = self.resolution_err * r / max(intrinsic, 1e-9)

    def set_reference(self, gain: float | None, gain_err: float = 0.0, own: bool = False) -> None:
        """Relative gain against ``gain`` (ADC/keV) with error ``gain_err``; ``own``: this point
        is the reference (gain_rel 1 exactly). Applies to the parts too."""
        ref = float(gain) if gain else _NAN
        ref_err = float(gain_err) if gain else _NAN
        self.reference = own
        self.reference_gain, self.reference_gain_err = ref, ref_err
        if own:
            self.gain_rel, self.gain_rel_err, self.gain_rel_err_stat = 1.0, 0.0, 0.0
        else:
            rel = self.gain / ref
            self.gain_rel = rel
            self.gain_rel_err_stat = self.gain_err / ref
            self.gain_rel_err = abs(rel) * math.hypot(self.gain_err / self.gain, ref_err / ref)
        for p in self.parts:
            p.set_reference(gain, gain_err)


def point_from_fit(
    fit: FitResult,
    index: int,
    t_range: tuple[float, float],
    counts: tuple[int, int],
    reference_gain: float | None,
    threshold_adc: float | None,
    reference_gain_err: float = 0.0,
) -> TrendPoint:
    """The trend quantities of one fitted slice (status ``ok`` or ``failed``)."""
    ok = fit.ok
    thr_adc = _NAN
    if ok and threshold_adc is not None:
        thr_adc = fit.lines.ref_energy_kev * threshold_adc / fit.peak_adc
    spectral = ok and fit.threshold_found
    point = TrendPoint(
        index=index,
        t_start_s=t_range[0],
        t_stop_s=t_range[1],
        n_events=counts[0],
        n_xrays=counts[1],
        ok=ok,
        reason=fit.reason,
        peak_adc=fit.peak_adc if ok else _NAN,
        peak_adc_err=fit.peak_adc_err if ok else _NAN,
        gain=fit.gain if ok else _NAN,
        gain_err=fit.gain_err if ok else _NAN,
        gain_rel=_NAN,
        gain_rel_err=_NAN,
        resolution=fit.resolution if ok else _NAN,
        resolution_err=fit.resolution_err if ok else _NAN,
        threshold_kev_adc=thr_adc,
        threshold_kev_spectrum=fit.threshold_kev if spectral else _NAN,
        threshold_kev_spectrum_err=fit.threshold_kev_err if spectral else _NAN,
        chi2_ndf=fit.chi2_ndf if ok else _NAN,
        status="ok" if ok else "failed",
        escape_ratio=escape_ratio(fit) if ok else _NAN,
        chi2_p=chi2_p_value(fit) if ok else _NAN,
        fit=fit,
    )
    point.set_reference(reference_gain, reference_gain_err)
    point.set_spread()
    return point


def expand(points: list[TrendPoint]) -> list[TrendPoint]:
    """The points with every split slice replaced by its parts (what a plot or a table shows)."""
    out: list[TrendPoint] = []
    for p in points:
        out.extend(p.parts if p.status == "split" and p.parts else [p])
    return out
