"""Scenario 1, a shift, as the crew runs it (README order), real processes only: the emulated BEC
(``agetdaq emulate --truth``), the start-up script, ``agetdaq pedestal --upload``, a calibration
run (``agetdaq run --script calibration``), ``agetdaq calibrate``, then ``agetdaq serve`` with the
monitor attached for a background run started and stopped from its run control. Each step is
checked against the emulator's truth: pedestal noise, X-ray efficiency and event counts, gain and
resolution, and what the monitor counted.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from daq_procs import DaqProcesses
from emulated_fe55 import adc_per_kev
from scenario_crew import Monitor, opens, truth_of, wait_for, xray_efficiency

from agetdaq.readout.schema import EventClass
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(400)]
FE55_HZ = 40.0  # light enough for the calibration script's full waveforms on a loaded machine
SCENARIO = f"""base = "calibration"
description = "the shift: 55Fe at {FE55_HZ} Hz over the whole area, muons, constant gain"
[source.fe55]
rate_hz = {FE55_HZ}
"""
SETTINGS = "[daq]\nheartbeat_s = 0.5\n"
PED_EVENTS, CAL_SECONDS, BG_EVENTS = 150, 20, 200


def _json(done) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def shift(tmp_path_factory, qapp) -> dict:
    """The shift, step by step; what each step left (summaries, files, truth, monitor)."""
    tmp = tmp_path_factory.mktemp("shift")
    (tmp / "shift.toml").write_text(SCENARIO)
    (tmp / "daq.toml").write_text(SETTINGS)
    truth_path = tmp / "truth.jsonl"
    emulate = ("--truth", str(truth_path), "--bank", "0", "--seed", "5")
    procs = DaqProcesses(tmp, str(tmp / "shift.toml"), SETTINGS, emulate_args=emulate)
    board = ("--board", procs.board, "--data-dir", "data", "--config", "daq.toml", "--json")
    out: dict = {"tmp": tmp, "scenario": Scenario.load(tmp / "shift.toml")}
    monitor = None
    t0 = time.monotonic()
    try:
        # start-up: the board answers, the cold start-up script configures it
        procs.start_emulator()
        procs.wait_board()
        out["stat_at_startup"] = procs.emu("stat")
        startup = ("--script", "startup", "--run-type", "pedestal", "--seconds", "2")
        out["startup"] = _json(procs.cli("run", *board, *startup, "-o", "startup.h5"))
        # pedestal run with upload
        out["ped"] = _json(procs.cli("pedestal", *board, "-o", "ped.h5", "--upload", "--events",
                                     str(PED_EVENTS)))  # fmt: skip
        # calibration run (every channel read whole), then the calibration
        out["cal"] = _json(procs.cli("run", *board, "--pedestals", "ped.h5", "--script",
                                     "calibration", "--run-type", "calibration", "--seconds",
                                     str(CAL_SECONDS), "-o", "cal.h5"))  # fmt: skip
        out["calib"] = _json(procs.cli("calibrate", "cal.h5", "--output", "cal", "--no-plots",
                                       "--json"))  # fmt: skip
        # background run started and stopped from the monitor, on the DAQ server
        procs.start_server()
        procs.wait_ready()
        monitor = Monitor([(procs.stream, procs.control)]).start()
        monitor.start_run("background", "run")
        wait_for(lambda: (monitor.model.status.get("events") or 0) >= BG_EVENTS, 90,
                 f"{BG_EVENTS} events")  # fmt: skip
        out["table_in_force"] = monitor.model.status.get("pedestal_table")
        monitor.stop_run()
        wait_for(lambda: "ended" in monitor.run_control.replies.text(), 20, "the run's end")
        monitor.refresh()
        out["monitor"] = {
            "events": monitor.model.status.get("events"),
            "classes": monitor.model.class_totals.tolist(),
            "alarms": monitor.alarm_names(),
            "summary": monitor.run_control.run_list.summary_label.text(),
        }
        monitor.close()
        monitor = None
        procs.stop_server()
        out["serve_rc"] = procs.server.returncode
    finally:
        if monitor is not None:
            monitor.close()
        procs.close()
        print(f"the shift took {time.monotonic() - t0:.0f} s")
    out["truth"] = procs.truth_runs(truth_path)
    return out


def _events(path) -> np.ndarray:
    with RunFile(path) as f:
        return f.events()


def test_start_up(shift):
    assert "events=0" in shift["stat_at_startup"]  # a cold board
    s = shift["startup"]
    assert s["state"] == "configured" and s["stop_reason"] == "2 s elapsed"
    assert s["events_in_file"] == 0  # the start-up script leaves the triggers off


def test_pedestal_run_with_upload_measures_the_emulators_noise(shift):
    ped, sc = shift["ped"], shift["scenario"]
    assert ped["in_force"] and ped["uploaded_commands"] > 0, ped
    assert ped["upload_check"]["strips_off"] == 0 and not ped["dead"] and not ped["noisy"]
    assert (shift["tmp"] / "data" / "pedestals.h5").exists()  # in force for the runs that follow
    with RunFile(shift["tmp"] / "ped.h5") as f:
        table = f.pedestals_out()
        assert f.n_events == PED_EVENTS
    assert truth_of(_events(shift["tmp"] / "ped.h5"), shift["truth"])  # the card's own events
    strips = table[table["strip"] >= 0]
    assert len(strips) == 240
    noise = float(np.median(strips["sigma"]))
    # the emulator's strip noise (plus what the common-mode correction leaves)
    assert 0.8 < noise / sc.noise.sigma_mean < 1.4, noise
    assert abs(float(np.median(strips["mean"])) - 250.0) < 5.0  # equalised at 250 by the card
    print(f"pedestal noise {noise:.2f} ADC (emulator {sc.noise.sigma_mean} ADC)")


def test_pedestal_summary_counts_the_events_of_its_file(shift):
    assert shift["ped"]["events"] == PED_EVENTS


def test_calibration_run_keeps_the_xrays_of_the_truth(shift):
    cal = shift["cal"]
    assert cal["state"] == "configured" and cal["stop_reason"] == f"{CAL_SECONDS} s elapsed"
    ev = _events(shift["tmp"] / "cal.h5")
    assert len(ev) == cal["events_in_file"] > 150
    assert np.all(np.diff(ev["event_count"].astype(np.int64)) == 1)  # none lost in between
    eff, n_xrays, fake = xray_efficiency(ev, truth_of(ev, shift["truth"]))
    assert n_xrays > 100
    assert eff > 0.95 and fake < 0.5, (eff, fake)
    shift["cal_xrays"] = n_xrays
    print(f"calibration: {len(ev)} events, {n_xrays} true 55Fe X-rays, {eff:.3f} kept as "
          f"X-ray-like, muons as X-ray {fake:.2f}")  # fmt: skip


def test_calibrate_finds_the_emulators_gain_and_resolution(shift):
    calib, sc = shift["calib"], shift["scenario"]
    fit = calib["last_run_fit"]
    assert fit["ok"] and calib["points_ok"] >= 1
    true_scale = adc_per_kev(sc)
    assert fit["gain_adc_per_kev"] == pytest.approx(true_scale, rel=0.03)
    assert fit["resolution_fwhm"] == pytest.approx(sc.detector.resolution_fwhm, abs=0.04)
    ev = _events(shift["tmp"] / "cal.h5")
    _, n_xrays, _ = xray_efficiency(ev, truth_of(ev, shift["truth"]))
    assert 0.8 * n_xrays < calib["xrays"] <= len(ev)  # escape peak and edges aside
    print(f"calibrate: gain {fit['gain_adc_per_kev']:.1f} ADC/keV (truth {true_scale:.1f}), "
          f"FWHM {fit['resolution_fwhm']:.3f} (truth {sc.detector.resolution_fwhm}), "
          f"{calib['xrays']} X-rays of {n_xrays} true")  # fmt: skip


def test_background_run_with_the_monitor(shift):
    assert shift["serve_rc"] == 0
    assert shift["table_in_force"], "the upload's table is in force in serve"
    seen = shift["monitor"]
    (path,) = (shift["tmp"] / "data").glob("R*_background.h5")
    bg = _events(path)
    assert len(bg) == seen["events"] >= BG_EVENTS  # the monitor counted what the file holds
    counts = np.bincount(bg["cls"], minlength=4).tolist()
    assert seen["classes"] == counts, (seen["classes"], counts)
    eff, n_xrays, _ = xray_efficiency(bg, truth_of(bg, shift["truth"]))
    assert eff > 0.95 and n_xrays > 0.7 * len(bg)
    assert counts[int(EventClass.XRAY)] >= 0.95 * n_xrays
    assert not seen["alarms"] & {"no-pedestal-table", "board-silent", "data-lost", "killed-run"}
    assert "stop requested by run control" in seen["summary"]
    print(f"background: {len(bg)} events (monitor {seen['events']}), X-ray efficiency "
          f"{eff:.3f}, classes {counts}, alarms {sorted(seen['alarms'])}")  # fmt: skip


def test_every_file_of_the_shift_opens_closed_and_whole(shift):
    files = sorted((shift["tmp"] / "data").glob("R*.h5"))
    files += [shift["tmp"] / name for name in ("startup.h5", "ped.h5", "cal.h5")]
    for path in files:
        info = opens(path)
        assert info["closed"] and not info["damage"], (path, info)
    opens(shift["tmp"] / "data" / "pedestals.h5")  # the table in force
