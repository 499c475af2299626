"""The online 55Fe analysis of calibration runs, published on the stream topic ``calib``.

The data path hands every batch of event-table rows to :meth:`CalibFeed.on_rows`; during a run of
type "calibration" they feed a :class:`~agetdaq.readout.analysis.calibration.GainTrend` (rows
filtered by :class:`~agetdaq.readout.analysis.calibration.runs.EventFilter`, times from the card
clock). Three kinds of ``calib`` message (header ``kind``, docs/STREAM.md):

- ``point``: each slice the trend closes, fitted there (once per slice, ~50 ms), with its spectrum;
  a slice the gain changed in is published as its parts (``part`` "k/n"; the judge split it
  where the gain changed), each with its own fit and spectrum, as ``agetdaq calibrate`` reports;
- ``live``: every ``live_interval_s`` of host time, the fit of the last ``window_xrays`` selected
  X-rays within the last ``window_minutes`` (a rolling window that follows a drifting gain without
  a reset, :class:`~agetdaq.readout.analysis.livecalib.LiveWindow`) with its spectrum, the fitted
  curve and the energy scale (keV per ADC, from the reference gain): what the monitor's 55Fe view
  draws, and its ``gain_rel`` is the one gain number the monitor shows and alarms on;
- ``map``: the gain map, its regions refitted one per ``map_step_s`` after new data
  (:class:`~agetdaq.readout.analysis.livecalib.MapSweep`), sent after every step: each region its
  relative gain or why not. Its X-rays are filled corrected for the drift in time (to the gain of
  the run's first good fit, from the newest good fit), so a drifting gain does not smear it.

The DAQ's ``[calibration]`` settings table (:class:`CalibFeedSettings`) sets the slicing, the
window and the map. Publishing never blocks; a failure of the analysis is logged and counted,
never raised into the data path.

The reference gain is kept across runs, so ``gain_rel`` compares days, not slices; but it belongs
to a readout (the command script the runs take, :meth:`CalibFeed.use_readout`): the energy sum of
an X-ray depends on what the card sends (a script that zero-suppresses on the card loses a few
per cent of the charge at low gain against one that reads every channel whole, docs/
CALIBRATION.md), so a gain measured with one script is no reference for another. Each readout
keeps its own (:class:`GainReference`: the gain and where it comes from); a run whose readout has
none starts a new one from its first good slice, and every message says the readout and the
reference's origin (``readout``, ``reference_from``). A reference from the settings
(``reference_gain``) stands for every readout that has not got one of its own.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from agetdaq.readout.analysis.calibration import (
    FitResult,
    GainMapConfig,
    GainTrend,
    TrendConfig,
    TrendPoint,
    select_xrays,
)
from agetdaq.readout.analysis.calibration.report import json_safe
from agetdaq.readout.analysis.calibration.runs import (
    EventFilter,
    RunClock,
    SliceBuffer,
    calibration_events,
    clock_offset,
)
from agetdaq.readout.analysis.calibsettings import MAX_WINDOW, CalibFeedSettings
from agetdaq.readout.analysis.livecalib import (
    LiveWindow,
    MapSweep,
    fit_curve,
    fit_fields,
    map_arrays,
)
from agetdaq.readout.analysis.sink import MessageSink
from agetdaq.readout.schema import TOPIC_CALIB

log = logging.getLogger(__name__)

TOPIC = TOPIC_CALIB
__all__ = ["CALIBRATION_RUN", "TOPIC", "CalibFeed", "CalibFeedSettings", "GainReference"]
CALIBRATION_RUN = "calibration"


@dataclass(frozen=True)
class GainReference:
    """The gain ``gain_rel`` compares with (ADC per keV, its error) and where it comes from
    (``run 3 slice 0``, ``run control``, ``settings``)."""

    gain: float
    source: str
    err: float = 0.0


class CalibFeed:
    """Feeds a GainTrend, a live window and a gain map from the data path during calibration
    runs and publishes what they find (see the module docstring)."""

    def __init__(
        self,
        sink: MessageSink | None,
        config: TrendConfig | None = None,
        event_filter: EventFilter | None = None,
        *,
        settings: CalibFeedSettings | None = None,
        area_mm: tuple[float, float, float, float] = (-30.0, 30.0, -30.0, 30.0),
    ) -> None:
        st = settings or CalibFeedSettings()
        self.sink = sink
        self.config = config or st.trend()
        self.event_filter = event_filter or EventFilter()
        ref = self.config.reference_gain
        # the settings' reference, for every readout without one of its own
        self.configured_reference = GainReference(ref, "settings") if ref else None
        self.references: dict[str, GainReference] = {}  # by readout (command script)
        self.readout = ""  # the readout of the runs that begin from now on ("": not told)
        self.run_readout = ""  # ... and of the current run
        self.live_interval_s = st.live_interval_s
        self.window_xrays = st.window_xrays
        self.window_minutes = st.window_minutes
        self.window_min_xrays = st.window_min_xrays
        cfg = self.config
        self.map_config = GainMapConfig(
            nx=st.map_n, ny=st.map_n, x_range_mm=area_mm[:2], y_range_mm=area_mm[2:],
            select=False, n_bins=cfg.n_bins, adc_max=cfg.adc_max, fit=cfg.fit,
        )  # fmt: skip
        self.map_step_s = st.map_step_s
        self.map_min_xrays = st.map_min_xrays
        self.run_number = 0
        self.active = False
        self.trend: GainTrend | None = None
        self.points: list[TrendPoint] = []  # points of the current run
        self.published = 0  # trend points published
        self.published_live = 0
        self.published_maps = 0
        self.errors = 0
        self._new_run_state()

    @classmethod
    def from_settings(
        cls,
        sink: MessageSink | None,
        settings: CalibFeedSettings,
        threshold_adc: float | None = None,
        area_mm: tuple[float, float, float, float] = (-30.0, 30.0, -30.0, 30.0),
    ) -> CalibFeed:
        """The feed of the DAQ's ``[calibration]`` table (``threshold_adc``: the software
        trigger's energy threshold, for the threshold in keV)."""
        return cls(sink, settings.trend(threshold_adc), settings=settings, area_mm=area_mm)

    def _new_run_state(self) -> None:
        self._clock = RunClock()
        self._buffer = SliceBuffer()
        self._open_since: float | None = None  # monotonic time the open slice got its first event
        size = min(self.window_xrays, MAX_WINDOW)
        self.window = LiveWindow(size, self.config.n_bins, self.config.adc_max, self.window_minutes)
        self.sweep = MapSweep(self.map_config, self.map_min_xrays)
        self._gain_now: float | None = None  # ADC per keV of the newest good fit of the run
        self._gain_first: float | None = None  # ... and of its first
        now = time.monotonic()
        self._last_live = now
        self._last_map_step = now

    @property
    def reference(self) -> GainReference | None:
        """The reference of the current run's readout (or the settings'), None before one."""
        return self.references.get(self.run_readout, self.configured_reference)

    @property
    def reference_gain(self) -> float | None:
        """ADC per keV of :attr:`reference` (None: none yet)."""
        ref = self.reference
        return ref.gain if ref is not None else None

    def use_readout(self, readout: str) -> None:
        """The readout (command script name) of the runs that begin from now on: it chooses
        their reference (the acquisition says it before each run)."""
        self.readout = str(readout)

    def set_reference(self, gain_adc_per_kev: float) -> None:
        """Reference gain (ADC/keV) for ``gain_rel`` of the current readout from now on (e.g.
        the control command)."""
        if not gain_adc_per_kev > 0:
            raise ValueError(f"reference gain must be > 0, got {gain_adc_per_kev}")
        ref = GainReference(float(gain_adc_per_kev), "run control")
        self.references[self.run_readout] = ref
        log.info("gain reference of readout %r: %.3f ADC/keV (%s)",
                 self.run_readout, ref.gain, ref.source)  # fmt: skip
        if self.trend is not None:
            self.trend.set_reference(ref.gain)

    def begin_run(self, run_number: int, run_type: str) -> None:
        """Start a run; only runs of type "calibration" are analysed, against the reference of
        their readout (none yet: their first good slice becomes it)."""
        self.run_number = int(run_number)
        self.run_readout = self.readout
        self.active = run_type == CALIBRATION_RUN
        self.points = []
        self._new_run_state()
        self.trend = GainTrend(self.config) if self.active else None
        ref = self.reference
        if self.trend is not None:
            if ref is not None:
                self.trend.set_reference(ref.gain, ref.err)
            else:
                others = ", ".join(repr(r) for r in sorted(self.references))
                if others:
                    log.info("run %d: readout %r has no gain reference yet (that of %s is not "
                             "comparable): its first good slice becomes it", self.run_number,
                             self.run_readout, others)  # fmt: skip

    def on_rows(self, rows: np.ndarray) -> None:
        """Event-table rows as the data path writes them (any batch size)."""
        if not self.active or self.trend is None or not len(rows):
            return
        try:
            if self._clock.offset_s is None:
                # from the run's first event: the same whatever the batching (live or replayed)
                self._clock.offset_s = clock_offset(rows[:1])
            events = calibration_events(rows, self._clock.times(rows), self.event_filter)
            mask = np.isfinite(events["energy_adc"])
            if self.config.select:
                mask &= select_xrays(events, self.config.selection)
            self._buffer.add(events, mask)
            self.window.add(events["energy_adc"][mask], events["time_s"][mask])
            e = events["energy_adc"][mask] * self._drift_correction()
            self.sweep.fill(e, events["x_mm"][mask], events["y_mm"][mask])
            closed = self.trend.feed(events)
            self._closed(closed)
            if self.trend.open_counts[0] and (closed or self._open_since is None):
                self._open_since = time.monotonic()
        except Exception:  # the data path must never die of the calibration
            self.errors += 1
            log.exception("calibration feed failed on a batch of %d rows", len(rows))

    def tick(self) -> None:
        """Periodic call: publishes the live window's fit and gain-map sweeps when due; with
        ``slice_minutes`` set, closes a slice open that long on the host clock (no later event
        arrived to close it: the rate dropped)."""
        trend = self.trend
        if not self.active or trend is None:
            return
        now = time.monotonic()
        since = self._open_since
        minutes = self.config.slice_minutes
        if math.isfinite(minutes) and since is not None and now - since >= 60.0 * minutes:
            self._close_open()
        try:
            if now - self._last_live >= self.live_interval_s and self.window.changed:
                self._last_live = now
                self.publish_live()
            if now - self._last_map_step >= self.map_step_s:
                self._last_map_step = now
                result = self.sweep.step()
                if result is not None:
                    header, arrays = map_arrays(result)
                    self.published_maps += self._send("map", header, arrays)
        except Exception:  # the data path must never die of the calibration
            self.errors += 1
            log.exception("live calibration fit failed")

    def close_slice(self) -> None:
        """Close and publish the open slice now (e.g. on the crew's request)."""
        if self.active and self.trend is not None and self.trend.open_counts[0]:
            self._close_open()

    def close_run(self) -> None:
        """End of run: close and publish the open slice, then stop analysing."""
        if self.active and self.trend is not None and self.trend.open_counts[0]:
            self._close_open()
        self.active = False

    def _close_open(self) -> None:
        try:
            self._closed([self.trend.close()])
        except Exception:
            self.errors += 1
            log.exception("calibration fit failed at the end of a slice")

    def _drift_correction(self) -> float:
        """Factor that takes energies to the gain of the run's first good fit: the gain map
        compares regions, and a drift in time would smear its spectra (1.0 before a fit)."""
        now, first = self._gain_now, self._gain_first
        return first / now if now and first else 1.0

    def _gain_seen(self, gain: float) -> None:
        """A good fit's gain (ADC per keV): the newest drives the map's drift correction."""
        if gain > 0 and math.isfinite(gain):
            self._gain_now = gain
            self._gain_first = self._gain_first or gain

    def _closed(self, points: list[TrendPoint]) -> None:
        if points:
            self._open_since = None
        for p in points:
            self.points.append(p)
            if self.reference is None and self.trend.reference_gain is not None:
                self.references[self.run_readout] = GainReference(
                    self.trend.reference_gain, f"run {self.run_number} slice {p.index}",
                    self.trend.reference_gain_err)  # fmt: skip
            for piece in p.parts if p.status == "split" and p.parts else [p]:
                xrays = self._buffer.take(piece.n_events)
                if piece.ok:
                    self._gain_seen(piece.gain)
                self.publish(piece, xrays["energy_adc"])

    def publish(self, point: TrendPoint, energies: np.ndarray) -> bool:
        """One ``calib`` message of kind ``point``: the trend point and the slice's spectrum."""
        cfg = self.config
        counts, edges = np.histogram(energies, bins=cfg.n_bins, range=(0.0, cfg.adc_max))
        spectral = point.threshold_kev_spectrum
        header = {
            "slice": point.index,
            "t_start": point.t_start_s,
            "t_end": point.t_stop_s,
            "counts": point.n_xrays,
            "events": point.n_events,
            "ok": point.ok,
            "peak_adc": point.peak_adc,
            "gain": point.gain,
            "gain_rel": point.gain_rel,
            "gain_rel_err": point.gain_rel_err,
            "fwhm_rel": point.resolution,
            "fwhm_rel_err": point.resolution_err,
            "threshold_kev": spectral if math.isfinite(spectral) else point.threshold_kev_adc,
            "threshold_kev_adc": point.threshold_kev_adc,
            "threshold_kev_spectrum": spectral,
            "chi2_ndf": point.chi2_ndf,
            "reason": point.reason,
            "part": point.part,
            "flag": point.flag,
        }
        arrays = {"spectrum": counts.astype(np.int64), "edges": edges}
        sent = self._send("point", header, arrays)
        self.published += int(sent)
        return sent

    def publish_live(self) -> bool:
        """One ``calib`` message of kind ``live``: the fit of the live window, its spectrum and
        the fitted curve."""
        spectrum = self.window.spectrum()
        if spectrum.total >= self.window_min_xrays:
            spectrum, fit = self.window.fit(self.config.fit)
        else:  # not a failed fit: too early (or too low a rate) for one
            self.window.fitted_at = self.window.added
            reason = f"waiting for X-rays: {spectrum.total} of {self.window_min_xrays}"
            fit = FitResult(False, reason, n_counts=spectrum.total)
        t0, t1 = self.window.time_range()
        ref = self._reference()
        if ref:
            scale, scale_from = 1.0 / ref, "reference"
        elif fit.ok and fit.gain > 0:
            scale, scale_from = 1.0 / fit.gain, "this fit"
        else:
            scale, scale_from = None, ""
        header = {
            "t_start": t0,
            "t_end": t1,
            "counts": spectrum.total,
            "window_xrays": self.window.size,
            "window_minutes": self.window.minutes or None,
            "kev_per_adc": scale,
            "energy_scale": scale_from,
            **fit_fields(fit, ref, self.config.threshold_adc),
        }
        curve_x, curve_y = fit_curve(fit, spectrum)
        arrays = {"spectrum": spectrum.counts, "edges": spectrum.edges,
                  "curve_x": curve_x, "curve_y": curve_y}  # fmt: skip
        if fit.ok:
            self._gain_seen(fit.gain)
        sent = self._send("live", header, arrays)
        self.published_live += int(sent)
        return sent

    def _reference(self) -> float | None:
        ref = self.trend.reference_gain if self.trend is not None else None
        return ref if ref is not None else self.reference_gain

    def _reference_from(self) -> str | None:
        """Where the reference of the messages comes from (None: no reference yet)."""
        ref = self.reference
        if ref is not None:
            return ref.source
        return "this run's first good slice" if self._reference() is not None else None

    def _send(self, kind: str, header: dict, arrays: dict[str, np.ndarray]) -> bool:
        if self.sink is None:
            return False
        cfg = self.config
        common = {
            "kind": kind,
            "run_number": self.run_number,
            "reference_gain": self._reference(),
            "reference_from": self._reference_from(),
            "readout": self.run_readout,
            "slice_xrays": cfg.slice_xrays,
            "slice_minutes": cfg.slice_minutes,
        }
        return self.sink.publish(TOPIC, json_safe({**common, **header}), arrays)
