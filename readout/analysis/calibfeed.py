"""The online 55Fe trend of calibration runs, published on the stream topic ``calib``.

The data path hands every batch of event-table rows to :meth:`CalibFeed.on_rows`; during a run of
type "calibration" they feed a :class:`~agetdaq.readout.analysis.calibration.GainTrend` (rows
filtered by :class:`~agetdaq.readout.analysis.calibration.runs.EventFilter`, times from the card
clock). Each slice it closes is fitted there (once per slice, ~20 ms) and published with its
spectrum (docs/STREAM.md). Publishing never blocks; a failure of the analysis is logged and counted,
never raised into the data path. The reference gain is kept across runs, so ``gain_rel`` compares
days, not slices.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from agetdaq.readout.analysis.calibration import GainTrend, TrendConfig, TrendPoint, select_xrays
from agetdaq.readout.analysis.calibration.report import json_safe
from agetdaq.readout.analysis.calibration.runs import (
    EventFilter,
    RunClock,
    SliceBuffer,
    calibration_events,
)
from agetdaq.readout.schema import TOPIC_CALIB
from agetdaq.readout.transport.stream import Publisher

log = logging.getLogger(__name__)

TOPIC = TOPIC_CALIB
CALIBRATION_RUN = "calibration"


class CalibFeed:
    """Feeds a GainTrend from the data path during calibration runs and publishes its points."""

    def __init__(
        self,
        publisher: Publisher | None,
        config: TrendConfig | None = None,
        event_filter: EventFilter | None = None,
    ) -> None:
        self.publisher = publisher
        self.config = config or TrendConfig()
        self.event_filter = event_filter or EventFilter()
        self.reference_gain: float | None = self.config.reference_gain
        self.run_number = 0
        self.active = False
        self.trend: GainTrend | None = None
        self.points: list[TrendPoint] = []  # points of the current run
        self.published = 0
        self.errors = 0
        self._clock = RunClock()
        self._buffer = SliceBuffer()
        self._open_since: float | None = None  # monotonic time the open slice got its first event

    def set_reference(self, gain_adc_per_kev: float) -> None:
        """Reference gain (ADC/keV) for ``gain_rel`` from now on (e.g. the control command)."""
        if not gain_adc_per_kev > 0:
            raise ValueError(f"reference gain must be > 0, got {gain_adc_per_kev}")
        self.reference_gain = float(gain_adc_per_kev)
        if self.trend is not None:
            self.trend.set_reference(self.reference_gain)

    def begin_run(self, run_number: int, run_type: str) -> None:
        """Start a run; only runs of type "calibration" are analysed."""
        self.run_number = int(run_number)
        self.active = run_type == CALIBRATION_RUN
        self.points = []
        self._clock = RunClock()
        self._buffer = SliceBuffer()
        self._open_since = None
        self.trend = GainTrend(self.config) if self.active else None
        if self.trend is not None and self.reference_gain is not None:
            self.trend.set_reference(self.reference_gain)

    def on_rows(self, rows: np.ndarray) -> None:
        """Event-table rows as the data path writes them (any batch size)."""
        if not self.active or self.trend is None or not len(rows):
            return
        try:
            events = calibration_events(rows, self._clock.times(rows), self.event_filter)
            mask = np.isfinite(events["energy_adc"])
            if self.config.select:
                mask &= select_xrays(events, self.config.selection)
            self._buffer.add(events, mask)
            closed = self.trend.feed(events)
            self._closed(closed)
            if self.trend.open_counts[0] and (closed or self._open_since is None):
                self._open_since = time.monotonic()
        except Exception:  # the data path must never die of the calibration
            self.errors += 1
            log.exception("calibration feed failed on a batch of %d rows", len(rows))

    def tick(self) -> None:
        """Periodic call: with ``slice_minutes`` set, closes a slice open that long on the host
        clock (no later event arrived to close it: the rate dropped)."""
        trend = self.trend
        if not self.active or trend is None or not math.isfinite(self.config.slice_minutes):
            return
        since = self._open_since
        if since is not None and time.monotonic() - since >= 60.0 * self.config.slice_minutes:
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

    def _closed(self, points: list[TrendPoint]) -> None:
        if points:
            self._open_since = None
        for p in points:
            xrays = self._buffer.take(p.n_events)
            self.points.append(p)
            if self.reference_gain is None and self.trend.reference_gain is not None:
                self.reference_gain = self.trend.reference_gain
            self.publish(p, xrays["energy_adc"])

    def publish(self, point: TrendPoint, energies: np.ndarray) -> bool:
        """One ``calib`` message: the trend point and the slice's spectrum (never blocks)."""
        if self.publisher is None:
            return False
        cfg = self.config
        counts, edges = np.histogram(energies, bins=cfg.n_bins, range=(0.0, cfg.adc_max))
        spectral = point.threshold_kev_spectrum
        header = {
            "run_number": self.run_number,
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
            "reference_gain": self.trend.reference_gain if self.trend is not None else None,
            "reason": point.reason,
        }
        sent = self.publisher.publish(
            TOPIC, json_safe(header), {"spectrum": counts.astype(np.int64), "edges": edges}
        )
        self.published += int(sent)
        return sent
