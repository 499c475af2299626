"""Prometheus metrics of one DAQ line (docs/DEPLOYMENT.md), two families side by side.

* feminos-daq's names (PROTOCOL.md §7), so that its dashboards work unchanged:
  ``uptime_seconds``, ``free_disk_space_gb{path}``, ``daq_speed_mb_per_sec[_now]``,
  ``daq_speed_events_per_sec[_now]``, ``daq_frames_queue_fill_level[_now]``, ``run_number``,
  ``number_of_events``, ``number_of_signals_in_last_event``, ``number_of_signals_in_event``,
  ``output_file_size_mb{filename}``.
* ``agetdaq_*`` in Prometheus' conventions (base units; counters end in ``_total`` and only go
  up, across runs; rates are ``rate()`` of them): see :data:`AGETDAQ_METRICS`.

The engine hands a status snapshot (the same dict it publishes on the stream) to ``update``. Its
per-run counts (events, bytes, losses) restart at each run; the counters add what each snapshot
adds to the last one (a count that went down started again from 0: all of it is new).

The endpoint binds ``[daq] metrics_bind`` (loopback by default; ``0.0.0.0`` for a Prometheus
server on another host) on the port given by ``--metrics-port`` or ``[daq] metrics_port``.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary, make_wsgi_app

from agetdaq import __version__

RUN_STATES = ("idle", "configuring", "configured", "running", "stopping", "error")

AGETDAQ_METRICS = {
    "agetdaq_info": "gauge 1, labels detector, board, version",
    "agetdaq_uptime_seconds": "gauge",
    "agetdaq_run_number": "gauge",
    "agetdaq_run_state": "gauge 1 for the current state, label state",
    "agetdaq_events_total": "counter: events recorded",
    "agetdaq_data_bytes_total": "counter: bytes of data frames received",
    "agetdaq_lost_total": "counter: losses, labels stage and kind",
    "agetdaq_receive_ring_fill_ratio": "gauge 0..1",
    "agetdaq_free_disk_bytes": "gauge, label path",
    "agetdaq_run_file_bytes": "gauge",
    "agetdaq_board_alive": "gauge 0/1",
    "agetdaq_data_age_seconds": "gauge: since the last data frame of the run",
}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Totals:
    """Counters fed with per-run counts: each snapshot adds what it has more than the last."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.last: dict[tuple[str, ...], float] = {}

    def see(self, value: float, *labels: str) -> None:
        before = self.last.get(labels, 0.0)
        added = value - before if value >= before else value
        self.last[labels] = value
        if added > 0:
            (self.counter.labels(*labels) if labels else self.counter).inc(added)


