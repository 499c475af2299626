"""Online 55Fe gain monitor on top of the calibration engine (agetdaq.readout.analysis.calibration).

Two halves. ``GainMonitor`` lives on the GUI thread: it keeps what the views draw (the cumulative
spectrum, trend points, gain map, last live fit) and collects X-ray-like events. ``CalibEngine``
holds the engine's ``GainTrend`` (slices of N X-rays or T minutes, fitted when they close) and
``GainMap``; it is touched only by the task ``GainMonitor.next_task`` hands out, which the window
runs in a thread pool, one task per stream at a time. The task's ``CalibUpdate`` comes back
through ``accept``. Without Qt (tests) a task is simply called.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.history import TimeSeries
from agetdaq.readout.analysis.calibration.spectrum import Spectrum

TREND_NAMES = ("peak_adc", "gain_rel", "resolution_pct", "threshold_kev", "counts", "ok")
MAP_INTERVAL_S = 60.0  # the gain map (n x n fits) is refitted at most this often
MAX_PENDING = 1_000_000  # X-ray-like events waiting for the engine
_NAN = float("nan")


@dataclass
class FitOutcome:
    """What the spectrum view shows of a fit (plain numbers and the model curve)."""

    ok: bool
    reason: str = ""
    counts: int = 0
    peak_adc: float = _NAN
    peak_err: float = _NAN
    resolution: float = _NAN  # FWHM / E at 5.9 keV
    threshold_kev: float = _NAN
    n_peak: float = _NAN
    n_escape: float = _NAN
    escape_adc: float = _NAN
    chi2_ndf: float = _NAN
    curve_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    curve_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)


def outcome_from_fit(fit, spectrum: Spectrum) -> FitOutcome:
    """FitOutcome of a ``agetdaq.readout.analysis.calibration.fit.FitResult``; the curve on the
    spectrum's bins."""
    out = FitOutcome(fit.ok, fit.reason, spectrum.total)
    if fit.params:
        out.peak_adc, out.peak_err = fit.peak_adc, fit.peak_adc_err
        out.resolution, out.threshold_kev = fit.resolution, fit.threshold_kev
        out.n_peak = fit.params.get("n_peak", _NAN)
        out.n_escape = fit.params.get("n_escape", _NAN)
        out.escape_adc = fit.gain * fit.lines.escape_energy_kev + fit.offset_adc
        out.chi2_ndf = fit.chi2_ndf
        lo, hi = fit.window_adc
        edges = spectrum.edges
        edges = edges[(edges >= lo) & (edges <= hi)]
        if len(edges) > 1:
            out.curve_x = edges.astype(np.float32)
            out.curve_y = fit.model_counts(edges).astype(np.float32)
    return out


@dataclass
class CalibUpdate:
    points: list = field(
        default_factory=list
    )  # agetdaq.readout.analysis.calibration.trend.TrendPoint
    live: FitOutcome | None = None
    gain_map: np.ndarray | None = None  # [ix, iy] relative gains
    reference_gain: float | None = None  # ADC per keV
    open_xrays: int = 0
    error: str = ""


class CalibEngine:
    """The calibration engine of one stream; used by one thread at a time."""

    def __init__(self, config: MonitorConfig, area_mm: tuple[float, float, float, float]):
        from agetdaq.readout.analysis.calibration import (
            FitConfig,
            GainMap,
            GainMapConfig,
            GainTrend,
            TrendConfig,
        )

        fit = FitConfig(gas=config.gas)
        self._trend_cls, self._map_cls = GainTrend, GainMap
        self.trend = GainTrend(
            TrendConfig(slice_xrays=config.slice_xrays, slice_minutes=config.slice_minutes,
                        select=False, n_bins=config.spectrum_bins,
                        adc_max=config.spectrum_adc_max, fit=fit)
        )  # fmt: skip
        n = config.gainmap_n
        self.map_config = GainMapConfig(
            nx=n, ny=n, x_range_mm=area_mm[:2], y_range_mm=area_mm[2:], select=False,
            n_bins=config.spectrum_bins, adc_max=config.spectrum_adc_max, fit=fit,
        )  # fmt: skip
        self.map = GainMap(self.map_config)
        self.fit_config = fit
        self._last_map = -math.inf

    def run(self, commands: list[tuple[str, object]], events: dict | None,
            live: Spectrum | None) -> CalibUpdate:  # fmt: skip
        """Apply operator commands, feed events, fit what is due."""
        from agetdaq.readout.analysis.calibration import fit_spectrum

        up = CalibUpdate()
        for cmd, arg in commands:
            self._command(cmd, arg, up)
        if events is not None and len(events["energy_adc"]):
            up.points += self.trend.feed(events)
            self.map.fill(events)
        if up.points and time.monotonic() - self._last_map >= MAP_INTERVAL_S:
            self._last_map = time.monotonic()
            up.gain_map = self.map.fit().rel_gain.T.astype(np.float32)  # (ny, nx) -> [ix, iy]
        self.trend.points.clear()  # the GUI keeps its own bounded history
        if live is not None:
            up.live = outcome_from_fit(fit_spectrum(live, self.fit_config), live)
        up.reference_gain = self.trend.reference_gain
        up.open_xrays = self.trend.open_counts[1]
        return up

    def _command(self, cmd: str, arg: object, up: CalibUpdate) -> None:
        if cmd == "close" and self.trend.open_counts[1] > 0:
            up.points.append(self.trend.close())
            self._last_map = -math.inf
        elif cmd == "settings":
            n, minutes = arg  # type: ignore[misc]
            self.trend.config = replace(self.trend.config, slice_xrays=n, slice_minutes=minutes)
        elif cmd == "reference":
            self.trend.reference_gain = arg  # ADC per keV, or None: the next good slice
        elif cmd == "reset":
            ref = self.trend.reference_gain
            self.trend = self._trend_cls(self.trend.config)
            self.trend.reference_gain = ref
            self.map = self._map_cls(self.map_config)


