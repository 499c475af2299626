"""The DAQ's 55Fe gain reference belongs to a readout (the run's command script): a calibration
run taken with another script starts a reference of its own instead of comparing its energy sums
with those of another readout (issue 14: "gain at 0.759 of the reference" after a script change
would be a misleading alarm), and every ``calib`` message says the readout and where its
reference comes from."""

from __future__ import annotations

import time

import numpy as np
import pytest
from emulated_fe55 import EmulatedDaq, drift_time_for_gain

from agetdaq.readout.analysis.calibfeed import CalibFeed
from agetdaq.readout.analysis.calibration import TrendConfig
from agetdaq.readout.analysis.sink import Collect

THRESHOLD = 200.0


@pytest.fixture(scope="module")
def rows() -> dict[float, np.ndarray]:
    daq = EmulatedDaq("gain-drift", seed=31, energy_min_adc=THRESHOLD)
    out = {}
    for day, g in enumerate((1.0, 0.7)):
        t0 = drift_time_for_gain(daq.scenario, g)
        out[g], _ = daq.calibration_run(600, t0, duration_s=0.5, run_start_unix=1.7e9 + day)
    return out


def _run(feed: CalibFeed, number: int, readout: str, rows: np.ndarray) -> list:
    feed.use_readout(readout)
    feed.begin_run(number, "calibration")
    for a in range(0, len(rows), 64):
        feed.on_rows(rows[a : a + 64])
    points = [p for p in feed.points if p.ok]
    feed.close_run()
    return points


def test_each_readout_has_its_own_gain_reference(rows) -> None:
    sink = Collect()
    feed = CalibFeed(sink, TrendConfig(slice_xrays=250, threshold_adc=THRESHOLD))
    first = _run(feed, 1, "calibration", rows[1.0])
    assert first and feed.reference.source == "run 1 slice 0"
    ref_calibration = feed.reference_gain
    # another script, at a lower energy sum per X-ray (here: a lower gain stands for it): not
    # read against the first script's reference, but against its own first good slice
    other = _run(feed, 2, "run", rows[0.7])
    assert other and all(p.gain_rel == pytest.approx(1.0, abs=0.03) for p in other)
    assert feed.reference.source == "run 2 slice 0"
    assert feed.reference_gain == pytest.approx(0.7 * ref_calibration, rel=0.03)
    msgs = [m.header for m in sink.topic("calib") if m.header["run_number"] == 2]
    assert msgs and {h["readout"] for h in msgs} == {"run"}
    assert {h["reference_from"] for h in msgs} == {"run 2 slice 0"}
    # back to the first script: its own reference again, so the drop is seen
    back = _run(feed, 3, "calibration", rows[0.7])
    assert back and all(p.gain_rel == pytest.approx(0.7, abs=0.03) for p in back)
    assert feed.reference.source == "run 1 slice 0" and feed.reference_gain == ref_calibration
    msgs = [m.header for m in sink.topic("calib") if m.header["run_number"] == 3]
    assert {h["reference_from"] for h in msgs} == {"run 1 slice 0"}


def test_a_reference_from_run_control_or_the_settings(rows) -> None:
    feed = CalibFeed(Collect(), TrendConfig(slice_xrays=250, threshold_adc=THRESHOLD))
    _run(feed, 1, "calibration", rows[1.0])
    feed.use_readout("run")
    feed.begin_run(2, "calibration")
    feed.set_reference(41.5)  # the crew's, for this run's readout only
    assert feed.reference.source == "run control" and feed.reference_gain == 41.5
    feed.close_run()
    assert feed.references["calibration"].gain != 41.5
    # the settings' reference stands for every readout without one of its own
    configured = CalibFeed(None, TrendConfig(slice_xrays=250, reference_gain=50.0))
    configured.use_readout("calibration-zs")
    configured.begin_run(1, "calibration")
    assert configured.reference.source == "settings" and configured.trend.reference_gain == 50.0


def test_the_acquisition_tells_the_feed_the_run_script(tmp_path) -> None:
    """A real emulator and Acquisition: each calibration run's readout is the script it took."""
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings
    from agetdaq.readout.simulation.emulator.server import Emulator

    emu = Emulator("calibration", port=0, seed=8).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings)
    try:
        for script in ("run", "calibration-zs"):
            acq.configure(script)
            acq.start_run("calibration", "readout test", tmp_path / f"{script}.h5", seconds=0.3)
            assert acq.calib.run_readout == script
            end = time.monotonic() + 30.0
            while acq.state == "running" and time.monotonic() < end:
                time.sleep(0.05)
                acq.poll()
            assert acq.state != "running", "run did not stop by itself"
    finally:
        acq.close()
        emu.stop()
