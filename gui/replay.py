"""Replay of a recorded run through the monitor: the DAQ's own monitor feed over the file.

The events table, paced at ``speed`` x the recorded host time (``speed <= 0``: as fast as the GUI
takes them), goes through the DAQ's MonitorFeed (agetdaq.readout.analysis.monitor: summaries,
sampled events, run histograms and, for calibration runs, the 55Fe feed) with the hits the file
recorded; the feed publishes on an in-process sink (agetdaq.readout.analysis.sink.LocalSink) that
hands each message to the GUI like the live stream: live and replay show the same numbers from
the same code. The replay adds only what the file cannot say by itself: a sampled event carries
its recorded samples (raw ADC; events the DAQ did not process online marked so), and once per
second of run time a ``status`` made of the DAQ's newest recorded status snapshot (losses,
rates, throughput), the run's metadata, the events replayed so far and the feed's class counts.

File reads happen in the worker thread only (gui/recorded.py). With ``loop`` the file is replayed
again and again as one endless run: each pass continues the clock (times shifted by the recorded
span plus LOOP_GAP_S), the message numbering and the run's histograms (soak tests).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agetdaq.gui.recorded import RecordedRun, RunFileError
from agetdaq.gui.worker import SourceWorker
from agetdaq.readout.analysis.monitor import MonitorFeed, processed
from agetdaq.readout.analysis.sink import LocalSink
from agetdaq.readout.schema import CLASS_NAMES, TOPIC_STATUS
from agetdaq.readout.transport.stream import Message

BLOCK_ROWS = 4096
TICK_S = 0.05
LOOP_GAP_S = 1.0  # run time between the last event of one pass and the first of the next
# fields of the DAQ's recorded status snapshots that a replayed status shows
STATUS_KEYS = ("losses", "mb_per_s", "bytes", "queue_fill", "dead_time", "board", "file_mb",
               "trigger_rate", "events_per_s", "board_alive")  # fmt: skip


class ReplayFeed:
    """The DAQ's MonitorFeed run over a RecordedRun; every message goes to ``deliver`` (no Qt)."""

    def __init__(
        self, run: RecordedRun, deliver: Callable[[Message], None], event_rate_hz: float = 5.0
    ) -> None:
        self.run = run
        self.now = 0.0  # header time of the next message: recorded unix time (+ loop offset)
        self.sink = LocalSink(deliver, run.source, clock=lambda: self.now)
        self.feed = MonitorFeed(
            self.sink, event_rate_hz=event_rate_hz, calib_threshold_adc=run.threshold_adc,
            mapping=run.mapping, calib_settings=run.calib_settings,
        )  # fmt: skip
        self.delivered = 0  # event rows fed, over every pass
        snapshots = run.status_snapshots()
        self._snap_t = [t for t, _ in snapshots]
        self._snaps = [d for _, d in snapshots]

    def begin(self, t: float) -> None:
        """Start the run (and send its pedestal table, as the DAQ does at run start)."""
        self.now = t
        run = self.run
        # the run's readout as the DAQ's status recorded it: its gain reference belongs to it
        scripts = [d.get("script") for d in self._snaps]
        self.feed.calib.use_readout(next((x for x in scripts if isinstance(x, str) and x), ""))
        self.feed.begin_run(run.run_number, run.run_type)
        peds = run.pedestals()
        if peds is not None and len(peds):
            self.feed.publish_pedestals(run.run_number, peds, None)

    def rows(self, start: int, rows: np.ndarray, offset: float = 0.0) -> None:
        """Feed event rows ``start .. start + len(rows)`` (in order); ``offset`` s is added to
        their host times (later passes of a loop)."""
        if not len(rows):
            return
        if offset:
            rows = rows.copy()
            rows["time_ns"] += np.uint64(round(offset * 1e9))
        ch = self.run.channels(start + len(rows))
        self.now = float(rows["time_ns"][-1]) / 1e9
        self.feed.on_batch(rows, self.run.hits(start, len(rows), ch), None)
        self.delivered += len(rows)
        if self.feed.wants_event():
            self._sample(start, rows, ch)

    def _sample(self, start: int, rows: np.ndarray, ch: np.ndarray) -> None:
        """A sampled event: the one the DAQ would choose, or (none processed online) the newest,
        with the samples the file recorded."""
        i = self.feed.sampled_row(rows)
        if i is None:
            i = len(rows) - 1
        row = rows[i]
        done = bool(processed(rows[i : i + 1])[0])
        got = self.run.samples(start + i, int(row["build_flags"]), done, ch)
        if got is not None:
            self.feed.publish_event(row, got[0], got[1], samples="recorded")

    def tick(self) -> None:
        self.feed.tick()

    def flush(self) -> None:
        self.feed.flush()

    def end(self) -> None:
        self.feed.end_run()

    def status(self, t: float, recorded_t: float, **fields: object) -> None:
        """One ``status`` at time ``t`` (the recorded time ``recorded_t`` of this pass)."""
        self.now = t
        k = bisect.bisect_right(self._snap_t, recorded_t)
        snap = self._snaps[k - 1] if k else {}
        run = self.run
        st: dict[str, object] = {key: snap[key] for key in STATUS_KEYS if key in snap}
        st.setdefault("board_alive", True)
        st.update(
            run_number=run.run_number, run_type=run.run_type,
            comment=run.meta.get("comment", ""), start_time=run.meta.get("start_time", ""),
            file=str(run.path), replay=True, events=self.delivered,
            class_counts=dict(zip(CLASS_NAMES, self.feed.hist.class_counts.tolist())),
        )  # fmt: skip
        st.update(fields)
        self.sink.publish(TOPIC_STATUS, st)


