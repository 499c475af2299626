"""End to end: the real board emulator and DAQ server (child processes on 127.0.0.1), driven
through the GUI's run-control panel; the stream fills the views; the run file replays."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import free_tcp_port, free_udp_port

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.replay import ReplayWorker
from agetdaq.gui.views import HitmapView, RunControlView
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import StreamWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.cli.demo import board_answers
from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.network, pytest.mark.slow]
MAPPING = StripMapping.default()
PY = [sys.executable, "-m", "agetdaq"]


@pytest.fixture
def daq(tmp_path):
    """(control address, stream address, data dir) of a running emulator + DAQ server."""
    bec = free_udp_port()
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    stream = f"tcp://127.0.0.1:{free_tcp_port()}"
    data = tmp_path / "data"
    log = (tmp_path / "children.log").open("w")
    children = [subprocess.Popen([*PY, "emulate", "--port", str(bec), "--scenario", "calibration"],
                                 stdout=log, stderr=subprocess.STDOUT)]  # fmt: skip
    try:
        if not board_answers(bec, children[0], 120.0):
            pytest.fail("the emulator did not come up: " + (tmp_path / "children.log").read_text())
        # the crew's order: a pedestal run first (the calibration run type reads every channel
        # whole, raw pedestals included), its table for the DAQ server
        peds = tmp_path / "pedestals.h5"
        pedestal = [*PY, "pedestal", "--board", f"127.0.0.1:{bec}", "--data-dir", str(data),
                    "--events", "60", "-o", str(peds)]  # fmt: skip
        subprocess.run(pedestal, stdout=log, stderr=subprocess.STDOUT, timeout=180, check=True)
        serve = [*PY, "serve", "--board", f"127.0.0.1:{bec}", "--control", control, "--publish",
                 stream, "--data-dir", str(data), "--pedestals", str(peds)]  # fmt: skip
        children.append(subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT))
        yield control, stream, data
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)
        log.close()


def test_gui_drives_a_run_of_the_real_daq(qtbot, daq):
    control, stream, data = daq
    w = MainWindow(
        [(StreamWorker(stream), ControlWorker(control, poll_s=0.5, timeout_ms=5000))],
        MAPPING, MonitorConfig(), load_rules(),
    )  # fmt: skip
    qtbot.addWidget(w)
    w.show()
    rc = w.view(RunControlView)
    w.tabs.setCurrentWidget(rc.widget)
    w.start()
    try:
        qtbot.waitUntil(lambda: rc.start_button.isEnabled(), timeout=90000)  # server up, idle
        assert not rc.stop_button.isEnabled()
        rc.run_type.setCurrentText("calibration")
        rc.comment.setText("GUI end-to-end test")
        rc.start_button.click()
        qtbot.waitUntil(lambda: rc.stop_button.isEnabled(), timeout=30000)
        assert not rc.start_button.isEnabled() and rc.current_state() == "running"
        hitmap = w.view(HitmapView)
        w.tabs.setCurrentWidget(hitmap.widget)
        qtbot.waitUntil(lambda: w.model.hist.total >= 50, timeout=30000)
        qtbot.waitUntil(lambda: hitmap.image.image.sum() > 0, timeout=5000)
        assert w.model.state() == "running" and w.model.status["run_type"] == "calibration"
        assert w.model.link.state == "connected" and w.model.events
        w.redraw()
        assert "RUNNING" in w.banner.text()
        w.tabs.setCurrentWidget(rc.widget)
        rc.stop_button.click()
        qtbot.waitUntil(lambda: rc.start_button.isEnabled(), timeout=30000)
        qtbot.waitUntil(lambda: w.model.state() in ("configured", "idle"), timeout=10000)
        assert "start: ok" in rc.log.toPlainText() and "stop: ok" in rc.log.toPlainText()
    finally:
        w.shutdown()
    files = sorted(data.rglob("*.h5"))
    assert files, "no run file written"
    with RunFile(files[-1]) as rf:
        n_file = rf.n_events
        assert rf.metadata().get("comment") == "GUI end-to-end test"
    assert n_file > 0
    replay = MainWindow([(ReplayWorker(files[-1], speed=0.0), None)], MAPPING, MonitorConfig())
    qtbot.addWidget(replay)
    replay.start()
    try:
        qtbot.waitUntil(lambda: replay.model.link.state == "finished", timeout=30000)
        assert replay.model.status["events"] == n_file
        assert replay.model.summary_events > 0 and replay.model.hist.total > 0
        assert np.isfinite(replay.model.hist.hitmap).all()
    finally:
        replay.shutdown()