class GainMonitor:
    """GUI-side state of the gain monitor of one stream (see the module docstring)."""

    def __init__(self, config: MonitorConfig, area_mm: tuple[float, float, float, float]) -> None:
        self.config = config
        self.area = area_mm  # x_lo, x_hi, y_lo, y_hi
        self.engine: CalibEngine | None = None  # built by the first task, in the pool thread
        self.trend = TimeSeries(TREND_NAMES, config.calib_points)
        self.reference_gain: float | None = None  # ADC per keV
        self.slice_xrays = config.slice_xrays
        self.slice_minutes = config.slice_minutes
        self.busy = False
        self.dropped = 0
        self.last_error = ""
        self._commands: list[tuple[str, object]] = []
        self.reset()

    @property
    def ref_energy_kev(self) -> float:
        return 5.9

    @property
    def reference_adc(self) -> float | None:
        return self.reference_gain * self.ref_energy_kev if self.reference_gain else None

    def reset(self) -> None:
        """New run or operator reset: forget the spectra (the trend and reference stay)."""
        self.spectrum = Spectrum(self.config.spectrum_bins, self.config.spectrum_adc_max)
        self.live: FitOutcome | None = None
        n = self.config.gainmap_n
        self.gain_map = np.full((n, n), np.nan, np.float32)
        self.open_xrays = 0
        self._pending: list[dict[str, np.ndarray]] = []
        self._n_pending = 0
        self._live_total = -1
        self._live_time = -math.inf
        self._commands.append(("reset", None))

    # ---- GUI thread ---------------------------------------------------------------------------

    def add(self, t: np.ndarray, energy: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
        """X-ray-like events (equal-length arrays; ``t`` in s)."""
        if not len(energy):
            return
        self.spectrum.fill(energy)
        batch = {"energy_adc": energy, "x_mm": x_mm, "y_mm": y_mm, "time_s": t}
        self._pending.append({k: np.asarray(v, float) for k, v in batch.items()})
        self._n_pending += len(energy)
        while self._n_pending > MAX_PENDING and len(self._pending) > 1:
            self._n_pending -= len(self._pending[0]["energy_adc"])
            self.dropped += len(self._pending.pop(0)["energy_adc"])

    def command(self, cmd: str, arg: object = None) -> None:
        """``close`` the slice now, new ``settings`` (n, minutes), ``reference`` (ADC/keV)."""
        if cmd == "settings":
            self.slice_xrays, self.slice_minutes = arg  # type: ignore[misc]
        if cmd == "reference":
            self.reference_gain = arg  # type: ignore[assignment]
        self._commands.append((cmd, arg))

    def next_task(self, now: float) -> Callable[[], CalibUpdate] | None:
        """The engine's next piece of work, or None when idle or one is still running."""
        if self.busy:
            return None
        total = self.spectrum.total
        live_due = (total >= 50 and total != self._live_total
                    and now - self._live_time >= self.config.live_fit_s)  # fmt: skip
        if not (self._pending or self._commands or live_due):
            return None
        events = None
        if self._pending:
            events = {k: np.concatenate([p[k] for p in self._pending]) for k in self._pending[0]}
            self._pending, self._n_pending = [], 0
        live = None
        if live_due:
            live = self.spectrum.copy()
            self._live_total, self._live_time = total, now
        commands, self._commands = self._commands, []
        self.busy = True

        def task() -> CalibUpdate:
            if self.engine is None:
                self.engine = CalibEngine(self.config, self.area)
            return self.engine.run(commands, events, live)

        return task

    def accept(self, up: CalibUpdate) -> None:
        """Take a finished task's results (GUI thread)."""
        self.busy = False
        self.last_error = up.error
        if up.error:
            return
        for p in up.points:
            ok = bool(p.ok)
            thr = p.threshold_kev_spectrum
            if not math.isfinite(thr):
                thr = p.threshold_kev_adc
            t = p.t_stop_s if math.isfinite(p.t_stop_s) else time.time()
            self.trend.append(
                t,
                {
                    "peak_adc": p.peak_adc if ok else None,
                    "gain_rel": p.gain_rel if ok else None,
                    "resolution_pct": 100.0 * p.resolution if ok else None,
                    "threshold_kev": thr if ok else None,
                    "counts": p.n_xrays,
                    "ok": 1.0 if ok else 0.0,
                },
            )
        if up.live is not None:
            self.live = up.live
        if up.gain_map is not None:
            self.gain_map = up.gain_map
        self.reference_gain = up.reference_gain
        self.open_xrays = up.open_xrays

    def failed(self, error: str) -> None:
        self.busy = False
        self.last_error = error

    def gain_rel(self, peak_adc: float) -> float:
        ref = self.reference_adc
        return peak_adc / ref if ref and math.isfinite(peak_adc) else _NAN
