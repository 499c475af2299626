"""Replay of a run file (written with agetdaq.readout.store.writer.RunWriter) through the monitor:
the DAQ's own feed over the file's rows; and ``agetdaq gui --replay ... --screenshot`` writing a
PNG of the whole window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtGui import QImage

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.replay import ReplayWorker
from agetdaq.gui.synthetic import pedestal_arrays
from agetdaq.gui.window import MainWindow
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout import schema as S
from agetdaq.readout.analysis.monitor import summary_arrays
from agetdaq.readout.cli import main as cli_main
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.writer import RunWriter

MAPPING = StripMapping.default()
N_EVENTS = 600
T0_NS = 1_700_000_000 * 10**9


def write_run(path: Path, n: int = N_EVENTS, seconds: float = 6.0) -> np.ndarray:
    """A run file as the DAQ writes one in store mode ``hits``: events with features, every
    50th kept by the software trigger with the waveforms of its hit strips, a pedestal table and
    a status snapshot. Returns the event rows."""
    rng = np.random.default_rng(8)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["event_id"] = np.arange(n)
    ev["event_count"] = np.arange(n)
    ev["time_ns"] = T0_NS + np.linspace(0, seconds * 1e9, n).astype(np.int64)
    ev["cls"] = np.where(np.arange(n) % 4 == 0, 2, 1)
    ev["energy"] = rng.normal(3000, 250, n)
    ev["x_mm"] = rng.uniform(-20, 20, n)
    ev["y_mm"] = rng.uniform(-20, 20, n)
    ev["trig"] = np.arange(n) % 50 == 0
    ev["build_flags"][5] = 0x8000  # not processed: no summary row
    peds = np.zeros(len(pedestal_arrays(MAPPING)["strip"]), S.PEDESTAL_DTYPE)
    for k, v in pedestal_arrays(MAPPING, noisy=(17,)).items():
        peds[k] = v
    chans, bins, adcs = [], [], []
    for row in range(0, n, 50):
        for strip in (10, 11, 130):
            ch = np.zeros(1, S.CHANNEL_DTYPE)
            ch["event_row"], ch["strip"] = row, strip
            ch["sample_start"], ch["n_samples"] = sum(len(b) for b in bins), 20
            chans.append(ch)
            bins.append(np.arange(100, 120, dtype=np.uint16))
            adcs.append(np.full(20, 250 + 100 + strip, np.uint16))  # 100 + strip above pedestal
    meta = {"run_number": 42, "run_type": "calibration", "comment": "replay test",
            "detector": "bench-line"}  # fmt: skip
    with RunWriter(path, EVENT_DTYPE, metadata=meta, pedestals=peds) as w:
        w.append_events(ev, np.concatenate(chans), np.concatenate(bins), np.concatenate(adcs))
        w.append_status({"time": T0_NS / 1e9 + 1, "losses": {"socket": {"dropped": 3}},
                         "mb_per_s": 1.5})  # fmt: skip
    return ev


def test_summary_arrays_use_the_stream_names():
    ev = np.zeros(4, EVENT_DTYPE)
    ev["cls"], ev["energy"], ev["ncl_x"], ev["time_ns"] = 1, 5.0, 2, 2_000_000_000
    ev["build_flags"][3] = 0x8000  # not processed online: no summary row
    a = summary_arrays(ev)
    assert list(a["class"]) == [1, 1, 1] and list(a["energy_adc"]) == [5.0] * 3
    assert list(a["n_clusters_x"]) == [2] * 3 and list(a["time_s"]) == [2.0] * 3


def test_replay_emits_the_stream_topics_into_the_views(qtbot, tmp_path):
    path = tmp_path / "run42.h5"
    ev = write_run(path)
    worker = ReplayWorker(path, speed=0.0)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: w.model.link.state == "finished", timeout=20000)
        qtbot.waitUntil(lambda: not worker.isRunning(), timeout=5000)
        m = w.model
        processed = ev[(ev["build_flags"] & 0x8000) == 0]
        assert m.name == "bench-line" and m.run_number == 42
        assert m.summary_events == len(processed)
        assert m.hist.total == int(np.count_nonzero(processed["cls"] == 1))
        assert m.hist.not_processed == 1 and m.hist.class_counts["muon"] == 150
        assert m.hist.occupancy_events == N_EVENTS // 50  # the kept events' recorded hits
        assert list(np.flatnonzero(m.hist.occupancy)) == [10, 11, 130]
        assert m.pedestal.present and m.pedestal.count(2) == 1
        assert m.status["state"] == "idle" and m.status["events"] == N_EVENTS
        assert m.status["losses"] == {"socket": {"dropped": 3}}
        assert len(m.rates.series) >= 6  # one status per second of run time
        assert m.events, "no sampled event"
        last = m.events[-1]
        assert last.waveforms.shape == (240, 512)
        assert last.header["event_id"] == 550 and last.header["samples"] == "recorded"
        assert list(np.flatnonzero(last.hits)) == [10, 11, 130]  # the recorded hit strips
        assert last.waveforms[130, 105] == pytest.approx(480.0)  # the ADC as recorded
        assert last.waveforms[130, 50] == 0.0  # not stored
        w.redraw()
        assert "REPLAY" in w.banner.text() and "run 42" in w.banner.text()
        assert m.metrics()["data_age_s"] is None  # a finished replay raises no no-data alarm
    finally:
        w.shutdown()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [("nope.h5", None, "no such file"), ("junk.dat", b"not a run" * 10, "not an .aqs")],
)
def test_replay_of_a_bad_file_reports_an_error(qtbot, tmp_path, name, content, says):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    worker = ReplayWorker(path)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.start()
    try:
        qtbot.waitUntil(lambda: w.model.link.state == "error", timeout=5000)
        w.redraw()
        assert says in w.banner.text() and name in w.banner.text()
    finally:
        w.shutdown()


def test_cli_screenshot_of_a_replay(qapp, tmp_path):
    path = tmp_path / "run.h5"
    write_run(path)
    out = tmp_path / "shot.png"
    argv = ["gui", "--replay", str(path), "--speed", "0", "--screenshot", str(out),
            "--after", "1.5", "--snapshot-dir", str(tmp_path)]  # fmt: skip
    assert cli_main(argv) == 0
    img = QImage(str(out))
    assert not img.isNull() and img.width() >= 1000 and img.height() >= 700
    colours = {img.pixel(x, y) for x in range(0, img.width(), 37) for y in range(0, 80, 7)}
    assert len(colours) > 3  # the banner and toolbar are drawn, not a blank grab


def test_cli_rejects_bad_options(qapp, tmp_path, capsys):
    bad = tmp_path / "alarms.toml"
    bad.write_text("[[rule]]\nname='x'\n")
    shot = tmp_path / "x.png"
    assert cli_main(["gui", "--alarms", str(bad), "--screenshot", str(shot)]) == 2
    assert "metric" in capsys.readouterr().err
    argv = ["gui", "--connect", "tcp://127.0.0.1:1", "--control", "tcp://a:1", "--control",
            "tcp://b:2", "--screenshot", str(shot)]  # fmt: skip
    assert cli_main(argv) == 2
    assert "pair up" in capsys.readouterr().err
    assert not shot.exists()


def test_cli_replay_of_a_missing_file_fails_before_any_window(qapp, tmp_path, capsys):
    missing, shot = tmp_path / "R00042_none.h5", tmp_path / "x.png"
    assert cli_main(["gui", "--replay", str(missing), "--screenshot", str(shot)]) == 1
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert not shot.exists()


def test_ctrl_c_while_the_monitor_starts_closes_it_with_exit_0(qapp, tmp_path, monkeypatch):
    import signal

    from agetdaq.gui import app

    path = tmp_path / "run.h5"
    write_run(path)
    real_build, built = app.build, []

    def build_then_ctrl_c(*a, **kw):
        built.append(real_build(*a, **kw))
        signal.raise_signal(signal.SIGINT)  # the operator's Ctrl-C, before the window shows
        return built[-1]

    monkeypatch.setattr(app, "build", build_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    shot = tmp_path / "x.png"
    assert cli_main(["gui", "--replay", str(path), "--screenshot", str(shot)]) == 0
    assert built and not built[0].isVisible() and not shot.exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is given back
    built[0].shutdown()


@pytest.mark.slow
def test_agetdaq_gui_subprocess_writes_a_screenshot(tmp_path):
    """The real command line, in its own process (what a shift crew or CI runs)."""
    path = tmp_path / "run.h5"
    write_run(path, n=100, seconds=1.0)
    out = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "agetdaq", "gui", "--replay", str(path), "--speed", "0",
           "--screenshot", str(out), "--after", "1"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not QImage(str(out)).isNull()
