"""The DAQ's 55Fe analysis (``calib`` messages) as the monitor shows it (no Qt, no fitting).

Everything here comes from agetdaq.readout.analysis.calibfeed.CalibFeed, in the DAQ or in the
replay: trend points (kind ``point``), the fit of the live window with its spectrum and curve
(``live``) and the gain map (``map``). :meth:`CalibState.gain_now` is the one gain number the
monitor shows and its gain-drift alarm watches: the run's newest good live-window fit, or the
newest good trend point while the run has none. One source, not the newer of two: a trend point
(a short slice, or a part of one) and the live window (the last N X-rays) lag a drift by
different amounts, so taking whichever ended later made the number jump back and forth, and the
gain alarm fire and clear in turn while the gain fell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agetdaq.gui.history import TimeSeries

REF_KEV = 5.9  # the energy the reference is quoted at (Mn K-alpha)
TREND_NAMES = ("peak_adc", "gain_rel", "resolution_pct", "threshold_kev", "counts", "ok")
_NAN = float("nan")


def _num(h: Mapping[str, object], key: str) -> float:
    v = h.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else _NAN


@dataclass
class LiveFit:
    """A ``live`` message: the fit of the DAQ's window of the last N X-rays."""

    ok: bool
    reason: str
    counts: int
    window_xrays: int
    t_end: float
    peak_adc: float
    peak_adc_err: float
    gain: float  # ADC per keV
    gain_rel: float
    resolution: float  # FWHM / E at 5.9 keV
    threshold_kev: float
    n_peak: float
    n_escape: float
    escape_adc: float
    chi2_ndf: float
    kev_per_adc: float | None  # the DAQ's energy scale of the spectrum (None: not known)
    window_minutes: float | None
    edges: np.ndarray = field(repr=False)
    spectrum: np.ndarray = field(repr=False)
    curve_x: np.ndarray = field(repr=False)  # bin edges of the fitted curve
    curve_y: np.ndarray = field(repr=False)  # model counts per bin

    @classmethod
    def from_message(cls, h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> LiveFit | None:
        edges, spectrum = a.get("edges"), a.get("spectrum")
        if edges is None or spectrum is None or len(edges) != len(spectrum) + 1:
            return None
        cx = a.get("curve_x", np.zeros(0, np.float32))
        cy = a.get("curve_y", np.zeros(0, np.float32))
        if len(cx) != len(cy) + 1:
            cx, cy = np.zeros(0, np.float32), np.zeros(0, np.float32)
        counts, window = h.get("counts"), h.get("window_xrays")
        scale, minutes = _num(h, "kev_per_adc"), _num(h, "window_minutes")
        return cls(
            ok=bool(h.get("ok", False)), reason=str(h.get("reason") or ""),
            counts=int(counts) if isinstance(counts, (int, float)) else 0,
            window_xrays=int(window) if isinstance(window, (int, float)) else 0,
            t_end=_num(h, "t_end"), peak_adc=_num(h, "peak_adc"),
            peak_adc_err=_num(h, "peak_adc_err"), gain=_num(h, "gain"),
            gain_rel=_num(h, "gain_rel"),
            resolution=_num(h, "fwhm_rel"), threshold_kev=_num(h, "threshold_kev"),
            n_peak=_num(h, "n_peak"), n_escape=_num(h, "n_escape"),
            escape_adc=_num(h, "escape_adc"), chi2_ndf=_num(h, "chi2_ndf"),
            kev_per_adc=scale if scale > 0 else None,
            window_minutes=minutes if minutes > 0 else None,
            edges=np.asarray(edges, np.float64), spectrum=np.asarray(spectrum, np.float32),
            curve_x=np.asarray(cx, np.float32), curve_y=np.asarray(cy, np.float32),
        )  # fmt: skip


@dataclass
class GainMapView:
    """A ``map`` message: relative gains [ix, iy] with the X-ray counts and why a cell is empty."""

    rel_gain: np.ndarray
    counts: np.ndarray
    reasons: list[str]
    area_mm: tuple[float, float, float, float]

    @classmethod
    def from_message(
        cls, h: Mapping[str, object], a: Mapping[str, np.ndarray]
    ) -> GainMapView | None:
        rel, counts = a.get("rel_gain"), a.get("counts")
        if rel is None or counts is None or rel.ndim != 2 or counts.shape != rel.shape:
            return None
        xr, yr = h.get("x_range_mm"), h.get("y_range_mm")
        try:
            area = (float(xr[0]), float(xr[1]), float(yr[0]), float(yr[1]))  # type: ignore[index]
        except (TypeError, IndexError, ValueError):
            return None
        reasons = h.get("reasons")
        n = rel.size
        reasons = [str(r or "") for r in reasons] if isinstance(reasons, list) else []
        return cls(np.asarray(rel, np.float32), np.asarray(counts, np.int64),
                   (reasons + [""] * n)[:n], area)  # fmt: skip

    def reason(self, ix: int, iy: int) -> str:
        """Why a cell has no gain ("" when it has one)."""
        if math.isfinite(float(self.rel_gain[ix, iy])):
            return ""
        reason = self.reasons[ix * self.rel_gain.shape[1] + iy]
        return reason if reason else f"{int(self.counts[ix, iy])} X-rays"

    def cell_text(self, ix: int, iy: int) -> str:
        """What a cell shows: ``0.98``, or in short why not: ``120/200`` X-rays, ``due`` (enough
        X-rays, not fitted yet), ``fit?`` (the fit failed; :meth:`summary` says why)."""
        v = float(self.rel_gain[ix, iy])
        if math.isfinite(v):
            return f"{v:.2f}"
        reason = self.reason(ix, iy)
        words = reason.split()
        if len(words) >= 3 and words[1] == "of" and words[0].isdigit():
            return f"{words[0]}/{words[2]}"
        return "due" if reason.endswith("fit due") else "fit?"

    def summary(self) -> str:
        """``30 of 36 regions fitted; 4 with too few X-rays (200 needed); ...``."""
        nx, ny = self.rel_gain.shape
        cells = [(ix, iy) for ix in range(nx) for iy in range(ny)]
        fitted = sum(math.isfinite(float(self.rel_gain[c])) for c in cells)
        texts = [self.cell_text(*c) for c in cells]
        few = [t for t in texts if "/" in t]
        due = texts.count("due")
        failed = [self.reason(*c) for c, t in zip(cells, texts) if t == "fit?"]
        parts = [f"gain map: {fitted} of {len(cells)} regions fitted"]
        if few:
            parts.append(f"{len(few)} with too few X-rays ({few[0].split('/')[1]} needed)")
        if due:
            parts.append(f"{due} with enough X-rays, fit due (one region per step)")
        if failed:
            common = max(set(failed), key=failed.count)
            parts.append(f"{len(failed)} fit failed (e.g. {common})")
        return "; ".join(parts)


class CalibState:
    """What the monitor holds of the DAQ's calibration feed for one stream."""

    def __init__(self, capacity: int) -> None:
        self.trend = TimeSeries(TREND_NAMES, capacity)
        self.reference_gain: float | None = None  # ADC per keV, the DAQ's
        self.reference_from = ""  # where the DAQ's reference comes from ("run 3 slice 0", ...)
        self.readout = ""  # the command script of the run the DAQ analyses (its reference's)
        self.slice_xrays: int | None = None
        self.slice_minutes: float | None = None
        self.points = 0
        self.last_point: dict = {}
        self.point_spectrum: tuple[np.ndarray, np.ndarray] | None = None  # (edges, counts)
        self.reset_run()

    def reset_run(self) -> None:
        """A new run: its live fit and map are not yet known (the trend goes on)."""
        self.live: LiveFit | None = None
        self.live_rx: float | None = None  # monotonic arrival
        self.live_good: LiveFit | None = None  # the run's newest good live fit
        self.gain_map: GainMapView | None = None

    def apply(self, h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> bool:
        """Take one ``calib`` message; False when it is not understood."""
        ref = _num(h, "reference_gain")
        if math.isfinite(ref) and ref > 0:
            self.reference_gain = ref
            source = h.get("reference_from")
            self.reference_from = str(source) if isinstance(source, str) else ""
        readout = h.get("readout")
        if isinstance(readout, str):
            self.readout = readout
        n, minutes = h.get("slice_xrays"), h.get("slice_minutes")
        if isinstance(n, int):
            self.slice_xrays = n
        self.slice_minutes = float(minutes) if isinstance(minutes, (int, float)) else None
        kind = h.get("kind", "point")
        if kind == "live":
            live = LiveFit.from_message(h, a)
            if live is None:
                return False
            self.live, self.live_rx = live, time.monotonic()
            if live.ok and math.isfinite(live.gain) and math.isfinite(live.gain_rel):
                self.live_good = live
            return True
        if kind == "map":
            gain_map = GainMapView.from_message(h, a)
            if gain_map is None:
                return False
            self.gain_map = gain_map
            return True
        if kind != "point":
            return False
        ok = bool(h.get("ok", False))
        fwhm = _num(h, "fwhm_rel")
        t = _num(h, "t_end")
        t = t if math.isfinite(t) else _num(h, "time")
        self.trend.append(
            t if math.isfinite(t) else time.time(),
            {
                "peak_adc": _num(h, "peak_adc") if ok else None,
                "gain_rel": _num(h, "gain_rel") if ok else None,
                "resolution_pct": 100.0 * fwhm if ok else None,
                "threshold_kev": _num(h, "threshold_kev") if ok else None,
                "counts": _num(h, "counts"),
                "ok": 1.0 if ok else 0.0,
            },
        )
        self.points += 1
        self.last_point = dict(h)
        edges, spectrum = a.get("edges"), a.get("spectrum")
        if edges is not None and spectrum is not None and len(edges) == len(spectrum) + 1:
            self.point_spectrum = (np.asarray(edges), np.asarray(spectrum))
        return True

    def reference_text(self) -> str:
        """The DAQ's reference for the crew: ``reference 2959.2 ADC at 5.9 keV (run 3 slice 0;
        readout run)``."""
        if not self.reference_gain:
            readout = f" for readout {self.readout}" if self.readout else ""
            return f"no reference yet{readout}"
        readout = f"readout {self.readout}" if self.readout else ""
        where = "; ".join(x for x in (self.reference_from, readout) if x)
        return (f"reference {self.reference_gain * REF_KEV:.1f} ADC at {REF_KEV} keV"
                + (f" ({where})" if where else ""))  # fmt: skip

    def last_gain(self) -> float | None:
        """ADC per keV of the fit :meth:`gain_now` describes."""
        if self.live_good is not None:
            return self.live_good.gain
        g = _num(self.last_point, "gain")
        return g if self.last_point.get("ok") and math.isfinite(g) else None

    def gain_now(self) -> tuple[float | None, float | None, float | None, str]:
        """(gain_rel, FWHM/E %, threshold keV, what it is): the run's newest good live-window
        fit, or the newest good trend point while the run has none (see the module doc)."""
        live = self.live_good
        if live is not None:
            vals = (live.gain_rel, 100.0 * live.resolution, _finite(live.threshold_kev))
            return (*vals, f"live window of {live.counts} X-rays")
        idx = np.flatnonzero(self.trend.column("ok") > 0.5)
        if not len(idx):
            return None, None, None, ""
        i = int(idx[-1])
        vals = tuple(_finite(self.trend.column(n)[i])
                     for n in ("gain_rel", "resolution_pct", "threshold_kev"))  # fmt: skip
        return (*vals, "trend point")


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
