"""The acquisition engine of one BEC: the run state machine (configure / start / stop).

States: idle -> configuring -> configured -> running -> stopping -> configured; any failure goes
to error (a new configure leaves it). ``agetdaq run`` drives it directly, ``agetdaq serve`` from
the control socket. Configure first puts the card in a known state (triggers off, memory drained,
clock and counter cleared). The owner's stop request (``stop``: its signals) cuts every wait
before a run short (:class:`Interrupted`: no run is created). The data path runs in its own
thread; ``poll()`` (called by the owner every ~0.1 s) asks its collaborators, each with a state
of its own:

- :class:`~agetdaq.readout.acquisition.limits.StopConditions`: writer failure, events, time, disk;
- :class:`~agetdaq.readout.acquisition.supervision.BoardWatch`: heartbeat, silence (a board
  silent for ``board_timeout_s`` is lost: the run ends in error), restarts;
- :class:`~agetdaq.readout.acquisition.status.StatusReporter`: status, counters, losses to the
  stream, the metrics and the run file;
- :class:`~agetdaq.readout.acquisition.board_steps.BoardSteps`: configure, stop and drain, restart
  the board's triggers;
- :class:`~agetdaq.readout.acquisition.recorder.RunRecorder`: the run file and the run log;
- :class:`~agetdaq.readout.acquisition.pedestal_use.PedestalUse`: the pedestal table and strip
  masks the processing uses;
- :class:`~agetdaq.readout.acquisition.pedestal_upload.PedestalUpload`: the two-pass pedestal
  upload (``agetdaq pedestal --upload`` and run control's ``pedestal``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.script import Script, parse_script
from agetdaq.readout.acquisition.board_steps import BoardSteps
from agetdaq.readout.acquisition.limits import RunInfo, StopConditions, run_limits_error
from agetdaq.readout.acquisition.memtune import pin_malloc_thresholds
from agetdaq.readout.acquisition.metrics import DaqMetrics
from agetdaq.readout.acquisition.pedestal_upload import Outcome, PedestalUpload
from agetdaq.readout.acquisition.pedestal_use import PedestalUse
from agetdaq.readout.acquisition.recorder import RunRecorder
from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.acquisition.scripts import (
    RUN_TYPE_SCRIPT,
    RUN_TYPE_SCRIPTS,
    SCRIPTS_DIR,
    script_path,
)
from agetdaq.readout.acquisition.settings import Settings, parse_address
from agetdaq.readout.acquisition.status import EngineView, StatusReporter
from agetdaq.readout.acquisition.supervision import BoardWatch
from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.monitor import MonitorFeed, StripGeometry
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.datapath.stage import PipelineError
from agetdaq.readout.datapath.stages.calibration import NoTrend
from agetdaq.readout.datapath.stages.pedestal import OUTPUT as PEDESTAL_TABLE
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.link.errors import BoardError, BoardInterrupted, BoardTimeout
from agetdaq.readout.store.layout import PEDESTALS_OUT
from agetdaq.readout.store.writer import RunWriter, WriterError
from agetdaq.readout.transport.control import RUN_TYPES
from agetdaq.readout.transport.stream import Publisher

log = logging.getLogger(__name__)

WARM_UP_LIMIT_S = 180
STREAM_HWM = 100  # messages queued per subscriber before ZeroMQ drops (a dead GUI costs little)


class EngineError(RuntimeError):
    """A request the engine cannot carry out in its state, or a failed step."""


class Interrupted(EngineError):
    """The owner's stop request came before the run started: no run was created."""


class BoardLost(EngineError):
    """The board does not answer (at configure or start)."""


