"""Prometheus metrics of the DAQ, with feminos-daq's names where they fit (PROTOCOL.md §7).

The engine hands a status snapshot (the same dict it publishes on the stream) to ``update``;
losses are exported per stage and kind as ``agetdaq_lost_total{stage, kind}``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, Summary, start_http_server


class DaqMetrics:
    """One registry per DAQ process (tests may run several)."""

    def __init__(self, data_dir: str = ".") -> None:
        self.registry = r = CollectorRegistry()
        self.data_dir = data_dir
        self.started = time.monotonic()
        self.server = None
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
        self.lost = Gauge(
            "agetdaq_lost_total", "Losses counted per stage and kind", ["stage", "kind"], registry=r
        )
        self.state = Gauge(
            "agetdaq_run_state", "1 for the current run state", ["state"], registry=r
        )

    def start(self, port: int, host: str = "127.0.0.1") -> None:
        self.server, _ = start_http_server(port, addr=host, registry=self.registry)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def free_disk_gb(self) -> float:
        return shutil.disk_usage(self.data_dir).free / 1e9

    def update(self, status: Mapping[str, object]) -> None:
        """Refresh every metric from a status snapshot of the engine."""
        self.uptime.set(time.monotonic() - self.started)
        self.disk.labels(path=str(self.data_dir)).set(self.free_disk_gb())
        mb = float(status.get("mb_per_s", 0.0))
        ev = float(status.get("events_per_s", 0.0))
        fill = float(status.get("queue_fill", 0.0))
        self.mb_now.set(mb)
        self.mb.observe(mb)
        self.ev_now.set(ev)
        self.ev.observe(ev)
        self.fill_now.set(fill)
        self.fill.observe(fill)
        self.run_number.set(float(status.get("run_number", 0) or 0))
        self.events.set(float(status.get("events", 0)))
        n_sig = float(status.get("signals_last_event", 0))
        self.signals_last.set(n_sig)
        self.signals.observe(n_sig)
        if status.get("file"):
            self.file_size.labels(filename=str(status["file"])).set(
                float(status.get("file_mb", 0.0))
            )
        losses = status.get("losses", {})
        if isinstance(losses, Mapping):
            for stage, kinds in losses.items():
                if isinstance(kinds, Mapping):
                    for kind, n in kinds.items():
                        self.lost.labels(stage=str(stage), kind=str(kind)).set(float(n))
        current = str(status.get("state", ""))
        for s in ("idle", "configuring", "configured", "running", "stopping", "error"):
            self.state.labels(state=s).set(1.0 if s == current else 0.0)
