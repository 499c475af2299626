"""The monitor's 55Fe view against the emulator's truth: gain falling from 100 % to 80 %.

Events come from the emulator's physics and card through the DAQ's real decoding and processing
(tests/emulated_fe55.py, no sockets), go through the DAQ's own monitor feed and its 55Fe
calibration feed (agetdaq.readout.analysis.monitor / calibfeed, as on the data path of a
calibration run) whose messages are encoded and decoded as on the wire (an in-process sink), and
feed the GUI's StreamModel: its gain trend must follow the truth within 2 % per point, and the one
gain number it shows must fire the gain-drift alarm.
"""

from __future__ import annotations

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq, drift_time_for_gain

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.model import StreamModel
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.calibration import TrendConfig
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.analysis.sink import Collect

GAINS = (1.0, 0.93, 0.86, 0.8)
N_XRAYS = 700
THRESHOLD = 200.0


@pytest.fixture(scope="module")
def drift():
    daq = EmulatedDaq("gain-drift", seed=4, energy_min_adc=THRESHOLD)
    sink = Collect("d0")
    calib = CalibFeed(sink, TrendConfig(slice_xrays=10**6, threshold_adc=THRESHOLD))
    feed = MonitorFeed(sink, calib=calib)
    feed.begin_run(1, "calibration")
    truths = []
    for g in GAINS:
        rows, truth = daq.calibration_run(int(N_XRAYS * 1.3), drift_time_for_gain(daq.scenario, g))
        for a in range(0, len(rows), 32):  # batches as the data path makes them
            feed.on_batch(rows[a : a + 32], None, None)
        calib.close_slice()  # the events are fed, then the slice is closed
        xray = [t["gain"] for t in truth if t["kind"] == "xray" and t.get("gain")]
        truths.append(float(np.mean(xray)))
    feed.end_run()
    model = StreamModel("tcp://d0", StripMapping.default(), MonitorConfig(), load_rules(None))
    for msg in sink.messages:
        model.apply(msg)
    return model, np.array(truths) / truths[0]


def test_gain_trend_follows_the_truth_within_2_percent(drift):
    model, truth = drift
    gain = model.calib.trend.column("gain_rel")
    assert len(gain) == len(GAINS)
    assert np.all(model.calib.trend.column("ok") == 1)
    points = gain[: len(GAINS)]
    assert np.all(np.abs(points / truth - 1) < 0.02), (points, truth)


def test_gain_drift_alarm_fires(drift):
    model, _ = drift
    assert model.metrics()["gain_rel"] < 0.9
    model.evaluate_alarms(now=0.0)
    fired = model.evaluate_alarms(now=600.0)  # past every rule's delay
    names = {a.rule.name for a in model.alarms.active if a.fired} | {a.rule.name for a in fired}
    assert "gain-drift" in names


def test_a_slice_with_a_gain_step_is_published_as_its_parts():
    """The DAQ's judge splits a slice where the gain changed; the stream carries its parts (each
    with its own fit, as ``agetdaq calibrate`` reports them), so the monitor's trend shows the
    step instead of one failed point."""
    daq = EmulatedDaq("gain-drift", seed=5, energy_min_adc=THRESHOLD)
    sink = Collect("d0")
    calib = CalibFeed(sink, TrendConfig(slice_xrays=10**6, threshold_adc=THRESHOLD))
    calib.begin_run(1, "calibration")
    truths = []
    for gains in ((1.0,), (0.93, 0.8)):  # the reference slice, then a slice with a step
        for g in gains:
            rows, truth = daq.calibration_run(
                int(N_XRAYS * 1.3), drift_time_for_gain(daq.scenario, g)
            )
            calib.on_rows(rows)
            truths.append(
                np.mean([t["gain"] for t in truth if t["kind"] == "xray" and t.get("gain")])
            )
        calib.close_slice()
    calib.close_run()
    points = [m.header for m in sink.messages if m.topic == "calib" and m.header["kind"] == "point"]
    assert points[0]["ok"] and points[0]["part"] == ""
    parts = points[1:]
    assert len(parts) >= 2 and all(h["slice"] == points[1]["slice"] for h in parts)
    assert [h["part"] for h in parts] == [f"{k}/{len(parts)}" for k in range(1, len(parts) + 1)]
    good = [h for h in parts if h["ok"]]
    assert len(good) >= 2 and all("part" in h["flag"] for h in good)
    assert sum(h["counts"] for h in parts) == calib.points[1].n_xrays
    first, last = good[0]["gain_rel"], good[-1]["gain_rel"]
    assert first == pytest.approx(truths[1] / truths[0], rel=0.02)
    assert last == pytest.approx(truths[2] / truths[0], rel=0.02)
    assert sum(h["events"] for h in parts) == calib.points[1].n_events
    model = StreamModel("tcp://d0", StripMapping.default(), MonitorConfig(), load_rules(None))
    for msg in sink.messages:
        model.apply(msg)
    assert model.calib.trend.column("ok").sum() == 1 + len(good)
