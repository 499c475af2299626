"""Helpers of the crew scenarios (tests/test_scenario_*.py, tests/test_gui_*.py against real
processes): the monitor as the crew has it (the real MainWindow, offscreen, fed by the DAQ's stream
and run control), one detector line (emulator + DAQ server + monitor) ready for a test, and the
checks of a run file against the emulator's truth (test helper, no pytest)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from daq_procs import DaqProcesses
from PyQt6.QtWidgets import QApplication

from agetdaq.gui.alarms import Rule, load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.replay import ReplayWorker
from agetdaq.gui.views import RunControlView
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import StreamWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.schema import EventClass
from agetdaq.readout.store.run import open_run

XRAY_LINES = ("Ka", "Kb")  # the 55Fe lines the selection keeps (escape peak aside)


class Timeout(AssertionError):
    pass


def wait_for(
    cond: Callable[[], object],
    limit_s: float,
    what: str,
    each: Callable[[], object] | None = None,
    detail: Callable[[], object] | None = None,
) -> float:
    """Until ``cond()`` holds, Qt events processed meanwhile and ``each()`` called on every turn
    (to collect); the seconds it took (for the record). Timeout naming ``what`` (and ``detail()``)
    when it does not hold within ``limit_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        QApplication.processEvents()
        if each is not None:
            each()
        if cond():
            return time.monotonic() - t0
        time.sleep(0.02)
    more = f": {detail()}" if detail is not None else ""
    raise Timeout(f"timed out after {limit_s:.0f} s waiting for {what}{more}")


class Monitor:
    """``agetdaq gui --connect S --control C [...]`` in process: one MainWindow, one line per
    (stream, control) pair, run control polled every ``poll_s``; with ``answer_yes`` run control
    answers yes to its questions (the crew clicks 'yes')."""

    def __init__(
        self,
        lines: list[tuple[str, str | None]],
        poll_s: float = 0.5,
        rules: list[Rule] | None = None,
        snapshot_dir: Path | None = None,
        size: tuple[int, int] = (1400, 900),
        answer_yes: bool = True,
    ) -> None:
        sources = [
            (StreamWorker(s), ControlWorker(c, poll_s=poll_s, timeout_ms=5000) if c else None)
            for s, c in lines
        ]
        rules = load_rules() if rules is None else rules
        where = {} if snapshot_dir is None else {"snapshot_dir": snapshot_dir}
        self.window = MainWindow(sources, StripMapping.default(), MonitorConfig(), rules, **where)
        self.window.resize(*size)
        self.window.show()
        if answer_yes:
            for slot in range(len(lines)):
                self.select(slot)
                self.run_control.ask = lambda *_: True
        self.select(0)
        self.started = False

    def start(self) -> Monitor:
        self.window.start()
        self.started = True
        return self

    @property
    def model(self):
        return self.window.model

    @property
    def run_control(self) -> RunControlView:
        return self.window.view(RunControlView)

    def select(self, slot: int) -> None:
        self.window.selector.setCurrentIndex(slot)
        self.window.select(slot)

    def refresh(self) -> None:
        QApplication.processEvents()
        self.window.tick()
        self.window.redraw(force=True)

    def start_run(self, run_type: str, script: str, seconds: float = 0.0, limit_s=90) -> None:
        """The crew's clicks: run type, script, time limit, Start; until the DAQ runs."""
        rc = self.run_control
        wait_for(lambda: rc.form.start_button.isEnabled(), limit_s, "run control to allow a start")
        rc.form.run_type.setCurrentText(run_type)
        rc.form.script.setCurrentText(script)
        rc.form.events_limit.setValue(0)
        rc.form.seconds_limit.setValue(seconds)
        rc.form.start_button.click()
        wait_for(lambda: self.model.state() == "running", limit_s, f"the {run_type} run to start")

    def stop_run(self, limit_s: float = 60) -> None:
        self.run_control.form.stop_button.click()
        wait_for(lambda: self.model.state() == "configured", limit_s, "the run to stop")

    def alarm_names(self) -> set[str]:
        return {a.rule.name for a in self.model.alarms.active}

    def alarm_history(self) -> list[tuple[str, str]]:
        return [(e.kind, e.rule) for e in self.model.alarms.history]

    def close(self) -> None:
        if self.started:
            self.window.shutdown()
        self.window.close()


@contextmanager
def crew_line(procs: DaqProcesses, **monitor: object) -> Iterator[MainWindow]:
    """One detector line for a test: the monitor (``Monitor(**monitor)`` on the line's stream and
    run control, the run-control tab shown) made first, then the emulator and the DAQ server
    started; the window once the DAQ is up and idle. Everything is stopped afterwards."""
    mon = Monitor([(procs.stream, procs.control)], **monitor)  # type: ignore[arg-type]
    w = mon.window
    rc = mon.run_control
    w.tabs.setCurrentWidget(rc.widget)
    try:
        procs.start()
        procs.wait_ready()
        mon.start()
        wait_for(lambda: rc.form.start_button.isEnabled() and w.model.status, 60, "the DAQ, idle")
        yield w
    finally:
        mon.close()
        procs.close()


def replay_messages(qtbot, path: Path, limit_s: float = 60.0) -> list:
    """Every message the real ReplayWorker emits for the run file ``path``, as fast as it can."""
    worker = ReplayWorker(path, speed=0.0)
    got: list = []

    def on_batch(_slot: int, msgs: list) -> None:
        got.extend(msgs)
        worker.acknowledge()

    worker.batch.connect(on_batch)
    with qtbot.waitSignal(worker.finished, timeout=int(limit_s * 1000)):
        worker.start()
    QApplication.processEvents()
    assert worker.info.state == "finished", worker.info.note
    return got


# ---- run files against the truth ----------------------------------------------------------------


def truth_of(events: np.ndarray, truth_runs: list[list[dict]]) -> dict[int, dict]:
    """The truth of a run file's events: the card run whose (event counter, timestamp) pairs are
    the file's, as {event_count: truth}. AssertionError when no card run holds them all."""
    keys = set(zip(events["event_count"].tolist(), events["timestamp"].tolist()))
    best: dict[int, dict] = {}
    for run in truth_runs:
        by_count = {t["event_count"]: t for t in run}
        held = sum((c, ts) in keys for c, ts in ((t["event_count"], t["timestamp"]) for t in run))
        if held == len(keys) and len(keys) > 0:
            return by_count
        if held > len(best):
            best = by_count
    raise AssertionError(f"no card run holds the file's {len(keys)} events (best {len(best)})")


def xray_efficiency(events: np.ndarray, truth: dict[int, dict]) -> tuple[float, int, float]:
    """(fraction of the true 55Fe X-rays in the file the DAQ classed X-ray-like, their number,
    fraction of the true muons it classed X-ray-like)."""
    kinds = [truth[int(c)] for c in events["event_count"]]
    xray = np.array([t.get("kind") == "xray" and t.get("line") in XRAY_LINES for t in kinds])
    muon = np.array([t.get("kind") == "muon" for t in kinds])
    is_x = events["cls"] == int(EventClass.XRAY)
    eff = float(is_x[xray].mean()) if xray.any() else float("nan")
    fake = float(is_x[muon].mean()) if muon.any() else 0.0
    return eff, int(xray.sum()), fake


def opens(path) -> dict:
    """Every file opens: events readable from first to last; returns its info."""
    with open_run(path) as run:
        n = run.n_events
        if n:
            list(run.events(0, min(n, 5)))
            list(run.events(max(0, n - 5), n))
        return {"n_events": n, "closed": run.info.closed, "damage": list(run.damage),
                "final": run.final}  # fmt: skip
