"""``agetdaq gui --replay RUN.h5 --loop``: the file replayed again and again as one endless run
(clock, event count and message numbering continue across passes; the monitor never sees a gap,
a restart or the end of the run)."""

from __future__ import annotations

import numpy as np
from test_gui_replay import MAPPING, N_EVENTS, write_run

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.app import make_sources
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.replay import LOOP_GAP_S, ReplayWorker
from agetdaq.gui.window import MainWindow
from agetdaq.readout.cli import build_parser

SECONDS = 6.0  # run time of write_run's file


def test_looped_replay_continues_the_run(qtbot, tmp_path):
    path = tmp_path / "run42.h5"
    ev = write_run(path, seconds=SECONDS)
    done = ev[(ev["build_flags"] & 0x8000) == 0]
    processed = len(done)
    worker = ReplayWorker(path, speed=0.0, loop=True)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: worker.passes >= 3, timeout=30000)
        m = w.model
        qtbot.waitUntil(lambda: m.status.get("events", 0) >= 3 * N_EVENTS, timeout=10000)
    finally:
        w.shutdown()
    passes = worker.passes
    assert not worker.isRunning()
    assert m.link.state != "finished" and m.status["state"] == "running"
    assert m.link.gaps == 0 and m.link.restarts == 0  # numbering continues across passes
    assert m.run_number == 42
    assert 3 * processed <= m.summary_events <= (passes + 1) * processed
    assert m.hist.total >= 3 * int(np.count_nonzero(done["cls"] == 1))  # not reset per pass
    t = m.rates.series.t
    assert np.all(np.diff(t) > 0)  # one status per second of run time, never back in time
    assert t[-1] - t[0] >= 3 * SECONDS + 2 * LOOP_GAP_S - 0.5  # each pass shifted, not reset
    assert "pass" in m.status["message"]


def test_replay_without_loop_ends(qtbot, tmp_path):
    path = tmp_path / "run.h5"
    write_run(path, n=100, seconds=1.0)
    worker = ReplayWorker(path, speed=0.0)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: w.model.link.state == "finished", timeout=20000)
    finally:
        w.shutdown()
    assert worker.passes == 0 and w.model.status["state"] == "idle"


def test_cli_loop_option_reaches_the_replay_worker(tmp_path):
    parser = build_parser()
    cfg = MonitorConfig()
    args = parser.parse_args(["gui", "--replay", str(tmp_path / "a.h5"), "--loop"])
    ((worker, control),) = make_sources(args, MAPPING, cfg)
    assert isinstance(worker, ReplayWorker) and worker.loop and control is None
    args = parser.parse_args(["gui", "--replay", str(tmp_path / "a.h5"), "--speed", "2"])
    ((worker, _),) = make_sources(args, MAPPING, cfg)
    assert not worker.loop and worker.speed == 2.0
