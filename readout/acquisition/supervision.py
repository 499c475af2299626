"""Supervision of a running acquisition: stop conditions, board heartbeat, counters, status.

:class:`Supervision` is mixed into :class:`agetdaq.readout.acquisition.engine.Acquisition` (which
owns the link, the data path, the writer and the publisher): ``poll()`` (called by the owner every
~0.1 s) checks the stop conditions, the disk, the board's silence and restarts, and publishes the
status to the stream, the metrics and the run file.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agetdaq.readout.link.board_link import BoardError
from agetdaq.readout.schema import CLASS_NAMES

if TYPE_CHECKING:
    from agetdaq.readout.acquisition.engine import RunInfo
    from agetdaq.readout.acquisition.metrics import DaqMetrics
    from agetdaq.readout.acquisition.settings import Settings
    from agetdaq.readout.analysis.monitor import MonitorFeed
    from agetdaq.readout.datapath.path import DataPath
    from agetdaq.readout.link.board_link import BoardLink
    from agetdaq.readout.link.pcap_tap import PcapTap
    from agetdaq.readout.store.writer import RunWriter
    from agetdaq.readout.transport.stream import Publisher


log = logging.getLogger("agetdaq.readout.acquisition.engine")


def _credit_left(text: str) -> int | None:
    """Allowance from the reply to a bare ``daq`` ("... send_credits: N F"), None if absent."""
    words = text.replace(":", " ").split()
    for i, w in enumerate(words[:-1]):
        if w == "send_credits":
            try:
                return int(words[i + 1], 0)
            except ValueError:
                return None
    return None


class Supervision:
    """Stop conditions, guards, board watch and status of an ``Acquisition``."""

    settings: Settings
    link: BoardLink
    datapath: DataPath
    feed: MonitorFeed
    publisher: Publisher | None
    metrics: DaqMetrics
    writer: RunWriter | None
    capture: PcapTap | None
    data_dir: Path
    run: RunInfo
    state: str
    message: str
    masked: set[int]
    board_alive: bool
    regrants: int
    _last_status: float
    _rate_ref: tuple[float, int, int]
    _rates: tuple[float, float]
    _last_heartbeat: float
    _restarts_seen: int

    def poll(self) -> None:
        """Stop conditions, guards, board silence, status; call every ~0.1 s."""
        if self.state == "running":
            c = self.datapath.counters
            r = self.run
            if self.datapath.failure:
                self.stop_run(f"writer failed: {self.datapath.failure}")
            elif r.max_events is not None and c.events >= r.max_events:
                self.stop_run(f"{r.max_events} events reached")
            elif r.max_seconds is not None and time.monotonic() - r.start_mono >= r.max_seconds:
                self.stop_run(f"{r.max_seconds:g} s elapsed")
            elif self.free_disk_gb() < self.settings.daq.disk_stop_gb:
                self.stop_run(f"disk almost full ({self.free_disk_gb():.1f} GB free)")
            else:
                self._watch_board()
                self._watch_restarts()
        self._publish_status()

    def _warn(self, message: str) -> None:
        """A board incident: log it and put it on the stream at once."""
        self.message = message
        log.warning(message)
        self._publish_status(force=True)

    def _watch_restarts(self) -> None:
        """The builder saw the event counter and timestamp start again: the board rebooted."""
        n = self.datapath.builder.counters.restarts
        if n > self._restarts_seen:
            self._restarts_seen = n
            self._warn(
                f"board {self.settings.daq.bec} restarted (event counter and clock back to 0); "
                f"{n} restart(s) in run {self.run.number}, the run goes on"
            )

    def _watch_board(self) -> None:
        """Heartbeat: a bare ``daq`` every second proves the board alive and reads its credit.

        No data is normal at low trigger rates, so silence alone proves nothing. A board that
        does not answer is reported dead; a board that answers with no credit left while we
        wait for data (it rebooted, or a grant was lost) gets a fresh window.
        """
        now = time.monotonic()
        if now - self._last_heartbeat < self.settings.daq.heartbeat_s:
            return
        self._last_heartbeat = now
        try:
            reply = self.link.command("daq", timeout=self.settings.daq.heartbeat_s, check=False)
        except BoardError as exc:
            if self.board_alive:
                self.board_alive = False
                self._warn(f"board {self.settings.daq.bec} not answering: {exc}")
            return
        if not self.board_alive:
            self.board_alive = True
            self._warn(f"board {self.settings.daq.bec} answers again")
        credit = _credit_left(reply.text if reply is not None else "")
        if credit == 0 and self.data_age() > self.settings.daq.heartbeat_s:
            self.regrants += 1
            self.link.credit.stop()
            self.link.credit.start()
            self._warn(
                f"board {self.settings.daq.bec} holds no credit and sent nothing for "
                f"{self.data_age():.1f} s (rebooted, or a grant was lost): window re-granted"
            )

    def data_age(self) -> float:
        last = self.datapath.counters.last_data_ns
        ref = last if last else int(self.run.start_mono * 1e9)
        return max(0.0, (time.monotonic_ns() - ref) / 1e9)

    def free_disk_gb(self) -> float:
        try:
            return shutil.disk_usage(self.data_dir).free / 1e9
        except OSError:
            return 0.0

    def counters(self) -> dict:
        dp = self.datapath.counters
        return {
            "receiver": self.link.receiver.stats(),
            "credit": {**self.link.credit.counters.as_dict(), "regrants": self.regrants},
            "decoder": dict(dp.decode_errors),
            "builder": self.datapath.builder.counters.as_dict(),
            "sequence": dict(self.datapath.sequence.counters.__dict__),
            "datapath": {k: v for k, v in dp.__dict__.items() if k != "decode_errors"},
            **({"capture": self.capture.stats()} if self.capture is not None else {}),
            "publisher": {
                "sent": getattr(self.publisher, "sent", 0),
                "dropped": getattr(self.publisher, "dropped", 0),
            },
        }

    def losses(self) -> dict[str, dict[str, int]]:
        rx = self.link.receiver.counters
        b = self.datapath.builder.counters
        seq = self.datapath.sequence.counters
        return {
            "socket": {
                "kernel_drops": int(self.link.receiver.kernel_drops() or 0),
                "ring_full": rx.ring_full_drops,
                "malformed": rx.malformed,
            },
            "link": {
                "lost_datagrams": seq.missing,
                "late_datagrams": seq.late,
                "duplicate_datagrams": seq.duplicates,
            },
            "decoder": dict(self.datapath.counters.decode_errors),
            "builder": {
                "missing_events": b.missing - b.late,
                "damaged": b.damaged,
                "duplicates": b.duplicates,
            },
            "writer": {"errors": self.datapath.counters.writer_errors},
            "processing": {"shed": self.datapath.counters.events_shed},
            "stream": {"dropped": getattr(self.publisher, "dropped", 0)},
        }

    def status(self) -> dict:
        dp = self.datapath.counters
        now = time.monotonic()
        t0, ev0, by0 = self._rate_ref
        if now - t0 >= 1.0:
            dt = now - t0
            self._rates = ((dp.events - ev0) / dt, (dp.bytes - by0) / dt / 1e6)
            self._rate_ref = (now, dp.events, dp.bytes)
        size = self.writer.file_size() if self.writer else 0
        return {
            "state": self.state,
            "run_number": self.run.number,
            "run_type": self.run.run_type,
            "comment": self.run.comment,
            "start_time": self.run.start_unix,
            "elapsed_s": now - self.run.start_mono if self.state == "running" else 0.0,
            "events": dp.events,
            "events_per_s": self._rates[0],
            "trigger_rate": self._rates[0],
            "mb_per_s": self._rates[1],
            "bytes": dp.bytes,
            "queue_fill": self.link.receiver.fill() / self.link.receiver.n_slots,
            "losses": self.losses(),
            "disk_free_gb": self.free_disk_gb(),
            "file": self.run.path if self.state == "running" else "",
            "file_mb": size / 1e6,
            "board": self.settings.daq.bec,
            "board_alive": self.board_alive,
            "data_age_s": self.data_age() if self.state == "running" else 0.0,
            "class_counts": dict(zip(CLASS_NAMES, self.feed.hist.class_counts.tolist())),
            "signals_last_event": dp.last_signals,
            "masked": sorted(self.masked),
            "message": self.message,
        }

    def _publish_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status < self.settings.daq.status_interval_s:
            return
        self._last_status = now
        st = self.status()
        self.metrics.update(st)
        if self.publisher is not None:
            self.publisher.publish("status", st)
        if self.writer is not None and self.state == "running":
            self.writer.append_status(st)

    def _error(self, message: str) -> None:
        self.state = "error"
        self.message = message
        log.error(message)
        self._publish_status(force=True)
