"""The acquisition's status: counters, losses, rates; published to the stream, the metrics and the
run file.

:class:`StatusReporter` keeps the rate reference and the time of the last report; what the run
state machine knows (state, message, run, masks, writer, script, pedestal table) it is told at
each report (:class:`EngineView`). It also reads the run log of the data directory
(:class:`RunList`): the status names the run that ended last and a run that was killed (started,
never ended: the DAQ died), and a ``run`` message lists the recent runs and the shipped scripts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agetdaq.readout.acquisition.limits import RunInfo, StopConditions
from agetdaq.readout.acquisition.metrics import DaqMetrics
from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.acquisition.supervision import BoardWatch
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.schema import CLASS_NAMES, TOPIC_RUN, TOPIC_STATUS

OTHER_RUNS = ("last_run", "killed_run")  # status fields about other runs
NOT_IN_FILE = (*OTHER_RUNS, "pedestal_upload")  # nor the upload procedure across runs
RUNS_LISTED = 50  # runs of the run log in a ``run`` message
RUN_LIST_PERIOD_S = 10.0  # a ``run`` message at least this often (late subscribers)
# loss kinds that are data lost (the rest: late or duplicate datagrams, which are not lost)
DATA_LOST = {
    "socket": ("kernel_drops", "ring_full", "malformed"),
    "link": ("lost_datagrams",),
    "builder": ("missing_events", "damaged"),
    "writer": ("errors",),
}


@dataclass
class EngineView:
    """What the run state machine tells the reporter."""

    state: str
    message: str
    run: RunInfo
    masked: list[int]
    writer: Any = None  # the open RunWriter, if any
    script: str = ""  # the command script the board was configured with
    pedestals: str = ""  # the pedestal table the processing uses ("" = none)
    pedestal_upload: dict | None = None  # the pedestal upload's phase and last outcome


class RunList:
    """The recent runs of a data directory's run log (``runlog.jsonl``), start and end records
    joined; read again only when the file changed."""

    def __init__(self, data_dir: str | Path) -> None:
        self.log = RunLog(data_dir)
        self._stamp: tuple[int, int] | None = None
        self.runs: list[dict] = []

    def refresh(self) -> bool:
        """Read the log if it changed; True when it did."""
        try:
            st = self.log.path.stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        self.runs = runs_of(self.log.records())
        return True

    def last_ended(self) -> dict:
        return next((r for r in reversed(self.runs) if r["end_time"] is not None), {})

    def killed(self, current: int | None) -> dict:
        """The newest run before ``current`` (the running run, or None) if it never ended."""
        older = [r for r in self.runs if r["run_number"] != current]
        return older[-1] if older and older[-1]["killed"] else {}


def runs_of(records: list[dict]) -> list[dict]:
    """Run entries (schema.RUN_ENTRY_FIELDS) of run-log records, oldest first; a run with a start
    and no end is ``killed`` (the run in progress is told apart by the caller)."""
    runs: dict[int, dict] = {}
    for r in records:
        try:
            number = int(r.get("run", 0))
        except (TypeError, ValueError):
            continue
        if r.get("event") == "start":
            runs[number] = {
                "run_number": number, "run_type": str(r.get("type", "")),
                "comment": str(r.get("comment", "")), "file": str(r.get("file", "")),
                "start_time": r.get("time"), "end_time": None, "elapsed_s": None,
                "events": None, "stop_reason": "", "killed": True,
            }  # fmt: skip
        elif r.get("event") == "end" and number in runs:
            run = runs[number]
            end = r.get("time")
            start = run["start_time"]
            run.update(end_time=end, events=r.get("events"), stop_reason=str(r.get("reason", "")),
                       killed=False)  # fmt: skip
            if isinstance(end, (int, float)) and isinstance(start, (int, float)):
                run["elapsed_s"] = end - start
    return [runs[n] for n in sorted(runs)]


def data_lost(losses: dict[str, dict[str, int]]) -> int:
    """Events or datagrams lost of a ``losses`` tree (not the late or duplicate datagrams)."""
    total = sum(int(v) for v in losses.get("decoder", {}).values())
    for stage, kinds in DATA_LOST.items():
        total += sum(int(losses.get(stage, {}).get(k, 0)) for k in kinds)
    return total


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
        scripts_dir: Path | None = None,
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
        self.run_list = RunList(stops.data_dir)
        self.scripts = sorted(p.stem for p in scripts_dir.glob("*.txt")) if scripts_dir else []
        self._last_run_list = -RUN_LIST_PERIOD_S
        self._listed: list[dict] | None = None
        self._lost_base = 0

    def begin_run(self) -> None:
        """A run started (the data path's counters are new): rates and losses count from now."""
        self._rate_ref = (time.monotonic(), 0, 0)
        self._lost_base = data_lost(self.losses())  # the socket's counters span runs

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
                "rejected_datagrams": seq.get("rejected", 0),  # stale, forged or bad: dropped
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
        open_run = view.state in ("running", "stopping")
        run = view.run
        rx = self.link.receiver
        losses = self.losses()
        self.run_list.refresh()
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
            "losses": losses,
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
            "data_lost": max(0, data_lost(losses) - self._lost_base),
            "not_processed": int(dp.events_shed),  # shed: recorded, not processed online
            "board_restarts": int(dp.restarts),
            "script": view.script,
            "pedestal_table": view.pedestals,
            "last_run": self.run_list.last_ended(),
            "killed_run": self.run_list.killed(run.number if open_run else None),
            "pedestal_upload": view.pedestal_upload or {"phase": "idle"},
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
            self.publisher.publish(TOPIC_STATUS, st)
            self._publish_runs(now)
        if view.writer is not None and view.state == "running":
            # the run file keeps this run's status (its rows hold 2 kB of JSON): not other runs
            view.writer.append_status({k: v for k, v in st.items() if k not in NOT_IN_FILE})

    def _publish_runs(self, now: float) -> None:
        """The ``run`` message: when the run log changed (read by ``status``) or now and then."""
        changed = self.run_list.runs is not self._listed
        if not changed and now - self._last_run_list < RUN_LIST_PERIOD_S:
            return
        self._last_run_list = now
        self._listed = self.run_list.runs
        runs = self.run_list.runs[-RUNS_LISTED:]
        self.publisher.publish(TOPIC_RUN, {"runs": runs, "scripts": self.scripts})
