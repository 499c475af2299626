"""Run control's ``pedestal`` command against real processes (``agetdaq emulate`` + ``agetdaq
serve``): the two-pass upload of ``agetdaq pedestal --upload`` (acquisition/pedestal_upload.py)
acknowledged ``pending``, its outcome in the status and the run log, the table then in force;
refused while a run is open; a stop before the upload sends nothing."""

from __future__ import annotations

import json
import time

import pytest
from daq_procs import DaqProcesses

from agetdaq.readout.store.run import load_pedestals

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(240)]
EVENTS = 120


def wait_status(procs: DaqProcesses, cond, limit_s: float, what: str) -> dict:
    end = time.monotonic() + limit_s
    st: dict = {}
    while time.monotonic() < end:
        st = procs.request("status", 5000)
        if st.get("ok") and cond(st):
            return st
        time.sleep(0.2)
    pytest.fail(f"timed out after {limit_s} s waiting for {what}; last status {st}")


def done(up: dict) -> bool:
    return up.get("outcome") is not None and up["phase"] == "idle"


def runlog(procs: DaqProcesses) -> list[dict]:
    return [json.loads(line) for line in (procs.data / "runlog.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    p = DaqProcesses(tmp_path_factory.mktemp("pedctl"), "calibration")
    try:
        p.start()
        p.wait_ready()
        yield p
    finally:
        p.close()


def test_pedestal_upload_over_run_control_leaves_the_table_in_force(procs):
    reply = procs.request("pedestal", upload=True, events=EVENTS)
    assert reply["ok"] and reply["pending"] == "pedestal", reply
    # while it runs: a second one and a start are refused by the state, the phase is shown
    st = wait_status(procs, lambda s: s["pedestal_upload"]["phase"] != "idle", 30, "the upload")
    assert st["pedestal_upload"]["phase"] in ("raw pass", "uploading", "equalised pass")
    st = wait_status(procs, lambda s: done(s["pedestal_upload"]), 150, "the upload's end")
    up = st["pedestal_upload"]
    assert up["ok"] and up["outcome"] == "in_force", up
    assert up["upload_check"]["strips"] == 240 and up["upload_check"]["strips_off"] == 0
    in_force = procs.data / "pedestals.h5"
    assert up["in_force"] == str(in_force) and in_force.exists()
    assert st["state"] == "configured" and "table in force" in st["message"]
    table = f"pedestal run {up['run']}, uploaded, in force ({in_force})"
    assert st["pedestal_table"].startswith(table)  # the processing uses it now
    rows = load_pedestals(in_force)
    strips = rows[rows["strip"] >= 0]
    assert abs(float(strips["mean"].mean()) - 250.0) < 2.0  # equalised by the card at 250
    # the run log: raw pass, equalised pass, the outcome
    log = runlog(procs)
    starts = [r for r in log if r.get("event") == "start"]
    assert [r["type"] for r in starts[-2:]] == ["pedestal", "pedestal"]
    assert "pass 1" in starts[-2]["comment"] and "pass 2" in starts[-1]["comment"]
    outcome = [r for r in log if r.get("event") == "pedestal_upload"][-1]
    assert outcome["ok"] and outcome["run"] == up["run"] == starts[-1]["run"]


def test_pedestal_command_is_refused_while_a_run_is_running(procs):
    reply = procs.request("start", run_type="background", seconds=30, wait=True)
    assert reply["ok"] and reply["state"] == "running", reply
    try:
        refused = procs.request("pedestal", upload=True, events=EVENTS, wait=True)
        assert not refused["ok"] and "while a run is running" in refused["error"], refused
        assert procs.request("status")["state"] == "running"  # the run goes on
    finally:
        assert procs.request("stop", wait=True)["ok"]


def test_a_stop_before_the_upload_sends_nothing(procs):
    before = (procs.data / "pedestals.h5").stat().st_mtime_ns
    reply = procs.request("pedestal", upload=True, events=100_000, seconds=60)
    assert reply["ok"] and reply["pending"] == "pedestal", reply
    wait_status(procs, lambda s: s["pedestal_upload"]["phase"] == "raw pass"
                and s["state"] == "running", 30, "the raw pass")  # fmt: skip
    stop = procs.request("stop")
    assert stop["ok"], stop
    st = wait_status(procs, lambda s: s["pedestal_upload"]["phase"] == "idle", 60, "the stop")
    up = st["pedestal_upload"]
    assert not up["ok"] and up["outcome"] == "interrupted", up
    assert "nothing sent" in st["message"] and st["state"] == "configured"
    assert (procs.data / "pedestals.h5").stat().st_mtime_ns == before  # left as it was
    assert runlog(procs)[-1]["outcome"] == "interrupted"
