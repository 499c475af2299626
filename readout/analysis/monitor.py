"""What the DAQ puts on the monitoring stream from its data path (docs/STREAM.md).

Per processed batch a ``summary`` (feature arrays, rate-limited), now and then one full ``event``
(pedestal-subtracted waveforms), and every ``hist_interval_s`` the accumulated ``hist`` of the run
(hitmap of X-ray-like centroids, strip occupancy, energy spectrum). Publishing never blocks.
"""

from __future__ import annotations

import time

import numpy as np

from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.calibration.trend import TrendConfig
from agetdaq.readout.schema import (
    CLASS_NAMES,
    NOT_PROCESSED,
    SUMMARY_FIELDS,
    EventClass,
    summary_arrays,
)
from agetdaq.readout.transport.stream import Publisher

N_STRIPS_AXIS = 120
PITCH_MM = 0.5
SPECTRUM_BINS = 512
SPECTRUM_MAX_ADC = 8192.0


class RunHistograms:
    """Accumulated monitoring histograms of one run."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hitmap = np.zeros((N_STRIPS_AXIS, N_STRIPS_AXIS), np.float32)
        self.occupancy = np.zeros(2 * N_STRIPS_AXIS, np.float32)
        self.spectrum = np.zeros(SPECTRUM_BINS, np.float32)
        self.class_counts = np.zeros(len(CLASS_NAMES), np.int64)

    def add(self, rows: np.ndarray, hit: np.ndarray | None) -> None:
        processed = rows[(rows["build_flags"] & NOT_PROCESSED) == 0]
        if not len(processed):
            return
        cls = processed["cls"].astype(np.int64)
        self.class_counts += np.bincount(np.clip(cls, 0, 3), minlength=4)[:4]
        xray = processed[cls == EventClass.XRAY]
        if len(xray):
            ix = np.floor(xray["x_mm"] / PITCH_MM + N_STRIPS_AXIS / 2).astype(np.int64)
            iy = np.floor(xray["y_mm"] / PITCH_MM + N_STRIPS_AXIS / 2).astype(np.int64)
            ok = (ix >= 0) & (ix < N_STRIPS_AXIS) & (iy >= 0) & (iy < N_STRIPS_AXIS)
            np.add.at(self.hitmap, (ix[ok], iy[ok]), 1.0)
            e = xray["energy"].astype(np.float64)
            bins = np.floor(e / SPECTRUM_MAX_ADC * SPECTRUM_BINS).astype(np.int64)
            bins = bins[(bins >= 0) & (bins < SPECTRUM_BINS)]
            np.add.at(self.spectrum, bins, 1.0)
        if hit is not None and len(hit):
            self.occupancy += hit.sum(axis=0, dtype=np.float32)


class MonitorFeed:
    """Rate-limited publishing of summaries, sampled events and run histograms."""

    def __init__(
        self,
        publisher: Publisher | None,
        summary_rate_hz: float = 10.0,
        event_rate_hz: float = 5.0,
        hist_interval_s: float = 1.0,
        calib_threshold_adc: float | None = None,
    ) -> None:
        self.publisher = publisher
        self.calib = CalibFeed(publisher, TrendConfig(threshold_adc=calib_threshold_adc))
        self.summary_period = 1.0 / summary_rate_hz if summary_rate_hz > 0 else float("inf")
        self.event_period = 1.0 / event_rate_hz if event_rate_hz > 0 else float("inf")
        self.hist_interval = hist_interval_s
        self.hist = RunHistograms()
        self.run_number = 0
        self._pending: list[np.ndarray] = []
        self._last_summary = 0.0
        self._last_event = 0.0
        self._last_hist = 0.0

    def begin_run(self, run_number: int, run_type: str = "") -> None:
        self.run_number = run_number
        self.hist.reset()
        self._pending.clear()
        self.calib.begin_run(run_number, run_type)

    def end_run(self) -> None:
        self.calib.close_run()
        self.tick()

    def wants_event(self) -> bool:
        """True when the next batch should carry waveforms for a sampled ``event`` message."""
        return self.publisher is not None and (
            time.monotonic() - self._last_event >= self.event_period
        )

    def on_batch(
        self,
        rows: np.ndarray,
        hit: np.ndarray | None,
        waveforms: np.ndarray | None,
        t0_ns: int,
    ) -> None:
        """Account a batch; ``waveforms`` (n, 240, T) corrected, may be None."""
        self.hist.add(rows, hit)
        self.calib.on_rows(rows)
        if self.publisher is None:
            return
        self._pending.append(rows)
        now = time.monotonic()
        if now - self._last_summary >= self.summary_period:
            self._publish_summary(t0_ns)
            self._last_summary = now
        if waveforms is not None and len(rows) and now - self._last_event >= self.event_period:
            self._publish_event(rows, hit, waveforms)
            self._last_event = now

    def tick(self) -> None:
        """Periodic work with or without data: flush summaries and publish histograms."""
        self.calib.tick()
        if self.publisher is None:
            return
        now = time.monotonic()
        if self._pending and now - self._last_summary >= self.summary_period:
            self._publish_summary(0)
            self._last_summary = now
        if now - self._last_hist >= self.hist_interval:
            self.publish_hist()
            self._last_hist = now

    def _publish_summary(self, t0_ns: int) -> None:
        rows = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        rows = rows[(rows["build_flags"] & NOT_PROCESSED) == 0]
        arrays = summary_arrays(rows)
        self.publisher.publish("summary", {"run_number": self.run_number, "n": len(rows)}, arrays)

    def _publish_event(self, rows: np.ndarray, hit: np.ndarray | None, wf: np.ndarray) -> None:
        processed = np.flatnonzero((rows["build_flags"] & NOT_PROCESSED) == 0)
        if not len(processed) or len(wf) == 0:
            return
        trig = processed[rows["trig"][processed]]
        i = int(trig[-1] if len(trig) else processed[-1])
        i = min(i, len(wf) - 1)
        row = rows[i]
        header = {
            "run_number": self.run_number,
            "event_id": int(row["event_id"]),
            "event_count": int(row["event_count"]),
            "timestamp": int(row["timestamp"]),
            "class": int(row["cls"]),
        }
        header.update({k: row[f].item() for k, f in SUMMARY_FIELDS.items() if k not in header})
        arrays = {"waveforms": np.ascontiguousarray(wf[i], dtype=np.float32)}
        if hit is not None:
            arrays["hits"] = np.ascontiguousarray(hit[i])
        self.publisher.publish("event", header, arrays)

    def publish_hist(self) -> None:
        if self.publisher is None:
            return
        h = self.hist
        self.publisher.publish(
            "hist",
            {
                "run_number": self.run_number,
                "spectrum_max_adc": SPECTRUM_MAX_ADC,
                "class_counts": dict(zip(CLASS_NAMES, h.class_counts.tolist())),
            },
            {"hitmap": h.hitmap, "occupancy": h.occupancy, "spectrum": h.spectrum},
        )

    def publish_pedestals(self, run_number: int, table: np.ndarray, k_sigma: float) -> None:
        """Per-channel pedestal table (schema.PEDESTAL_DTYPE) on the stream."""
        if self.publisher is None:
            return
        arrays = {name: np.ascontiguousarray(table[name]) for name in table.dtype.names}
        self.publisher.publish("pedestal", {"run_number": run_number, "k_sigma": k_sigma}, arrays)
