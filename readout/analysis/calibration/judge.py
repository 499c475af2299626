"""Is a closed slice one line with one gain? Fit it, test it, split it or refuse it.

A slice (its selected X-rays in time order) is fitted; then

1. the rank test of stationarity.py asks whether the gain changed inside the slice (a step
   anywhere, near either end, or an excursion: the gain leaves and comes back). If it did
   (p < ``change_p``) the slice is cut where the change most likely happened and both sides are
   fitted. A change within ``change_tolerance`` leaves a good point, flagged with the change
   (and its RMS over the slice removed from the intrinsic resolution). A larger one splits the
   slice: the X-rays within the cut's uncertainty (``cut_guard / separation^2`` either side:
   they may belong to the other gain) are a failed piece, and both sides are judged again the
   same way (a part that still holds a change is split again, up to ``max_split_depth`` times
   over, or refused) and become the slice's ``parts``; a side with fewer than
   ``min_part_xrays`` X-rays is a failed part.
2. Otherwise the fitted spectrum is checked for the symptoms of linecheck.py (escape ratio,
   chi2, double peak). A slice that shows one is cut into halves by time and both are refitted:
   if their gains differ (a change the rank test missed) the halves are judged as parts, else
   the slice is refused with the symptom as its reason (the two lines were there all along:
   regions of different gain summed, or not a 55Fe spectrum). A chi2 alone, with agreeing
   halves, is not a second line: the point stays good, flagged, its errors scaled by
   sqrt(chi2/ndf) (the line shape does not describe the data, e.g. events that repeat).

A slice that is not one line is therefore never a good point: it is ``split`` (its good parts
are points of their own) or ``failed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agetdaq.readout.analysis.calibration.fit import FitConfig, FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.linecheck import LineCheckConfig, symptoms
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.stationarity import ChangePoint, change_point
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, point_from_fit

_NAN = float("nan")
HALVES_DIFFER_SIGMA = 4.0  # halves of a slice differ when their gains are this many sigma apart
_FITTED = (
    "peak_adc",
    "peak_adc_err",
    "gain",
    "gain_err",
    "gain_rel",
    "gain_rel_err",
    "gain_rel_err_stat",
    "resolution",
    "resolution_err",
    "resolution_intrinsic",
    "resolution_intrinsic_err",
    "threshold_kev_adc",
    "threshold_kev_spectrum",
    "threshold_kev_spectrum_err",
)


@dataclass
class SliceXrays:
    """The selected X-rays of one slice in time order: energy (ADC), the number of the event
    each was inside the slice (0-based, counting every event fed) and its time (s, NaN when
    unknown); ``n_events`` events were fed in ``t_range``."""

    energy: np.ndarray
    ordinal: np.ndarray
    time: np.ndarray
    n_events: int
    t_range: tuple[float, float]

    @property
    def size(self) -> int:
        return int(self.energy.size)

    def take(self, a: int, b: int) -> SliceXrays:
        """X-rays ``a`` to ``b - 1`` with the events from the first to just before the X-ray
        that follows them (the slice's first events go with the first part)."""
        n = self.size
        if a >= n:  # none: the events after the last X-ray, at the slice's end
            ev_lo, t_lo = self.n_events, self.t_range[1]
        else:
            ev_lo = 0 if a == 0 else int(self.ordinal[a])
            t_lo = self.t_range[0] if a == 0 else float(self.time[a])
        ev_hi = self.n_events if b >= n else int(self.ordinal[b])
        t_hi = self.t_range[1] if b >= n else (float(self.time[b - 1]) if b > a else t_lo)
        return SliceXrays(
            self.energy[a:b], self.ordinal[a:b] - ev_lo, self.time[a:b], ev_hi - ev_lo, (t_lo, t_hi)
        )


def _relative_change(before: TrendPoint, after: TrendPoint) -> tuple[float, float]:
    if not (before.good and after.good):
        return _NAN, _NAN
    ratio = after.gain / before.gain
    err = ratio * math.hypot(before.gain_err / before.gain, after.gain_err / after.gain)
    return ratio - 1.0, err


def _leaves(points: list[TrendPoint]) -> list[TrendPoint]:
    out: list[TrendPoint] = []
    for p in points:
        out.extend(p.parts if p.status == "split" else [p])
    return out


def _scaled_errors(point: TrendPoint, flag: str) -> TrendPoint:
    """A good point whose fit's chi2/ndf is too large: flagged, errors times sqrt(chi2/ndf)."""
    k = math.sqrt(max(point.chi2_ndf, 1.0))
    point.status, point.flag = "flagged", flag
    for name in ("peak_adc_err", "gain_err", "resolution_err", "threshold_kev_spectrum_err"):
        setattr(point, name, getattr(point, name) * k)
    point.set_spread()
    return point


def _not_good(point: TrendPoint, status: str, reason: str) -> TrendPoint:
    point.status, point.ok, point.reason = status, False, reason
    for name in _FITTED:
        setattr(point, name, _NAN)
    return point


class SliceJudge:
    """Fits and judges slices (see the module docstring)."""

    def __init__(
        self,
        fit: FitConfig | None = None,
        check: LineCheckConfig | None = None,
        n_bins: int = 2048,
        adc_max: float = 8192.0,
        threshold_adc: float | None = None,
    ) -> None:
        self.fit_config = fit or FitConfig()
        self.check = check or LineCheckConfig()
        self.n_bins, self.adc_max = n_bins, adc_max
        self.threshold_adc = threshold_adc

    def judge(self, xrays: SliceXrays, index: int) -> TrendPoint:
        """The point of one closed slice (reference not applied: gain_rel is NaN)."""
        point = self._judge(xrays, index, 0)
        n = len(point.parts)
        for k, part in enumerate(point.parts, start=1):
            part.index, part.part = index, f"{k}/{n}"
            if part.good:
                part.status = "flagged"
                part.flag = f"part {k}/{n} of slice {index}: {point.reason}"
        return point

    def fit_xrays(self, xrays: SliceXrays, index: int) -> TrendPoint:
        """The plain fit of some X-rays as a point (no test)."""
        spectrum = Spectrum(self.n_bins, self.adc_max)
        spectrum.fill(xrays.energy)
        fit = fit_spectrum(spectrum, self.fit_config)
        counts = (xrays.n_events, xrays.size)
        return point_from_fit(fit, index, xrays.t_range, counts, None, self.threshold_adc)

    def _failed(self, xr: SliceXrays, index: int, reason: str) -> TrendPoint:
        fit = FitResult(False, reason, n_counts=xr.size, lines=self.fit_config.lines)
        counts = (xr.n_events, xr.size)
        return point_from_fit(fit, index, xr.t_range, counts, None, self.threshold_adc)

    def _guard(self, cp: ChangePoint, k: int, n: int) -> int:
        """X-rays left out on either side of a cut at ``k``: where the change happened is
        uncertain to ``cut_guard / separation^2`` X-rays (a part that kept the other side's
        X-rays would read between the two gains)."""
        return int(min(math.ceil(cp.uncertainty(self.check.cut_guard)), k, n - k))

    def _guard_piece(self, xr: SliceXrays, index: int, w: int) -> TrendPoint:
        return self._failed(
            xr, index, f"X-rays around the change (its place is uncertain to +- {w} X-rays)"
        )

    def _judge(self, xr: SliceXrays, index: int, depth: int) -> TrendPoint:
        cfg = self.check
        if depth > 0 and xr.size < cfg.min_part_xrays:
            reason = f"too few X-rays in this part ({xr.size} < {cfg.min_part_xrays})"
            return self._failed(xr, index, reason)
        point = self.fit_xrays(xr, index)
        cp = change_point(xr.energy)  # needs no fit: a slice whose fit failed is tested too
        point.change_p = cp.p_value
        found = symptoms(point.fit, cfg) if point.ok else []
        can_split = depth < cfg.max_split_depth and xr.size >= 2 * cfg.min_part_xrays
        if cp.p_value < cfg.change_p:
            k = cp.index
            w = self._guard(cp, k, xr.size) if can_split else 0
            sides = [xr.take(0, k - w), xr.take(k + w, xr.size)]
            if can_split:
                before, after = (self._judge(s, index, depth + 1) for s in sides)
            else:
                before, after = (self.fit_xrays(s, index) for s in sides)
            change, err = _relative_change(before, after)
            point.change_rel, point.change_rel_err = change, err
            where = f"after {k} of {xr.size} X-rays"
            what = (
                f"gain changes by {100 * change:+.1f} +- {100 * err:.1f} % inside the slice"
                if math.isfinite(change)
                else "gain not constant inside the slice"
            )
            what += f" ({where}, p = {cp.p_value:.1e})"
            small = math.isfinite(change) and abs(change) <= cfg.change_tolerance
            if small and not point.ok:  # the fit failed for another reason
                return point
            if small and not found:
                f = k / xr.size
                point.status = "flagged"
                point.flag = f"{what}, within the {100 * cfg.change_tolerance:.0f} % tolerance"
                point.set_spread(drift_rms=math.sqrt(max(change**2 - err**2, 0.0) * f * (1 - f)))
                return point
            if can_split:
                guard = [self._guard_piece(xr.take(k - w, k + w), index, w)] if w else []
                return self._split(point, [before, *guard, after], f"{what}: split")
            if not point.ok:
                what = f"{point.reason}; {what}"
            return _not_good(point, "failed", f"{what}; too few X-rays to split it further")
        if not point.ok:
            return point
        if found:
            return self._not_one_line(point, xr, index, depth, can_split, found)
        return point

    def _not_one_line(
        self,
        point: TrendPoint,
        xr: SliceXrays,
        index: int,
        depth: int,
        can_split: bool,
        found: list[str],
    ) -> TrendPoint:
        """A slice whose spectrum is not one line though the rank test saw no change: its
        halves by time are refitted; when they differ it is split. When they agree, a second
        line (escape ratio, double peak) was there all along (regions of different gain, or
        not 55Fe): refused. A chi2 alone, with agreeing halves, says the line shape does not
        describe the data (e.g. events that are not independent) but not that the gain moved:
        a good point, flagged, its errors scaled by sqrt(chi2/ndf)."""
        what = "not one line: " + "; ".join(found)
        sides = [xr.take(0, xr.size // 2), xr.take(xr.size // 2, xr.size)]
        change, err = _NAN, _NAN
        if can_split:
            change, err = _relative_change(*(self.fit_xrays(s, index) for s in sides))
            point.change_rel, point.change_rel_err = change, err
        differ = math.isfinite(change) and abs(change) > max(
            self.check.change_tolerance, HALVES_DIFFER_SIGMA * err
        )
        if differ:
            halves = [self._judge(s, index, depth + 1) for s in sides]
            return self._split(point, halves, f"{what}; the halves by time differ: split")
        agree = (
            f"the halves by time agree ({100 * change:+.1f} +- {100 * err:.1f} %)"
            if math.isfinite(change)
            else "its halves by time were not compared"
        )
        if math.isfinite(change) and all(f.startswith("chi2/ndf") for f in found):
            return _scaled_errors(point, f"{what}; {agree}: errors scaled by sqrt(chi2/ndf)")
        return _not_good(point, "failed", f"{what}; {agree}: not a gain change in time")

    @staticmethod
    def _split(point: TrendPoint, children: list[TrendPoint], reason: str) -> TrendPoint:
        _not_good(point, "split", reason)
        point.parts = _leaves(children)
        return point
