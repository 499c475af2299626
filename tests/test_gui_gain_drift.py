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