class Acquisition:
    """The acquisition engine of one BEC (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        publish: str | None = None,
        metrics_port: int | None = None,
        mapping: StripMapping | None = None,
        pcap: str | Path | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        pin_malloc_thresholds()  # a flat resident size over weeks (acquisition/memtune.py)
        self.settings = s = settings
        self.stop_request = stop or threading.Event()  # the owner's: cuts waits before a run
        self.mapping = mapping or (
            StripMapping.load(s.daq.mapping) if s.daq.mapping else StripMapping.default()
        )
        host, port = parse_address(s.daq.bec)
        self.link = BoardLink(
            host, port, timeout=s.daq.board_timeout_s, credit=s.credit, board=s.daq.board_type
        )
        layout = StripLayout.from_mapping(self.mapping, s.daq.rst_len)
        self.processor = Processor(layout, s.processing)
        self.publisher = (
            Publisher(publish, source=s.daq.detector, hwm=STREAM_HWM) if publish else None
        )
        # the 55Fe gain trend of calibration runs: the pipeline's calibration stage drives it, so
        # the monitor feed (which drives its own when the GUI replays a file) gets none
        area = StripGeometry.from_mapping(self.mapping).area_mm
        threshold = s.processing.trigger.energy_min or None
        self.calib = CalibFeed.from_settings(self.publisher, s.calibration, threshold, area)
        self.feed = MonitorFeed(
            self.publisher,
            s.stream.summary_rate_hz,
            s.stream.event_rate_hz,
            1.0,
            mapping=self.mapping,
            calib=NoTrend(),
        )
        try:
            self.datapath = DataPath(
                self.link.receiver,
                self.processor,
                self.feed,
                batch=s.daq.batch,
                store_waveforms=s.daq.store_waveforms,
                shed_fill=s.daq.shed_fill,
                calib=self.calib,
                stages=s.pipeline.stages,
                options=s.pipeline.options,
            )
        except PipelineError:
            self.link.close()
            if self.publisher is not None:
                self.publisher.close()
            raise
        self.data_dir = Path(s.daq.data_dir)
        self.runlog = RunLog(self.data_dir)
        identity = {"detector": s.daq.detector, "board": s.daq.bec, "config": s.source,
                    "mapping": self.mapping.to_text()}  # fmt: skip
        self.recorder = RunRecorder(self.runlog, s.writer, identity)
        self.metrics = DaqMetrics(str(self.data_dir), detector=s.daq.detector, board=s.daq.bec)
        http_port = s.daq.metrics_port if metrics_port is None else metrics_port
        if http_port:  # `port` stays the board's: the capture tap below names it
            self.metrics.start(http_port, s.daq.metrics_bind)
        self.board = BoardSteps(self.link, s.daq.bec, s.daq.board_timeout_s)
        self.stops = StopConditions(self.data_dir, s.daq.disk_stop_gb)
        self.watch = BoardWatch(
            self.link, self.datapath, s.daq.bec, s.daq.heartbeat_s, s.daq.board_timeout_s
        )
        self.state = "idle"
        self.message = ""
        self.script: Script | None = None
        self.script_name = ""
        self.script_chosen = False  # the script was chosen by start_run for a run type
        self.script_text = ""
        self.run = RunInfo()
        self.pedestals = PedestalUse(
            self.processor, self.feed, self.mapping, s.processing.k_hit, s.daq.rst_len
        )
        self.pedestals.load_in_force(self.data_dir)  # the board's table, if this dir has one
        self.uploads = PedestalUpload(self)
        self.gain_reference: float | None = None
        self.capture = (
            None  # agetdaq.readout.link.pcap_tap.PcapTap: the board traffic, both directions
        )
        if pcap is not None:
            from agetdaq.readout.link.pcap_tap import PcapTap

            try:
                self.capture = PcapTap(pcap, (host, port), self.link.local_address)
            except (OSError, ValueError):
                self.link.close()
                raise
            self.link.set_tap(self.capture)
        self.reporter = StatusReporter(
            self.link,
            self.datapath,
            self.feed,
            self.watch,
            self.stops,
            self.metrics,
            publisher=self.publisher,
            capture=self.capture,
            board=s.daq.bec,
            interval_s=s.daq.status_interval_s,
            scripts_dir=SCRIPTS_DIR,
        )
        self.link.start()
        self.datapath.start()

    # ---- configuration ----------------------------------------------------------------------

    def configure(self, script: str | Path | None = None, root: Path | None = None) -> None:
        """Put the card in a known state, then send a command script's board steps (client
        ``DAQ`` steps are left to start_run). ``root``: the script and every file it execs must
        lie inside it (a script named over run control)."""
        if self.state in ("running", "stopping"):
            raise EngineError(f"cannot configure while {self.state}")
        name = str(script or "run")
        path = script_path(name)
        parsed = parse_script(path, root=root)  # a bad script is refused before anything is sent
        self.state = "configuring"
        self._publish_status(force=True)
        try:
            self.board.configure(parsed, self.stop_request)
        except BoardInterrupted as exc:
            self.state, self.message = "idle", f"configuration with {path.name} interrupted"
            log.warning("%s: %s", self.message, exc)
            self._publish_status(force=True)
            raise Interrupted(f"{self.message}; no run started") from exc
        except BoardError as exc:
            self._error(f"configuration with {path.name} failed: {exc}")
            raise (BoardLost if isinstance(exc, BoardTimeout) else EngineError)(
                self.message
            ) from exc
        self.script, self.script_name = parsed, name
        self.script_chosen = False
        self.script_text = path.read_text()
        self.state = "configured"
        self.message = f"configured with {path.name}"
        log.info(self.message)

    @property
    def writer(self) -> RunWriter | None:
        """The run file being written (None between runs)."""
        return self.recorder.writer

    @property
    def abandoned(self) -> list[RunWriter]:
        """Writers of files HDF5 could not close (:class:`RunRecorder`)."""
        return self.recorder.abandoned

    @property
    def pedestal_rows(self) -> np.ndarray | None:
        """The per-channel pedestal table in use (None before any)."""
        return self.pedestals.rows

    @property
    def masked(self) -> set[int]:
        return self.pedestals.masked

    def load_pedestals(self, rows: np.ndarray) -> None:
        """Use a per-channel pedestal table (PEDESTAL_DTYPE rows) for the processing."""
        self.pedestals.load(rows, self.run.number)

    def upload_pedestals(
        self,
        output: str | Path | None = None,
        events: int | None = None,
        seconds: float | None = None,
        k_sigma: float = 5.0,
        drive: Callable[[], None] | None = None,
    ) -> Outcome:
        """Raw pedestal run, upload of ped/thr, pedestal run with the card's equalisation on:
        its table is then in force (acquisition/pedestal_upload.py). Refused while a run is open.
        ``drive``: drives each pass to its end (default: poll, stop on ``uploads.cancel()``)."""
        if self.state in ("running", "stopping"):
            raise EngineError(f"cannot upload pedestals while a run is {self.state}: stop it first")
        refused = run_limits_error(events, seconds)
        if refused:
            raise EngineError(refused)
        return self.uploads.upload(output, events, seconds, k_sigma, drive)

    def set_masked(self, strips: list[int], masked: bool = True) -> None:
        """Masked strips give no hits (like noisy ones) from the next batch on."""
        self.pedestals.set_masked(strips, masked, self.run.number)

    # ---- runs -------------------------------------------------------------------------------

    def start_run(
        self,
        run_type: str = "background",
        comment: str = "",
        output: str | Path | None = None,
        events: int | None = None,
        seconds: float | None = None,
    ) -> RunInfo:
        if run_type not in RUN_TYPES:
            raise EngineError(f"unknown run type {run_type!r}; choose one of {RUN_TYPES}")
        if self.state == "running":
            raise EngineError("a run is already running")
        refused = run_limits_error(events, seconds)
        if refused:
            raise EngineError(refused)
        wanted = RUN_TYPE_SCRIPT[run_type]
        # a script the operator configured stays (a pedestal run needs every channel whole: it
        # takes pedestal_data over another run type's script); one start_run chose changes
        other = self.script_name in RUN_TYPE_SCRIPTS and self.script_name != wanted
        if self.state != "configured" or (other and (self.script_chosen or run_type == "pedestal")):
            self.configure(wanted)
            self.script_chosen = True
        self._wait_warm()
        try:
            self.board.restart_triggers(self.script_text)
        except BoardError as exc:
            self._error(f"run start failed: {exc}")
            raise EngineError(self.message) from exc
        number, path = self.recorder.allocate(run_type, output)
        self.stops.watch(path)  # the disk guard watches the run file's filesystem
        self.run = RunInfo(
            number, run_type, comment, str(path), time.time(), time.monotonic(), events, seconds
        )
        try:
            writer = self.recorder.open(self.run, self.script_text, self.pedestal_rows)
        except WriterError as exc:
            self._error(str(exc))
            raise EngineError(str(exc)) from exc
        self.calib.use_readout(self.script_name)  # its gain reference belongs to the script
        seq_window = self.link.credit.sequence_window()
        self.datapath.begin_run(writer, number, run_type, seq_window=seq_window, max_events=events)
        self.link.start_data()
        self.state = "running"
        self.message = f"run {number} ({run_type}) started"
        self.watch.begin_run()
        self.reporter.begin_run()
        log.info("%s -> %s", self.message, path)
        self._publish_status(force=True)
        return self.run

    def stop_run(self, reason: str = "stop requested", *, board_lost: bool = False) -> dict:
        """Stop the triggers, drain the card, pause it, close the file; returns the counters.
        ``board_lost``: the board is gone, nothing is asked of it (the run ends in error)."""
        if self.state != "running":
            raise EngineError(f"no run to stop (state {self.state})")
        self.state = "stopping"
        self._publish_status(force=True)
        if board_lost:
            self.link.credit.stop()
            self.board.triggers_stopped = False
        else:
            self.board.stop_and_drain()
        self.datapath.end_run()
        counters = self.counters()
        final = {
            "stop_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stop_reason": reason,
            "counters": counters,
        }
        table = self.datapath.outputs.get(PEDESTAL_TABLE)
        if table is not None:
            rows = self.pedestals.rows_of(table)
            final[PEDESTALS_OUT.split("/")[-1]] = rows
            self.load_pedestals(rows)
        failure = self.datapath.failure or (reason if board_lost else None)
        closing = self.recorder.close(final)  # the file is closed whatever failed before
        failure = failure or closing
        self.run.board_lost = board_lost
        self.run.stop_reason = (
            reason if not failure or failure in reason else f"{reason}; {failure}"
        )
        self.recorder.log_end(self.run, counters["datapath"]["events"])
        self.state = "error" if failure else "configured"
        self.message = failure or f"run {self.run.number} stopped: {reason}"
        log.info(self.message)
        self._publish_status(force=True)
        return counters

    # ---- supervision (the collaborators) -----------------------------------------------------

    def poll(self) -> None:
        """Stop conditions, board watch, status; call every ~0.1 s."""
        if self.state == "running":
            reason = self.stops.reason(self.run, self.datapath)
            if reason is not None:
                self.stop_run(reason)
            else:
                for incident in self.watch.check(self.run.number, self.run.start_mono):
                    self.announce(incident, logging.WARNING)
                lost = self.watch.lost()
                if lost is not None:
                    log.error(lost)
                    self.stop_run(lost, board_lost=True)
        self._publish_status()

    def _wait_warm(self) -> None:
        """Wait for the data path's kernels (first start on a fresh machine); a stop request
        cuts the wait short (:class:`Interrupted`: no run is created)."""
        end = time.monotonic() + WARM_UP_LIMIT_S
        while not self.datapath.warm.wait(0.1):
            if self.stop_request.is_set():
                raise Interrupted("stopped while the data path was compiling; no run started")
            if time.monotonic() > end:
                log.warning(
                    "data path still compiling after %d s; starting anyway", WARM_UP_LIMIT_S
                )
                return

    def counters(self) -> dict:
        return self.reporter.counters()

    def losses(self) -> dict[str, dict[str, int]]:
        return self.reporter.losses()

    def status(self) -> dict:
        return self.reporter.status(self._view())

    def _view(self) -> EngineView:
        return EngineView(self.state, self.message, self.run, sorted(self.masked), self.writer,
                          self.script_name, self.pedestals.source,
                          self.uploads.report())  # fmt: skip

    def _publish_status(self, force: bool = False) -> None:
        self.reporter.publish(self._view(), force)

    def announce(self, message: str, level: int = logging.INFO) -> None:
        """A note of the engine's own (a step of a pedestal upload, a board incident): log it,
        put it on the stream at once."""
        self.message = message
        log.log(level, message)
        self._publish_status(force=True)

    def _error(self, message: str) -> None:
        self.state = "error"
        self.announce(message, logging.ERROR)

    def close(self) -> None:
        if self.state == "running":
            self.stop_run("shutdown")
        self.datapath.stop()
        self.link.close()
        if self.capture is not None:
            self.capture.close()
        self.metrics.stop()
        if self.publisher is not None:
            self.publisher.close()
