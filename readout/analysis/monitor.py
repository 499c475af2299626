"""What the DAQ puts on the monitoring stream from its data path (docs/STREAM.md).

Per processed batch a ``summary`` (feature arrays, rate-limited), now and then one full ``event``
(pedestal-subtracted waveforms), and every ``hist_interval_s`` the accumulated ``hist`` of the run
(hitmap of X-ray-like centroids binned on the strips of the mapping, strip occupancy, energy
spectrum, class counts); the 55Fe analysis of calibration runs (``calib``) is its CalibFeed's.
The one producer of these messages: the DAQ runs it on its data path with a ZeroMQ Publisher as
the sink, the GUI's replay runs it over a run file's rows with an in-process sink
(agetdaq.readout.analysis.sink), and the GUI's synthetic source over made-up rows. Publishing never
blocks.
"""

from __future__ import annotations

import time

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.calibfeed import CalibFeed, CalibFeedSettings
from agetdaq.readout.analysis.geometry import StripGeometry, strip_edges
from agetdaq.readout.analysis.sink import MessageSink
from agetdaq.readout.schema import (
    CLASS_NAMES,
    NOT_PROCESSED,
    SUMMARY_FIELDS,
    TOPIC_EVENT,
    TOPIC_HIST,
    TOPIC_PEDESTAL,
    TOPIC_SUMMARY,
    EventClass,
)
from agetdaq.readout.schema import summary_arrays as schema_summary_arrays

__all__ = ["MonitorFeed", "RunHistograms", "StripGeometry", "processed", "strip_edges",
           "summary_arrays"]  # fmt: skip

SPECTRUM_BINS = 512
SPECTRUM_MAX_ADC = 8192.0


def processed(rows: np.ndarray) -> np.ndarray:
    """bool per event row: its features were computed online."""
    return (rows["build_flags"] & NOT_PROCESSED) == 0


def summary_arrays(rows: np.ndarray) -> dict[str, np.ndarray]:
    """The ``summary`` arrays (schema names, docs/STREAM.md) of event rows, the processed ones."""
    return schema_summary_arrays(rows[processed(rows)])


