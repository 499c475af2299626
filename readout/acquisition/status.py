"""The acquisition's status: counters, losses, rates; published to the stream, the metrics and the
run file.

:class:`StatusReporter` keeps the rate reference and the time of the last report; what the run
state machine knows (state, message, run, masks, writer) it is told at each report
(:class:`EngineView`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agetdaq.readout.acquisition.limits import RunInfo, StopConditions
from agetdaq.readout.acquisition.metrics import DaqMetrics
from agetdaq.readout.acquisition.supervision import BoardWatch
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.schema import CLASS_NAMES


@dataclass
class EngineView:
    """What the run state machine tells the reporter."""

    state: str
    message: str
    run: RunInfo
    masked: list[int]
    writer: Any = None  # the open RunWriter, if any


class StatusReporter:
    """Counters, losses and the status dict of one acquisition, and where they go."""

    def __init__(
        self,
        link: BoardLink,
        datapath: Any,
        feed: Any,
        watch: BoardWatch,
        stops: StopConditions,
        metrics: DaqMetrics,
        *,
        publisher: Any = None,
        capture: Any = None,
        board: str = "",
        interval_s: float = 1.0,
    ) -> None:
        self.link = link
        self.datapath = datapath
        self.feed = feed
        self.watch = watch
        self.stops = stops
        self.metrics = metrics
        self.publisher = publisher
        self.capture = capture
        self.board = board
        self.interval_s = interval_s
        self._last_status = 0.0
        self._rate_ref = (time.monotonic(), 0, 0)
        self._rates = (0.0, 0.0)

    def begin_run(self) -> None:
        self._rate_ref = (time.monotonic(), 0, 0)

    def counters(self) -> dict:
        dp = self.datapath.counters
        stages = self.datapath.stage_counters()
        return {
            "receiver": self.link.receiver.stats(),
            "credit": {**self.link.credit.counters.as_dict(), "regrants": self.watch.regrants},
            "decoder": dict(dp.decode_errors),
            "builder": stages.get("build", {}),
            "sequence": stages.get("sequence", {}),
            "datapath": {k: v for k, v in dp.__dict__.items() if k != "decode_errors"},
            "stages": stages,
            **({"capture": self.capture.stats()} if self.capture is not None else {}),
            "publisher": {
                "sent": getattr(self.publisher, "sent", 0),
                "dropped": getattr(self.publisher, "dropped", 0),
            },
        }

    def losses(self) -> dict[str, dict[str, int]]:
        rx = self.link.receiver.counters
        dp = self.datapath.counters
        stages = self.datapath.stage_counters()
        b = stages.get("build", {})
        seq = stages.get("sequence", {})
        return {
            "socket": {
                "kernel_drops": int(self.link.receiver.kernel_drops() or 0),
                "ring_full": rx.ring_full_drops,
                "malformed": rx.malformed,
            },
            "link": {
                "lost_datagrams": seq.get("missing", 0),
                "late_datagrams": seq.get("late", 0),
                "duplicate_datagrams": seq.get("duplicates", 0),
            },
            "decoder": dict(dp.decode_errors),
            "builder": {
                "missing_events": b.get("missing", 0) - b.get("late", 0),
                "damaged": b.get("damaged", 0),
                "duplicates": b.get("duplicates", 0),
            },
            "writer": {"errors": dp.writer_errors},
            "stream": {"dropped": getattr(self.publisher, "dropped", 0)},
        }

    def status(self, view: EngineView) -> dict:
        dp = self.datapath.counters
        now = time.monotonic()
        t0, ev0, by0 = self._rate_ref
        if now - t0 >= 1.0:
            dt = now - t0
            self._rates = ((dp.events - ev0) / dt, (dp.bytes - by0) / dt / 1e6)
            self._rate_ref = (now, dp.events, dp.bytes)
        running = view.state == "running"
        run = view.run
        rx = self.link.receiver
        return {
            "state": view.state,
            "run_number": run.number,
            "run_type": run.run_type,
            "comment": run.comment,
            "start_time": run.start_unix,
            "elapsed_s": now - run.start_mono if running else 0.0,
            "events": dp.events,
            "events_per_s": self._rates[0],
            "trigger_rate": self._rates[0],
            "mb_per_s": self._rates[1],
            "bytes": dp.bytes,
            "queue_fill": rx.fill() / rx.n_slots,
            "losses": self.losses(),
            "not_processed": dp.events_shed,  # shed: recorded, not processed online; no loss
            "disk_free_gb": self.stops.free_disk_gb(),
            "file": run.path if running else "",
            "file_mb": (view.writer.file_size() if view.writer else 0) / 1e6,
            "board": self.board,
            "board_alive": self.watch.alive,
            "data_age_s": self.watch.data_age(run.start_mono) if running else 0.0,
            "class_counts": dict(zip(CLASS_NAMES, self.feed.hist.class_counts.tolist())),
            "signals_last_event": dp.last_signals,
            "masked": list(view.masked),
            "message": view.message,
        }

    def publish(self, view: EngineView, force: bool = False) -> None:
        """The status to the metrics, the stream and the open run file (at most once per
        ``interval_s`` unless forced)."""
        now = time.monotonic()
        if not force and now - self._last_status < self.interval_s:
            return
        self._last_status = now
        st = self.status(view)
        self.metrics.update(st)
        if self.publisher is not None:
            self.publisher.publish("status", st)
        if view.writer is not None and view.state == "running":
            view.writer.append_status(st)
