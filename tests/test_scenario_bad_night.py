"""Scenario 2, a bad night, real processes only: ``agetdaq emulate --truth``, ``agetdaq serve``
(started through a wrapper that makes the disk full while a flag file exists: injected ENOSPC on
every HDF5 write, as test_reliability_board.py) and the monitor, with its run control, watching
all night. In order: the board reboots mid-run, the DAQ server is killed with -9 mid-run and
started again, the disk fills during the next run, space comes back. The run after all that is
clean and holds only its own events (the truth's), every file of the night opens, and the monitor
said what happened (its alarms, its state and message).
"""

from __future__ import annotations

import signal
import sys
import time

import numpy as np
import pytest
from daq_procs import DaqProcesses
from scenario_crew import Monitor, opens, truth_of, wait_for, xray_efficiency
from test_reliability_board import ENOSPC_SERVE

from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.schema import BuildFlag
from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(400)]
SCENARIO = """base = "calibration"
description = "a night with the source in: 55Fe at 40 Hz, muons"
[source.fe55]
rate_hz = 40.0
"""
SETTINGS = "[daq]\nheartbeat_s = 0.5\nboard_timeout_s = 5.0\n"
N = 60  # events per step


def _events(monitor: Monitor) -> int:
    return int(monitor.model.status.get("events") or 0)


@pytest.fixture(scope="module")
def night(tmp_path_factory, qapp) -> dict:
    tmp = tmp_path_factory.mktemp("night")
    (tmp / "night.toml").write_text(SCENARIO)
    (tmp / "serve_enospc.py").write_text(ENOSPC_SERVE)
    full = tmp / "DISK_FULL"
    truth_path = tmp / "truth.jsonl"
    procs = DaqProcesses(tmp, str(tmp / "night.toml"), SETTINGS,
                         emulate_args=("--truth", str(truth_path), "--bank", "0"))  # fmt: skip
    procs.serve_launcher = [sys.executable, str(tmp / "serve_enospc.py"), str(full)]
    out: dict = {"tmp": tmp}
    monitor = None
    t0 = time.monotonic()
    try:
        procs.start()
        procs.wait_ready()
        monitor = Monitor([(procs.stream, procs.control)]).start()
        m = monitor.model

        # the board reboots in the middle of a run; the run goes on
        monitor.start_run("background", "run")
        wait_for(lambda: _events(monitor) >= N, 60, f"{N} events")
        assert "rebooting" in procs.emu("reboot")
        wait_for(lambda: "board-restarted" in monitor.alarm_names(), 30, "the reboot's alarm")
        before = _events(monitor)
        wait_for(lambda: _events(monitor) >= before + N, 60, "events after the reboot")
        out["restarts"] = m.status.get("board_restarts")

        # the DAQ server is killed with -9 mid-run, and started again
        procs.stop_server(signal.SIGKILL)
        wait_for(lambda: "no-data" in monitor.alarm_names(), 30, "the monitor to miss the DAQ")
        procs.start_server()
        procs.wait_ready()
        wait_for(lambda: "killed-run" in monitor.alarm_names(), 30, "the killed run's alarm")
        out["killed_banner"] = monitor.window.banner.labels["last_run"].text()

        # the disk fills during the next run
        monitor.start_run("background", "run")
        wait_for(lambda: _events(monitor) >= N, 60, f"{N} events")
        full.touch()
        wait_for(lambda: m.state() == "error", 60, "the full disk's error state")
        monitor.refresh()
        out["full_message"] = str(m.status.get("message"))
        out["full_banner"] = monitor.window.banner.labels["message"].text()
        out["full_run_control"] = monitor.run_control.error_label.text()
        full.unlink()  # space is back

        # the next run: the crew configures (the way out of the error state), then starts
        rc = monitor.run_control
        wait_for(lambda: rc.form.configure_button.isEnabled(), 30, "Configure to be offered")
        assert not rc.form.start_button.isEnabled()
        rc.form.configure_button.click()
        wait_for(lambda: m.state() == "configured", 60, "the DAQ to be configured again")
        monitor.start_run("background", "run")
        out["clean_run"] = m.status.get("run_number")
        wait_for(lambda: _events(monitor) >= 2 * N, 60, f"{2 * N} events")
        monitor.stop_run()
        wait_for(lambda: m.status.get("last_run", {}).get("run_number") == out["clean_run"],
                 20, "the end of the clean run")  # fmt: skip
        monitor.refresh()
        out["clean_events"] = _events(monitor)
        out["history"] = monitor.alarm_history()
        monitor.close()
        monitor = None
        procs.stop_server()
        out["serve_rc"] = procs.server.returncode
    finally:
        if monitor is not None:
            monitor.close()
        procs.close()
        print(f"the night took {time.monotonic() - t0:.0f} s")
    out["truth"] = procs.truth_runs(truth_path)
    out["log"] = procs.log()
    return out


def test_the_monitor_said_what_happened(night):
    fired = {rule for kind, rule in night["history"] if kind == "fired"}
    assert {"board-restarted", "no-data", "killed-run"} <= fired, night["history"]
    assert night["restarts"] >= 1
    assert "RUN 1 KILLED" in night["killed_banner"]
    assert "disk full" in night["full_message"] and "No space left" in night["full_message"]
    assert "disk full" in night["full_banner"]
    assert night["full_run_control"].startswith("DAQ in error: disk full")


def test_the_next_run_is_clean_and_holds_only_its_own_events(night):
    data = night["tmp"] / "data"
    path = data / f"R{night['clean_run']:05d}_background.h5"
    with RunFile(path) as f:
        ev = f.events()
        assert f.final()["stop_reason"] == "stop requested by run control"
    assert len(ev) == night["clean_events"] >= 2 * N  # the monitor counted the file's events
    counts = ev["event_count"].astype(np.int64)
    assert counts[0] == 0 and np.all(np.diff(counts) == 1)  # its own counter, none lost
    assert np.all(np.diff(ev["timestamp"].astype(np.int64)) > 0)  # its own clock
    assert not np.any(ev["build_flags"] & int(BuildFlag.BOARD_RESTART))
    assert ev["build_flags"].max() == 0 and ev["flags"].max() == 0
    truth = truth_of(ev, night["truth"])  # every event is one the card read out in this run
    assert len(truth) >= len(ev)
    eff, n_xrays, _ = xray_efficiency(ev, truth)
    assert eff > 0.95 and n_xrays > 0.7 * len(ev)
    print(f"clean run: {len(ev)} events, X-ray efficiency {eff:.3f} of {n_xrays}")


def test_every_file_of_the_night_opens(night):
    data = night["tmp"] / "data"
    files = sorted(data.glob("R*.h5"))
    assert len(files) == 3  # rebooted-then-killed, disk full, clean
    infos = {p.name: opens(p) for p in files}
    for name, info in infos.items():
        assert info["n_events"] > 0, (name, info)
    ends = {r["run"]: r["reason"] for r in RunLog(data).records() if r["event"] == "end"}
    killed = files[0].name
    assert int(killed[1:6]) not in ends  # the killed run never ended ...
    assert not infos[killed]["closed"]  # ... and its file says so, yet opens
    # the disk stayed full while the run ended: its end is in the run log, not in the file
    assert "No space left" in ends[int(files[1].name[1:6])]
    assert infos[files[2].name]["closed"] and not infos[files[2].name]["damage"]
    assert night["serve_rc"] == 0
    assert "Traceback" not in night["log"]