class RunHistograms:
    """Accumulated monitoring histograms of one run. The occupancy counts the hit strips of the
    events the software trigger kept (those a run file records in store mode ``hits``)."""

    def __init__(self, geometry: StripGeometry | None = None) -> None:
        self.geometry = geometry or StripGeometry.from_mapping(StripMapping.default())
        self.reset()

    def reset(self) -> None:
        g = self.geometry
        self.hitmap = np.zeros(g.shape, np.float32)
        self.occupancy = np.zeros(g.n_strips, np.float32)
        self.spectrum = np.zeros(SPECTRUM_BINS, np.float32)
        self.class_counts = np.zeros(len(CLASS_NAMES), np.int64)
        self.events = 0  # event rows seen
        self.not_processed = 0  # of them, not processed online
        self.occupancy_events = 0  # events whose hits the occupancy counts
        self.outside = 0  # X-ray-like centroids off the hitmap (or not finite)

    def add(self, rows: np.ndarray, hit: np.ndarray | None) -> None:
        done = processed(rows)
        self.events += len(rows)
        self.not_processed += int(len(rows) - np.count_nonzero(done))
        rows_done = rows[done]
        if not len(rows_done):
            return
        cls = rows_done["cls"].astype(np.int64)
        self.class_counts += np.bincount(np.clip(cls, 0, 3), minlength=4)[:4]
        xray = rows_done[cls == EventClass.XRAY]
        if len(xray):
            self._fill_hitmap(xray["x_mm"], xray["y_mm"])
            e = xray["energy"].astype(np.float64)
            bins = np.floor(e / SPECTRUM_MAX_ADC * SPECTRUM_BINS).astype(np.int64)
            bins = bins[(bins >= 0) & (bins < SPECTRUM_BINS)]
            np.add.at(self.spectrum, bins, 1.0)
        if hit is not None and len(hit):
            kept = done & rows["trig"].astype(bool)
            self.occupancy += hit[kept].sum(axis=0, dtype=np.float32)
            self.occupancy_events += int(np.count_nonzero(kept))

    def _fill_hitmap(self, x_mm: np.ndarray, y_mm: np.ndarray) -> None:
        g = self.geometry
        nx, ny = self.hitmap.shape
        x = np.asarray(x_mm, np.float64)
        y = np.asarray(y_mm, np.float64)
        ix = np.searchsorted(g.x_edges, x, side="right") - 1
        iy = np.searchsorted(g.y_edges, y, side="right") - 1
        ok = np.isfinite(x) & np.isfinite(y) & (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        self.outside += int(len(x) - np.count_nonzero(ok))
        np.add.at(self.hitmap, (ix[ok], iy[ok]), 1.0)  # a batch holds few: no full-map pass


class MonitorFeed:
    """Rate-limited publishing of summaries, sampled events and run histograms."""

    def __init__(
        self,
        sink: MessageSink | None,
        summary_rate_hz: float = 10.0,
        event_rate_hz: float = 5.0,
        hist_interval_s: float = 1.0,
        calib_threshold_adc: float | None = None,
        *,
        mapping: StripMapping | None = None,
        calib: CalibFeed | None = None,
        calib_settings: CalibFeedSettings | None = None,
    ) -> None:
        self.sink = sink
        geometry = StripGeometry.from_mapping(mapping or StripMapping.default())
        self.calib = calib or CalibFeed.from_settings(
            sink, calib_settings or CalibFeedSettings(), calib_threshold_adc, geometry.area_mm
        )
        self.summary_period = 1.0 / summary_rate_hz if summary_rate_hz > 0 else float("inf")
        self.event_period = 1.0 / event_rate_hz if event_rate_hz > 0 else float("inf")
        self.hist_interval = hist_interval_s
        self.hist = RunHistograms(geometry)
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
        """The run's last calibration slice, then its last summary and its final histograms."""
        self.calib.close_run()
        self.flush()

    def wants_event(self) -> bool:
        """True when the next batch should carry waveforms for a sampled ``event`` message."""
        return self.sink is not None and (time.monotonic() - self._last_event >= self.event_period)

    def on_batch(
        self,
        rows: np.ndarray,
        hit: np.ndarray | None,
        waveforms: np.ndarray | None,
        t0_ns: int = 0,
    ) -> None:
        """Account a batch of event rows; ``hit`` (n, n_strips) and ``waveforms`` (n, n_strips,
        T, corrected) of its processed events, either may be None."""
        self.hist.add(rows, hit)
        self.calib.on_rows(rows)
        if self.sink is None:
            return
        self._pending.append(rows)
        now = time.monotonic()
        if now - self._last_summary >= self.summary_period:
            self._publish_summary()
            self._last_summary = now
        if waveforms is not None and len(rows) and now - self._last_event >= self.event_period:
            i = self.sampled_row(rows)
            if i is not None and len(waveforms):
                i = min(i, len(waveforms) - 1)
                self.publish_event(rows[i], waveforms[i], None if hit is None else hit[i])

    def tick(self) -> None:
        """Periodic work with or without data: flush summaries and publish histograms."""
        self.calib.tick()
        if self.sink is None:
            return
        now = time.monotonic()
        if self._pending and now - self._last_summary >= self.summary_period:
            self._publish_summary()
            self._last_summary = now
        if now - self._last_hist >= self.hist_interval:
            self.publish_hist()

    def flush(self) -> None:
        """Publish the pending summary rows and the histograms now."""
        if self.sink is None:
            return
        if self._pending:
            self._publish_summary()
            self._last_summary = time.monotonic()
        self.publish_hist()

    def sampled_row(self, rows: np.ndarray) -> int | None:
        """The row of a batch that a sampled ``event`` shows: the last processed event the
        software trigger kept, else the last processed one; None when none was processed."""
        done = np.flatnonzero(processed(rows))
        if not len(done):
            return None
        kept = done[rows["trig"][done].astype(bool)]
        return int(kept[-1] if len(kept) else done[-1])

    def _publish_summary(self) -> None:
        rows = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        arrays = summary_arrays(rows)
        n = len(arrays["event_id"])
        self.sink.publish(TOPIC_SUMMARY, {"run_number": self.run_number, "n": n}, arrays)

    def publish_event(
        self,
        row: np.void,
        waveforms: np.ndarray,
        hits: np.ndarray | None,
        samples: str = "corrected",
    ) -> bool:
        """One ``event`` message: the row's header and features, its waveforms (n_strips, T)
        and hit strips. ``samples``: "corrected" (pedestal and common mode subtracted online)
        or "recorded" (the raw ADC the run file holds)."""
        if self.sink is None:
            return False
        self._last_event = time.monotonic()
        header = {
            "run_number": self.run_number,
            "event_id": int(row["event_id"]),
            "event_count": int(row["event_count"]),
            "timestamp": int(row["timestamp"]),
            "time_s": int(row["time_ns"]) / 1e9,
            "processed": bool(processed(np.asarray(row).reshape(1))[0]),
            "samples": samples,
        }
        header.update({k: row[f].item() for k, f in SUMMARY_FIELDS.items() if k not in header})
        arrays = {"waveforms": np.ascontiguousarray(waveforms, dtype=np.float32)}
        if hits is not None:
            arrays["hits"] = np.ascontiguousarray(hits, dtype=bool)
        return self.sink.publish(TOPIC_EVENT, header, arrays)

    def publish_hist(self) -> None:
        if self.sink is None:
            return
        self._last_hist = time.monotonic()
        h = self.hist
        g = h.geometry
        self.sink.publish(
            TOPIC_HIST,
            {
                "run_number": self.run_number,
                "spectrum_max_adc": SPECTRUM_MAX_ADC,
                "class_counts": dict(zip(CLASS_NAMES, h.class_counts.tolist())),
                "events": h.events,
                "not_processed": h.not_processed,
                "occupancy_events": h.occupancy_events,
                "outside": h.outside,
            },
            {"hitmap": h.hitmap, "occupancy": h.occupancy, "spectrum": h.spectrum,
             "x_edges_mm": g.x_edges, "y_edges_mm": g.y_edges},
        )  # fmt: skip

    def publish_pedestals(self, run_number: int, table: np.ndarray, k_sigma: float | None) -> None:
        """Per-channel pedestal table (schema.PEDESTAL_DTYPE) on the stream."""
        if self.sink is None:
            return
        arrays = {name: np.ascontiguousarray(table[name]) for name in table.dtype.names}
        self.sink.publish(TOPIC_PEDESTAL, {"run_number": run_number, "k_sigma": k_sigma}, arrays)
