"""Live and replay show the same numbers from the same code.

A calibration run is recorded through the real DAQ (the BEC emulator on 127.0.0.1, the
Acquisition engine, its data path and run file) while a ZeroMQ subscriber collects the live
``summary``, ``hist`` and ``calib`` messages. The file is then replayed by the GUI's replay worker,
which runs the DAQ's own monitor feed over the file's rows: every summary row, the run's hitmap,
occupancy, spectrum and class counts, and every 55Fe trend point must be the same.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from scenario_crew import replay_messages

from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.model import StreamModel
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.stream import Subscriber

pytestmark = [pytest.mark.network, pytest.mark.slow]
SECONDS = 14.0
TOPICS = ("status", "summary", "hist", "calib")


def _scenario(fe55_hz: float) -> Scenario:
    data = Scenario.load("calibration").as_dict()
    data.pop("path", None)
    data["source"] = {"fe55": data.pop("fe55"), "muon": data.pop("muon")}
    data["source"]["fe55"].update(rate_hz=fe55_hz, area="full")
    return Scenario.from_dict(data, "live-vs-replay")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(run file, live messages of the run, subscriber gaps, run number) of a calibration run."""
    tmp = tmp_path_factory.mktemp("live")
    emu = Emulator(_scenario(300.0), port=0, seed=11).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp))
    acq = Acquisition(settings, publish="tcp://127.0.0.1:*")
    sub = Subscriber(acq.publisher.address, topics=TOPICS, hwm=100_000)
    path = tmp / "run.h5"
    live = []
    try:
        end = time.monotonic() + 30
        while sub.recv(50) is None and time.monotonic() < end:  # the subscription is in place
            acq.poll()
        acq.configure("run")
        run = acq.start_run("calibration", "live vs replay", path, seconds=SECONDS).number
        end = time.monotonic() + SECONDS + 60
        quiet_until = None
        while time.monotonic() < end:
            acq.poll()
            msg = sub.recv(20)
            if msg is not None and msg.header.get("run_number") == run:
                live.append(msg)
            if acq.state != "running" and quiet_until is None:
                quiet_until = time.monotonic() + 2.0  # the end of run's last messages
            if quiet_until is not None and time.monotonic() > quiet_until:
                break
        gaps = sub.gaps
    finally:
        acq.close()
        emu.stop()
        sub.close()
    return path, live, gaps, run


def _summary_rows(msgs: list) -> dict[str, np.ndarray]:
    parts = [m.arrays for m in msgs if m.topic == "summary" and m.header["n"]]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _points(msgs: list) -> list:
    return [m for m in msgs if m.topic == "calib" and m.header.get("kind") == "point"]


def test_replay_shows_what_the_daq_showed_live(qtbot, recorded):
    path, live, gaps, run = recorded
    assert gaps == 0, "the live stream lost messages: the comparison would be unfair"
    with RunFile(path) as f:
        assert f.metadata()["run_number"] == str(run) and f.n_events > 1000
        n_events = f.n_events
    replay = replay_messages(qtbot, path)

    # every summary row: the same events with the same features, in the same order
    live_rows, replay_rows = _summary_rows(live), _summary_rows(replay)
    assert live_rows.keys() == replay_rows.keys()
    assert len(live_rows["event_id"]) > 1000
    for key in live_rows:
        np.testing.assert_array_equal(replay_rows[key], live_rows[key], err_msg=key)

    # the run's histograms: the DAQ's last hist of the run against the replay's last
    live_hist = [m for m in live if m.topic == "hist"][-1]
    replay_hist = [m for m in replay if m.topic == "hist"][-1]
    assert live_hist.header["events"] == replay_hist.header["events"] == n_events
    for key in ("class_counts", "not_processed", "occupancy_events", "outside"):
        assert replay_hist.header[key] == live_hist.header[key], key
    assert live_hist.header["class_counts"]["xray"] > 1000
    for key in ("hitmap", "occupancy", "spectrum", "x_edges_mm", "y_edges_mm"):
        np.testing.assert_array_equal(replay_hist.arrays[key], live_hist.arrays[key], key)
    assert live_hist.arrays["occupancy"].sum() > 0

    # the 55Fe trend: every point with its fit and its spectrum
    live_points, replay_points = _points(live), _points(replay)
    assert len(live_points) >= 2 and len(replay_points) == len(live_points)
    for a, b in zip(live_points, replay_points):
        ha = {k: v for k, v in a.header.items() if k not in ("time", "seq", "source")}
        hb = {k: v for k, v in b.header.items() if k not in ("time", "seq", "source")}
        assert hb == ha
        np.testing.assert_array_equal(b.arrays["spectrum"], a.arrays["spectrum"])
    assert live_points[0].header["ok"] and live_points[0].header["gain_rel"] == 1.0

    # and the monitor's model shows the same numbers from either
    models = []
    for msgs in (live, replay):
        m = StreamModel("x", StripMapping.default(), MonitorConfig())
        for msg in msgs:
            m.apply(msg)
        models.append(m)
    a, b = models
    np.testing.assert_array_equal(a.hist.hitmap, b.hist.hitmap)
    np.testing.assert_array_equal(a.hist.occupancy, b.hist.occupancy)
    np.testing.assert_array_equal(a.class_totals, b.class_totals)
    for name in ("gain_rel", "resolution_pct", "threshold_kev"):
        np.testing.assert_array_equal(a.calib.trend.column(name), b.calib.trend.column(name))
    assert a.latest_gain()[0] is not None
