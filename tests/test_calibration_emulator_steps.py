"""Gain steps inside slices and dead strips, through the real chain (tests/emulated_fe55.py:
emulator physics -> card -> protocol -> decoder -> builder -> processing -> calibration) with the
calibration run script. The full study (step detection rate, false flags, pulls, bias next to
dead strips over many seeds) is tools/calibration_accuracy.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq, pedestal_rows, with_rates

from agetdaq.readout.analysis.calibration import GainMap, GainMapConfig, GainTrend, TrendConfig
from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.analysis.calibration.runs import calibration_events
from agetdaq.readout.simulation.emulator.scenario import Scenario

pytestmark = pytest.mark.slow

THRESHOLD = 200.0


def _run(daq: EmulatedDaq, trend: GainTrend, n: int, t0: float, seconds: float):
    """One calibration run from scenario time ``t0``, fed to the trend as one slice."""
    rows, _ = daq.calibration_run(n, t0, duration_s=seconds)
    trend.feed(calibration_events(rows, rows["timestamp"] * 20e-9 + t0))
    return trend.close()


def test_a_gain_step_inside_a_calibration_run_is_split_not_reported() -> None:
    """gain-drop-20: 100 % -> 80 % at t = 60 s. A run from 56 to 64 s holds the step; the runs
    before and after are clean and stay plain good points."""
    daq = EmulatedDaq("gain-drop-20", seed=41, energy_min_adc=THRESHOLD, script="calibration")
    trend = GainTrend(TrendConfig(slice_xrays=10**9, threshold_adc=THRESHOLD))
    before = _run(daq, trend, 700, 20.0, 7.0)
    step = _run(daq, trend, 900, 56.0, 8.0)
    after = _run(daq, trend, 700, 80.0, 7.0)
    assert before.status == "ok" and before.reference and after.status == "ok"
    assert after.gain_rel == pytest.approx(0.8, abs=3 * after.gain_rel_err + 0.002)
    assert step.status == "split" and not step.ok, step.reason
    assert step.change_rel == pytest.approx(-0.2, abs=0.02)
    first, guard, second = step.parts  # the X-rays within the cut's uncertainty left out
    assert first.good and second.good and not guard.good
    assert first.gain_rel == pytest.approx(1.0, abs=0.012)
    assert second.gain_rel == pytest.approx(0.8, abs=0.012)
    # the split falls at the step: the parts' time ranges bracket t = 60 s
    assert first.t_stop_s <= 60.05 and second.t_start_s >= 59.95
    assert guard.t_start_s <= 60.05 and guard.t_stop_s >= 59.95


def test_dead_strips_do_not_read_as_gain_in_the_map() -> None:
    """Issue 15: charge lost on dead strips read as gain (up to 8 % deficits, the map's scale
    4 % low). Two dead X and two dead Y strips cross cell (2, 3) of a 6 x 6 map; cell (3, 2)
    is clean. The dead strips come from the DAQ's own pedestal table."""
    sc = Scenario.load("calibration")
    sc = replace(
        sc,
        noise=replace(sc.noise, dead_strips=(53, 58, 188, 193)),
        fe55=replace(sc.fe55, area="spot", centre_mm=(0.0, 0.0), radius_mm=11.0),
    )
    daq = EmulatedDaq(with_rates(sc, 100.0, 0.0), seed=5, energy_min_adc=THRESHOLD,
                      script="calibration")  # fmt: skip
    bad = BadStrips.from_pedestal_rows(pedestal_rows(daq))
    assert bad.names == ("X53", "X58", "Y68", "Y73")
    rows, _ = daq.rows(["xray"] * 2000, np.zeros(2000))
    events = calibration_events(rows, np.zeros(len(rows)))
    maps = {}
    for name, strips in (("without", None), ("with", bad)):
        gm = GainMap(GainMapConfig(), strips)
        gm.fill(events)
        maps[name] = gm.fit()
    crossed = {k: m.rel_gain[3, 2] / m.rel_gain[2, 3] for k, m in maps.items()}
    assert crossed["without"] < 0.95  # the deficit the list removes
    assert crossed["with"] == pytest.approx(1.0, abs=0.03)
    scale = maps["with"].reference_peak_adc / maps["without"].reference_peak_adc
    assert scale > 1.02  # the median of the cells was pulled down with them
    assert maps["with"].regions[3 * 6 + 2].excluded > 100
