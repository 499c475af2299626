"""The monitor's 55Fe view against the emulator's truth: gain falling from 100 % to 80 %.

Events come from the emulator's physics and card through the DAQ's real decoding and processing
(tests/emulated_fe55.py, no sockets), are put on the wire exactly as the DAQ's MonitorFeed does
(agetdaq.readout.transport.stream encode/decode), and feed the GUI's StreamModel: its gain trend
must follow the truth within 2 % per point and the gain-drift alarm must fire.
"""

from __future__ import annotations

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq, drift_time_for_gain

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.model import StreamModel
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.schema import SUMMARY_FIELDS
from agetdaq.readout.transport.stream import decode_message, encode_message

GAINS = (1.0, 0.93, 0.86, 0.8)
N_XRAYS = 700


def _summary(rows: np.ndarray, seq: int, t0: float):
    arrays = {key: np.ascontiguousarray(rows[f]) for key, f in SUMMARY_FIELDS.items()}
    arrays["time_s"] = t0 + rows["timestamp"] * 20e-9
    frames = encode_message("summary", seq, {"run_number": 1, "n": len(rows)}, arrays, "d0")
    return decode_message([bytes(f) for f in frames])


@pytest.fixture(scope="module")
def drift():
    daq = EmulatedDaq("gain-drift", seed=4, energy_min_adc=200.0)
    model = StreamModel(
        "tcp://d0",
        StripMapping.default(),
        MonitorConfig(slice_xrays=10**6, live_fit_s=0.0),
        load_rules(None),
    )
    truths = []
    for k, g in enumerate(GAINS):
        rows, truth = daq.calibration_run(int(N_XRAYS * 1.3), drift_time_for_gain(daq.scenario, g))
        model.apply(_summary(rows, k, 1000.0 * k))
        for cmd in (None, "close"):  # the events are fed, then the crew's "close slice now"
            if cmd:
                model.gain.command(cmd)
            task = model.gain.next_task(now=float(k))
            assert task is not None
            model.gain.accept(task())
        xray = [t["gain"] for t in truth if t["kind"] == "xray" and t.get("gain")]
        truths.append(float(np.mean(xray)))
    return model, np.array(truths) / truths[0]


def test_gain_trend_follows_the_truth_within_2_percent(drift):
    model, truth = drift
    gain = model.gain.trend.column("gain_rel")
    assert len(gain) >= len(GAINS)
    assert np.all(model.gain.trend.column("ok") == 1)
    points = gain[: len(GAINS)]
    assert np.all(np.abs(points / truth - 1) < 0.02), (points, truth)


def test_gain_drift_alarm_fires(drift):
    model, _ = drift
    assert model.metrics()["gain_rel"] < 0.9
    model.evaluate_alarms(now=0.0)
    fired = model.evaluate_alarms(now=600.0)  # past every rule's delay
    names = {a.rule.name for a in model.alarms.active if a.fired} | {a.rule.name for a in fired}
    assert "gain-drift" in names