class ReplayWorker(SourceWorker):
    """Reads a run file in its own thread and emits it like the live stream."""

    def __init__(
        self,
        path: str | Path,
        speed: float = 1.0,
        event_rate_hz: float = 5.0,
        batch_s: float = 0.05,
        max_backlog: int = 4,
        loop: bool = False,
    ) -> None:
        super().__init__(f"replay:{path}", batch_s, max_backlog)
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.passes = 0  # completed passes over the file
        self.event_rate_hz = event_rate_hz
        self.info.state = "replay"

    def run(self) -> None:
        try:
            run = RecordedRun(self.path)
        except RunFileError as exc:
            self.info.state, self.info.note = "error", str(exc)
            self._emit_link(time.monotonic(), force=True)
            return
        try:
            self._replay(run)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self.info.state, self.info.note = "error", f"replay failed: {exc}"
        finally:
            run.close()
            self._maybe_emit(time.monotonic(), force=True)
            self._emit_link(time.monotonic(), force=True)

    def _replay(self, run: RecordedRun) -> None:
        feed = ReplayFeed(run, lambda msg: self._accept(msg, time.monotonic()), self.event_rate_hz)
        n_total = run.n_events
        first = run.rows(0, 1)
        t0 = _time(first[0]) if len(first) else time.time()
        t_last = _time(run.rows(n_total - 1, n_total)[0]) if n_total else t0
        span = max(t_last - t0, 0.0) + LOOP_GAP_S  # clock shift of one pass (loop)
        offset = 0.0  # added to recorded times in this pass
        feed.begin(t0)
        cursor, next_status, t_seen = 0, t0, t0
        wall0 = time.monotonic()
        block = run.rows(0, 0)
        block_start = 0
        while not self._stop:
            now = time.monotonic()
            if self.backlog >= self.max_backlog:
                self._emit_link(now)
                time.sleep(0.01)
                continue
            target = t0 + self.speed * (now - wall0) - offset if self.speed > 0 else float("inf")
            if cursor >= block_start + len(block) and cursor < n_total:
                block_start, block = cursor, run.rows(cursor, min(cursor + BLOCK_ROWS, n_total))
            rows = block[cursor - block_start :]
            times = rows["time_ns"] / 1e9
            take = int(np.searchsorted(times, target, side="right"))
            if take:
                t_seen = float(times[take - 1])
            t_now = offset + (t_seen if take or not math.isfinite(target) else target)
            feed.rows(cursor, rows[:take], offset)
            cursor += take
            feed.tick()
            wrap = self.loop and n_total > 0 and cursor >= n_total
            finished = cursor >= n_total and not wrap
            if wrap:  # the pass's rows are all in its summaries and histograms
                feed.flush()
            if finished:
                feed.end()
                t_now = max(min(t_now, offset + t_last), next_status)
            while next_status <= t_now:
                pass_text = f" (pass {self.passes + 1})" if self.loop else ""
                feed.status(
                    next_status, next_status - offset, state="idle" if finished else "running",
                    elapsed_s=next_status - t0, replay_progress=cursor / max(n_total, 1),
                    message="replay finished" if finished else f"replay x{self.speed:g}{pass_text}",
                )  # fmt: skip
                next_status += 1.0
            self._maybe_emit(now, force=finished)
            self._emit_link(now)
            if wrap:  # the next pass continues the clock, the event count and the histograms
                run.rewind()
                self.passes += 1
                offset += span
                cursor, block_start, block = 0, 0, block[:0]
                continue
            if finished:
                self.info.state = "finished"
                return
            if not take or self.speed > 0:
                time.sleep(TICK_S if take == 0 else 0.005)


def _time(row: np.void) -> float:
    """Host time (unix s) of an event row."""
    return int(row["time_ns"]) / 1e9