class DaqMetrics:
    """One registry per DAQ process (tests may run several)."""

    def __init__(self, data_dir: str = ".", detector: str = "", board: str = "") -> None:
        self.registry = r = CollectorRegistry()
        self.data_dir = data_dir
        self.started = time.monotonic()
        self.server: _Server | None = None
        self._thread: threading.Thread | None = None
        # feminos-daq's names
        self.uptime = Gauge("uptime_seconds", "Seconds since the DAQ started", registry=r)
        self.disk = Gauge(
            "free_disk_space_gb", "Free space of the data directory", ["path"], registry=r
        )
        self.mb_now = Gauge("daq_speed_mb_per_sec_now", "Data rate now (MB/s)", registry=r)
        self.mb = Summary("daq_speed_mb_per_sec", "Data rate (MB/s)", registry=r)
        self.ev_now = Gauge("daq_speed_events_per_sec_now", "Event rate now", registry=r)
        self.ev = Summary("daq_speed_events_per_sec", "Event rate", registry=r)
        self.fill_now = Gauge(
            "daq_frames_queue_fill_level_now", "Receive ring fill (0..1)", registry=r
        )
        self.fill = Summary("daq_frames_queue_fill_level", "Receive ring fill", registry=r)
        self.run_number = Gauge("run_number", "Current run number", registry=r)
        self.events = Gauge("number_of_events", "Events written in this run", registry=r)
        self.signals_last = Gauge(
            "number_of_signals_in_last_event", "Channels in the last event", registry=r
        )
        self.signals = Summary("number_of_signals_in_event", "Channels per event", registry=r)
        self.file_size = Gauge(
            "output_file_size_mb", "Size of the run file (MB)", ["filename"], registry=r
        )
        # agetdaq_*
        info = Gauge("agetdaq_info", "This DAQ line", ["detector", "board", "version"], registry=r)
        info.labels(detector=detector, board=board, version=__version__).set(1)
        self.a_uptime = Gauge("agetdaq_uptime_seconds", "Since the DAQ started", registry=r)
        self.a_run = Gauge("agetdaq_run_number", "Current (or last) run number", registry=r)
        self.state = Gauge(
            "agetdaq_run_state", "1 for the current run state", ["state"], registry=r
        )
        self.a_events = _Totals(Counter("agetdaq_events", "Events recorded, all runs", registry=r))
        self.a_bytes = _Totals(
            Counter("agetdaq_data_bytes", "Bytes of data frames received", registry=r)
        )
        self.lost = _Totals(
            Counter("agetdaq_lost", "Losses per stage and kind", ["stage", "kind"], registry=r)
        )
        self.a_fill = Gauge(
            "agetdaq_receive_ring_fill_ratio", "Receive ring fill (0..1)", registry=r
        )
        self.a_disk = Gauge(
            "agetdaq_free_disk_bytes", "Free space of the data directory", ["path"], registry=r
        )
        self.a_file = Gauge("agetdaq_run_file_bytes", "Size of the open run file", registry=r)
        self.a_alive = Gauge("agetdaq_board_alive", "1 while the board answers", registry=r)
        self.a_age = Gauge(
            "agetdaq_data_age_seconds", "Since the last data frame of the run", registry=r
        )

    def start(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free port, see :attr:`port`)."""
        app = make_wsgi_app(self.registry)
        self.server = make_server(host, port, app, _Server, handler_class=_Quiet)
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server is not None else 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def free_disk_bytes(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    def free_disk_gb(self) -> float:
        return self.free_disk_bytes() / 1e9

    def update(self, status: Mapping[str, object]) -> None:
        """Refresh every metric from a status snapshot of the engine."""
        uptime = time.monotonic() - self.started
        self.uptime.set(uptime)
        self.a_uptime.set(uptime)
        free = self.free_disk_bytes()
        self.disk.labels(path=str(self.data_dir)).set(free / 1e9)
        self.a_disk.labels(path=str(self.data_dir)).set(free)
        mb = float(status.get("mb_per_s", 0.0))
        ev = float(status.get("events_per_s", 0.0))
        fill = float(status.get("queue_fill", 0.0))
        self.mb_now.set(mb)
        self.mb.observe(mb)
        self.ev_now.set(ev)
        self.ev.observe(ev)
        self.fill_now.set(fill)
        self.fill.observe(fill)
        self.a_fill.set(fill)
        run = float(status.get("run_number", 0) or 0)
        self.run_number.set(run)
        self.a_run.set(run)
        events = float(status.get("events", 0))
        self.events.set(events)
        self.a_events.see(events)
        self.a_bytes.see(float(status.get("bytes", 0)))
        n_sig = float(status.get("signals_last_event", 0))
        self.signals_last.set(n_sig)
        self.signals.observe(n_sig)
        file_mb = float(status.get("file_mb", 0.0))
        if status.get("file"):
            self.file_size.labels(filename=str(status["file"])).set(file_mb)
        self.a_file.set(file_mb * 1e6 if status.get("file") else 0.0)
        self.a_alive.set(1.0 if status.get("board_alive", False) else 0.0)
        self.a_age.set(float(status.get("data_age_s", 0.0)))
        losses = status.get("losses", {})
        if isinstance(losses, Mapping):
            for stage, kinds in losses.items():
                if isinstance(kinds, Mapping):
                    for kind, n in kinds.items():
                        self.lost.see(float(n), str(stage), str(kind))
        current = str(status.get("state", ""))
        for s in RUN_STATES:
            self.state.labels(state=s).set(1.0 if s == current else 0.0)
