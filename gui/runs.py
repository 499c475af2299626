"""What the monitor knows of the DAQ's runs (no Qt): run starts (the trends' boundaries), the end
of a run it watched (the end-of-run summary), events that stopped coming, and the DAQ's run list
and shipped scripts (``run`` messages). Fed by StreamModel with each ``status`` and ``run``."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

OPEN_STATES = ("running", "stopping")
MAX_RUN_STARTS = 200  # run boundaries kept for the trend plots


class RunWatch:
    """Runs of one DAQ as its ``status`` and ``run`` messages tell them."""

    def __init__(self) -> None:
        self.listed: list[dict] = []  # the DAQ's recent runs, oldest first
        self.scripts: list[str] = []  # the command scripts the DAQ ships
        self.starts: deque[tuple[float, int]] = deque(maxlen=MAX_RUN_STARTS)  # (unix, run)
        self.ended: dict | None = None  # summary of the run seen ending last
        self.ended_count = 0  # runs seen ending while watched
        self.events_stalled_s: float | None = None  # running, no new event for this long
        self._open: dict | None = None  # the run in progress as last seen
        self._events: tuple[int, int, float] | None = None  # (run, events, since: unix s)

    def on_run(self, h: Mapping[str, object]) -> None:
        runs, scripts = h.get("runs"), h.get("scripts")
        if isinstance(runs, list):
            self.listed = [r for r in runs if isinstance(r, dict)]
        if isinstance(scripts, list):
            self.scripts = [str(x) for x in scripts]

    def on_status(
        self, old: Mapping, new: Mapping, t: float, class_counts: Mapping, gain: float | None
    ) -> bool:
        """One status (``t``: its unix time) after ``old``; True when a run ended."""
        state, rn = new.get("state"), new.get("run_number")
        if state in OPEN_STATES and isinstance(rn, int):
            start = new.get("start_time")
            start = float(start) if isinstance(start, (int, float)) else t
            if not self.starts or self.starts[-1][1] != rn:
                self.starts.append((start, rn))
            same = self._open if self._open and self._open["run_number"] == rn else {}
            self._open = {"run_number": rn, "run_type": new.get("run_type", ""),
                          # the file is closed (and no longer named) while stopping
                          "file": new.get("file") or same.get("file", ""), "start_time": start,
                          "comment": new.get("comment", "")}  # fmt: skip
            self._stall(new, rn, t)
            return False
        self.events_stalled_s, self._events = None, None
        ended = self._open is not None and old.get("state") in OPEN_STATES
        if ended:
            self._end_of_run(self._open, new, old, class_counts, gain)
        self._open = None
        return ended

    def _stall(self, status: Mapping, rn: int, t: float) -> None:
        events = status.get("events")
        if not isinstance(events, int) or status.get("state") != "running":
            self.events_stalled_s = None
            return
        if self._events is None or self._events[:2] != (rn, events):
            self._events = (rn, events, t)
        self.events_stalled_s = max(0.0, t - self._events[2])

    def _end_of_run(
        self, run: dict, status: Mapping, before: Mapping, counts: Mapping, gain: float | None
    ) -> None:
        last = status.get("last_run")
        if not isinstance(last, dict) or last.get("run_number") != run["run_number"]:
            last = {}
        self.ended = {
            **run,
            "state": status.get("state"),
            "elapsed_s": last.get("elapsed_s", before.get("elapsed_s")),
            "events": last.get("events", status.get("events")),
            "stop_reason": last.get("stop_reason") or status.get("message", ""),
            "data_lost": status.get("data_lost", before.get("data_lost")),
            "not_processed": status.get("not_processed", before.get("not_processed")),
            "class_counts": dict(counts),
            "gain_rel": gain,
            "pedestal_table": before.get("pedestal_table"),
            "message": status.get("message", ""),
        }
        self.ended_count += 1
