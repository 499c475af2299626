"""The acquisition engine of one BEC: the run state machine (configure / start / stop).

States: idle -> configuring -> configured -> running -> stopping -> configured; any failure goes
to error (a new configure leaves it). ``agetdaq run`` drives it directly, ``agetdaq serve`` from
the control socket. The data path runs in its own thread; ``poll()`` (called by the owner every
~0.1 s) asks its collaborators, each with a state of its own:

- :class:`~agetdaq.readout.acquisition.limits.StopConditions`: writer failure, events, time, disk;
- :class:`~agetdaq.readout.acquisition.supervision.BoardWatch`: heartbeat, silence, restarts;
- :class:`~agetdaq.readout.acquisition.status.StatusReporter`: status, counters, losses to the
  stream, the metrics and the run file;
- :class:`~agetdaq.readout.acquisition.board_steps.BoardSteps`: configure, stop and drain, restart
  the board's triggers;
- :class:`~agetdaq.readout.acquisition.pedestal_use.PedestalUse`: the pedestal table and strip
  masks the processing uses.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from agetdaq import __version__
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.script import Script, parse_script
from agetdaq.readout.acquisition.board_steps import BoardSteps
from agetdaq.readout.acquisition.limits import RunInfo, StopConditions
from agetdaq.readout.acquisition.memtune import pin_malloc_thresholds
from agetdaq.readout.acquisition.metrics import DaqMetrics
from agetdaq.readout.acquisition.pedestal_use import PedestalUse
from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.acquisition.settings import Settings, parse_address
from agetdaq.readout.acquisition.status import EngineView, StatusReporter
from agetdaq.readout.acquisition.supervision import BoardWatch
from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.calibration.trend import TrendConfig
from agetdaq.readout.analysis.monitor import MonitorFeed, StripGeometry
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.datapath.stage import PipelineError
from agetdaq.readout.datapath.stages.calibration import NoTrend
from agetdaq.readout.datapath.stages.pedestal import OUTPUT as PEDESTAL_TABLE
from agetdaq.readout.link.board_link import BoardError, BoardLink
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.layout import PEDESTALS_OUT
from agetdaq.readout.store.writer import RunWriter, WriterError
from agetdaq.readout.transport.control import RUN_TYPES
from agetdaq.readout.transport.stream import Publisher

log = logging.getLogger(__name__)

SCRIPTS_DIR = Path(__file__).parents[1] / "scripts"
WARM_UP_LIMIT_S = 180
# calibration.txt (every channel whole; the accurate low-gain calibration, docs/CALIBRATION.md) is
# chosen explicitly: at full readout a 2-core DAQ PC answers run control too slowly for the GUI
RUN_TYPE_SCRIPT = {"pedestal": "pedestal_data", "calibration": "run", "background": "run"}
STREAM_HWM = 100  # messages queued per subscriber before ZeroMQ drops (a dead GUI costs little)


class EngineError(RuntimeError):
    """A request the engine cannot carry out in its state, or a failed step."""


def script_path(name: str) -> Path:
    """A shipped script by name (run, pedestal, pedestal_data, startup) or a file path."""
    shipped = SCRIPTS_DIR / f"{name}.txt"
    if shipped.exists():
        return shipped
    p = Path(name)
    if not p.exists():
        raise EngineError(f"no such command script: {name}")
    return p


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
    ) -> None:
        pin_malloc_thresholds()  # a flat resident size over weeks (acquisition/memtune.py)
        self.settings = s = settings
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
        self.calib = CalibFeed(self.publisher, TrendConfig(threshold_adc=threshold), area_mm=area)
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
        self.metrics = DaqMetrics(str(self.data_dir), detector=s.daq.detector, board=s.daq.bec)
        http_port = s.daq.metrics_port if metrics_port is None else metrics_port
        if http_port:  # `port` stays the board's: the capture tap below names it
            self.metrics.start(http_port, s.daq.metrics_bind)
        self.board = BoardSteps(self.link, s.daq.bec, s.daq.board_timeout_s)
        self.stops = StopConditions(self.data_dir, s.daq.disk_stop_gb)
        self.watch = BoardWatch(self.link, self.datapath, s.daq.bec, s.daq.heartbeat_s)
        self.state = "idle"
        self.message = ""
        self.script: Script | None = None
        self.script_name = ""
        self.script_text = ""
        self.writer: RunWriter | None = None
        self.run = RunInfo()
        self.pedestals = PedestalUse(
            self.processor, self.feed, self.mapping, s.processing.k_hit, s.daq.rst_len
        )
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
        )
        self.link.start()
        self.datapath.start()

    # ---- configuration ----------------------------------------------------------------------

    def configure(self, script: str | Path | None = None) -> None:
        """Send a command script's board steps (client ``DAQ`` steps are left to start_run)."""
        if self.state in ("running", "stopping"):
            raise EngineError(f"cannot configure while {self.state}")
        name = str(script or "run")
        path = script_path(name)
        parsed = parse_script(path)  # a bad script is refused before anything is sent
        self.state = "configuring"
        self._publish_status(force=True)
        try:
            self.board.configure(parsed)
        except BoardError as exc:
            self._error(f"configuration with {path.name} failed: {exc}")
            raise EngineError(self.message) from exc
        self.script, self.script_name = parsed, name
        self.script_text = path.read_text()
        self.state = "configured"
        self.message = f"configured with {path.name}"
        log.info(self.message)

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
        wanted = RUN_TYPE_SCRIPT[run_type]
        if self.state != "configured" or (
            self.script_name in RUN_TYPE_SCRIPT.values() and self.script_name != wanted
        ):
            self.configure(wanted)
        if not self.datapath.warm.wait(WARM_UP_LIMIT_S):  # first start on a fresh machine
            log.warning("data path still compiling after %d s; starting anyway", WARM_UP_LIMIT_S)
        try:
            self.board.restart_triggers(self.script_text)
        except BoardError as exc:
            self._error(f"run start failed: {exc}")
            raise EngineError(self.message) from exc
        number = self.runlog.next_run_number()
        path = Path(output) if output else self.runlog.run_path(number, run_type)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run = RunInfo(
            number, run_type, comment, str(path), time.time(), time.monotonic(), events, seconds
        )
        meta = {
            "run_number": str(number),
            "run_type": run_type,
            "comment": comment,
            "detector": self.settings.daq.detector,
            "board": self.settings.daq.bec,
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "software_version": __version__,
            "script": self.script_text,
            "config": self.settings.source,
            "mapping": self.mapping.to_text(),
        }
        try:
            self.writer = RunWriter(
                path, EVENT_DTYPE, meta, self.settings.writer, pedestals=self.pedestal_rows
            )
        except WriterError as exc:
            self._error(str(exc))
            raise EngineError(str(exc)) from exc
        self.datapath.begin_run(self.writer, number, run_type)
        self.runlog.append(
            {
                "event": "start",
                "run": number,
                "type": run_type,
                "comment": comment,
                "file": str(path),
            }
        )
        self.link.start_data()
        self.state = "running"
        self.message = f"run {number} ({run_type}) started"
        self.watch.begin_run()
        self.reporter.begin_run()
        log.info("%s -> %s", self.message, path)
        self._publish_status(force=True)
        return self.run

    def stop_run(self, reason: str = "stop requested") -> dict:
        """Stop the triggers, drain the card, pause it, close the file; returns the counters."""
        if self.state != "running":
            raise EngineError(f"no run to stop (state {self.state})")
        self.state = "stopping"
        self._publish_status(force=True)
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
        failure = self.datapath.failure
        try:
            if self.writer is not None:
                self.writer.close(final)
        except WriterError as exc:
            failure = failure or str(exc)
        self.writer = None
        self.run.stop_reason = reason if not failure else f"{reason}; {failure}"
        self.runlog.append(
            {
                "event": "end",
                "run": self.run.number,
                "reason": self.run.stop_reason,
                "events": counters["datapath"]["events"],
            }
        )
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
                    self._warn(incident)
        self._publish_status()

    def counters(self) -> dict:
        return self.reporter.counters()

    def losses(self) -> dict[str, dict[str, int]]:
        return self.reporter.losses()

    def status(self) -> dict:
        return self.reporter.status(self._view())

    def _view(self) -> EngineView:
        return EngineView(self.state, self.message, self.run, sorted(self.masked), self.writer)

    def _publish_status(self, force: bool = False) -> None:
        self.reporter.publish(self._view(), force)

    def _warn(self, message: str) -> None:
        """A board incident: log it and put it on the stream at once."""
        self.message = message
        log.warning(message)
        self._publish_status(force=True)

    def _error(self, message: str) -> None:
        self.state = "error"
        self.message = message
        log.error(message)
        self._publish_status(force=True)

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
