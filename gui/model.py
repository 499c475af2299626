"""Everything the monitor knows about one detector line, fed by stream messages (no Qt).

``StreamModel.apply(msg)`` takes one decoded ``agetdaq.readout.transport.stream.Message`` (or a
worker-merged one) and keeps what it says; ``version`` counts changes per part so a view redraws
only when its data changed; ``metrics()`` gives the numbers the alarm rules watch. The model
computes nothing the DAQ computes: hitmap, occupancy, spectrum and class counts are the DAQ's
``hist``, the 55Fe trend, live fit and gain map its ``calib`` messages (live or replayed alike).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from agetdaq.gui.accumulators import CLASS_KEYS, PedestalInfo, RateTracker
from agetdaq.gui.alarms import AlarmEngine, Rule
from agetdaq.gui.calib_state import CalibState
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.histograms import RunHistView
from agetdaq.gui.runs import OPEN_STATES, RunWatch
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.transport.stream import Message

PARTS = ("status", "summary", "event", "pedestal", "calib", "hist", "alarms", "link", "runs")


@dataclass
class LinkInfo:
    """Health of the stream connection as seen by the worker (monotonic clock)."""

    address: str
    state: str = "connecting"  # connecting, connected, stale, disconnected, replay, finished
    last_rx: float = field(default_factory=time.monotonic)
    received: int = 0
    gaps: int = 0
    gaps_by_topic: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    restarts: int = 0  # the DAQ restarted its numbering
    reconnects: int = 0  # the connection dropped and came back (seq gaps across it not counted)
    viewer_dropped: int = 0  # event messages the worker dropped because the GUI lagged
    note: str = ""

    def age(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.last_rx


@dataclass
class EventRecord:
    header: dict
    waveforms: np.ndarray  # float32 (n_strips, n_samples)
    hits: np.ndarray  # bool (n_strips,)
    received: float  # monotonic time of arrival


class StreamModel:
    """Accumulated state of one stream (one detector line)."""

    def __init__(
        self,
        address: str,
        mapping: StripMapping,
        config: MonitorConfig | None = None,
        rules: list[Rule] | None = None,
    ) -> None:
        self.address = address
        self.name = address
        self.mapping = mapping
        self.config = config or MonitorConfig()
        self.n_strips = mapping.n_strips
        self.link = LinkInfo(address)
        self.status: dict = {}
        self.status_rx: float | None = None  # monotonic arrival of the last status
        self.run_number: int | None = None
        self.hist = RunHistView(mapping)
        self.calib = CalibState(self.config.calib_points)
        self.rates = RateTracker(self.config.history_rows, self.config.status_period_s)
        self.events: deque[EventRecord] = deque(maxlen=self.config.recent_events)
        self.events_seen = 0
        self.pedestal = PedestalInfo(self.n_strips)
        self.summary_events = 0  # event rows received in summaries (this run)
        self.alarms = AlarmEngine(list(rules or []), self.config.alarm_history)
        self.version = dict.fromkeys(PARTS, 0)
        self.last_data_time: float | None = None  # newest header/event time (unix s)
        self.runs = RunWatch()

    # ---- input --------------------------------------------------------------------------------

    def touch(self, *parts: str) -> None:
        for p in parts:
            self.version[p] += 1

    def set_link(self, link: LinkInfo) -> None:
        self.link = link
        self.touch("link")

    def apply(self, msg: Message) -> None:
        """Update from one message; unknown topics and malformed content are ignored."""
        h = msg.header
        src = h.get("source")
        if isinstance(src, str) and src and self.name == self.address:
            self.name = src
        t = h.get("time")
        if isinstance(t, (int, float)):
            self.last_data_time = max(self.last_data_time or t, float(t))
        handler = getattr(self, f"_on_{msg.topic}", None)
        if handler is not None:
            handler(h, msg.arrays)

    def _check_run(self, header: dict) -> None:
        rn = header.get("run_number")
        if not isinstance(rn, int) or rn == self.run_number:
            return
        if self.run_number is not None:
            self.reset_run_data()
        self.run_number = rn

    def reset_run_data(self) -> None:
        """New run: forget the per-run data (trends and alarms stay)."""
        self.hist.clear()
        self.calib.reset_run()
        self.summary_events = 0
        self.touch("summary", "event", "calib", "hist")

    @property
    def class_totals(self) -> np.ndarray:
        """The DAQ's class counts of the run (noise, xray, muon, other)."""
        counts = self.hist.class_counts
        return np.array([counts.get(k, 0) for k in CLASS_KEYS], np.int64)

    def _on_status(self, h: dict, arrays: dict) -> None:
        self._check_run(h)
        t = float(h.get("time", time.time()))
        if self.runs.on_status(self.status, h, t, self.hist.class_counts, self.latest_gain()[0]):
            self.touch("runs")
        self.status = h
        self.status_rx = time.monotonic()
        self.rates.add_status(t, h, self.link.gaps, self.link.malformed)
        self.touch("status")

    def _on_run(self, h: dict, arrays: dict) -> None:
        self.runs.on_run(h)
        self.touch("runs")

    def _on_summary(self, h: dict, a: dict) -> None:
        self._check_run(h)
        n = len(a["event_id"]) if "event_id" in a else 0
        if n:
            self.summary_events += n
            self.touch("summary")

    def _on_event(self, h: dict, a: dict) -> None:
        self._check_run(h)
        wf = a.get("waveforms")
        if wf is None or wf.ndim != 2 or wf.shape[0] != self.n_strips:
            return
        hits = a.get("hits")
        if hits is None or hits.shape != (self.n_strips,):
            hits = np.zeros(self.n_strips, bool)
        wf = np.ascontiguousarray(wf, np.float32)
        self.events.append(EventRecord(h, wf, hits.astype(bool), time.monotonic()))
        self.events_seen += 1
        self.touch("event")

    def _on_pedestal(self, h: dict, a: dict) -> None:
        self.pedestal.set(h, a)
        self.touch("pedestal")

    def _on_calib(self, h: dict, a: dict) -> None:
        self._check_run(h)
        if self.calib.apply(h, a):
            self.touch("calib")

    def _on_hist(self, h: dict, a: dict) -> None:
        self._check_run(h)
        if self.hist.set(h, a):
            self.touch("hist")

    # ---- derived ------------------------------------------------------------------------------

    def state(self) -> str | None:
        s = self.status.get("state")
        return s if isinstance(s, str) else None

    def latest_gain(self) -> tuple[float | None, float | None, float | None]:
        """(gain_rel, resolution %, threshold keV) of the DAQ's newest good 55Fe fit: the number
        the 55Fe view shows and the gain alarms watch."""
        return self.calib.gain_now()[:3]

    def metrics(self, now: float | None = None) -> dict[str, float | None]:
        """Numbers the alarm rules watch (see gui/data/alarms.toml for the names)."""
        now = time.monotonic() if now is None else now
        s = self.status
        fresh = self.status_rx is not None and now - self.status_rx < 3 * self.config.stale_after_s

        def num(key: str) -> float | None:
            v = s.get(key) if fresh else None
            return float(v) if isinstance(v, (int, float)) else None

        alive = s.get("board_alive") if fresh else None
        dead = num("dead_time")
        gain_rel, res_pct, thr_kev = self.latest_gain()
        running = fresh and s.get("state") in OPEN_STATES
        table = s.get("pedestal_table") if fresh else None
        no_table = None
        if isinstance(table, str):
            no_table = 0.0 if table or (running and s.get("run_type") == "pedestal") else 1.0
        killed = s.get("killed_run") if fresh else None
        killed_run = None
        if isinstance(killed, dict):
            killed_run = float(killed.get("run_number", 0) or 0) if killed else 0.0
        since = self.rates.increase_since
        return {
            "data_age_s": self.link.age(now) if self.link.state != "finished" else None,
            "board_data_age_s": num("data_age_s"),
            "trigger_rate": num("trigger_rate"),
            "events_per_s": num("events_per_s"),
            "gain_rel": gain_rel,
            "resolution_pct": res_pct,
            "threshold_kev": thr_kev,
            "noisy_channels": _opt(self.pedestal.count(PedestalInfo.NOISY)),
            "dead_channels": _opt(self.pedestal.count(PedestalInfo.DEAD)),
            "losses_last_min": since("losses_total", 60.0),
            "data_lost_last_min": since("data_lost_total", 60.0),
            "not_processed_last_min": since("not_processed_total", 60.0),
            "gaps_last_min": since("gaps_total", 60.0),
            "malformed_last_min": since("malformed_total", 60.0),
            "events_stalled_s": self.runs.events_stalled_s if fresh else None,
            "board_restarts_recent": since("board_restarts_total", 60.0),
            "no_pedestal_table": no_table,
            "killed_run": killed_run,
            "disk_free_gb": num("disk_free_gb"),
            "queue_fill": num("queue_fill"),
            "board_alive": (1.0 if alive else 0.0) if isinstance(alive, bool) else None,
            "dead_time_pct": 100.0 * dead if dead is not None else None,
        }

    def evaluate_alarms(self, now: float | None = None) -> list:
        """Run the rules; returns the alarms that fired now."""
        now = time.monotonic() if now is None else now
        before = [(a.rule.name, a.acknowledged) for a in self.alarms.active]
        fired = self.alarms.evaluate(self.metrics(now), now, self.state())
        if fired or before != [(a.rule.name, a.acknowledged) for a in self.alarms.active]:
            self.touch("alarms")
        return fired


def _opt(v: int | None) -> float | None:
    return None if v is None else float(v)
