"""The shift crew's pedestal preset uploads (issue 15 point 1, from the monitor): against the real
BEC emulator and DAQ server (child processes on 127.0.0.1), the monitor's run-control panel takes
the pedestal preset (raw run, upload to the card, run with the card's equalisation on), shows the
table then in force, and a calibration run started from the panel (its script subtracts the
card's pedestals) gets no "pedestals do not fit" notice and classifies its events as X-rays, on a
board that the card's own equalisation (pedestal.txt) had set up before."""

from __future__ import annotations

import pytest
from daq_procs import DaqProcesses
from scenario_crew import crew_line
from scenario_crew import wait_for as wait

from agetdaq.gui.views import RunControlView
from agetdaq.readout.store.run import open_run

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(300)]
PEDESTAL_EVENTS = 150  # per pass: the crew's short choice
CALIBRATION_S = 25.0
XRAYS = 300  # X-rays classified before the run is judged


@pytest.fixture(scope="module")
def line(tmp_path_factory, qapp):
    procs = DaqProcesses(tmp_path_factory.mktemp("pedgui"), "calibration")
    with crew_line(procs, poll_s=0.25) as w:
        yield procs, w


def test_pedestal_preset_uploads_then_a_calibration_run_keeps_its_xrays(line):
    procs, w = line
    rc = w.view(RunControlView)
    w.redraw()
    assert "NO PEDESTAL TABLE" in w.banner.labels["pedestals"].text()

    # the board as a crew finds it after its start-up: equalised by the card itself (hped,
    # pedestal.txt); a plain pedestal run (subtract_ped 0) would then give a table that does not
    # fit what the card sends with subtract_ped 1
    reply = procs.request("configure", 60000, script="pedestal", wait=True)
    assert reply["ok"] and reply["state"] == "configured", reply
    # the pedestal preset: the upload ticked, an event limit
    rc.form.preset_buttons["pedestal"].click()
    assert rc.form.upload.isChecked() and rc.form.events_limit.value() > 0
    rc.form.events_limit.setValue(PEDESTAL_EVENTS)
    assert rc.form.upload_request() == {"upload": True, "events": PEDESTAL_EVENTS}
    rc.form.start_button.click()
    phases: set[str] = set()
    locked: list[bool] = []

    def watch() -> None:
        phase = (w.model.status.get("pedestal_upload") or {}).get("phase", "idle")
        if phase != "idle":
            phases.add(phase)
            w.redraw()
            locked.append(not rc.form.start_button.isEnabled())

    wait(lambda: "raw pass" in phases, 30, "the upload's raw pass", watch)
    wait(lambda: (w.model.status.get("pedestal_upload") or {}).get("outcome") is not None
         and w.model.status["pedestal_upload"]["phase"] == "idle", 150, "the upload's end",
         watch)  # fmt: skip
    up = w.model.status["pedestal_upload"]
    assert up["ok"] and up["outcome"] == "in_force", up
    assert {"raw pass", "equalised pass"} <= phases and locked and all(locked)
    wait(lambda: "uploaded, in force" in str(w.model.status.get("pedestal_table")), 10,
         "the table in force in the status")  # fmt: skip
    w.redraw()
    peds = w.banner.labels["pedestals"].text()
    assert peds.startswith(f"pedestals: pedestal run {up['run']}, uploaded, in force"), peds
    assert rc.upload_status.label.text().startswith("pedestal table in force: ")
    assert "0 of 240 strips off" in rc.upload_status.label.text()
    assert "table in force" in rc.replies.text() and "FAILED" not in rc.replies.text()

    # a calibration run from its preset (calibration script: subtract_ped 1, no suppression)
    wait(lambda: rc.form.start_button.isEnabled(), 30, "run control to allow a start")
    rc.form.preset_buttons["calibration"].click()
    assert not rc.form.upload.isChecked() and rc.form.script.currentText() == "calibration"
    rc.form.seconds_limit.setValue(CALIBRATION_S)
    rc.form.start_button.click()
    wait(lambda: w.model.state() == "running" and w.model.status.get("run_type") == "calibration",
         60, "the calibration run")  # fmt: skip
    run = w.model.status["run_number"]
    messages: set[str] = set()

    def collect() -> None:
        messages.add(str(w.model.status.get("message", "")))

    def xrays() -> int:
        return int((w.model.status.get("class_counts") or {}).get("xray", 0))

    wait(lambda: xrays() >= XRAYS, 60, f"{XRAYS} X-rays classified", collect)
    counts = dict(w.model.status["class_counts"])
    wait(lambda: w.model.calib.live is not None and w.model.calib.live.counts > 0, 30,
         "the DAQ's live 55Fe fit", collect)  # fmt: skip
    live = w.model.calib.live
    wait(lambda: w.model.state() == "configured", 60, "the run's end at its time limit", collect)
    w.redraw()
    assert not any("do not fit" in m for m in messages), messages
    assert "do not fit" not in w.banner.labels["message"].text()
    # the run file's status rows (every second of the run): never the notice either
    with open_run(procs.data / f"R{run:05d}_calibration.h5") as f:
        status = f.status()
    assert status and not any("do not fit" in s.get("message", "") for s in status)
    # its events are X-rays (stale pedestals make them all "muon-like, 70 hit strips")
    assert counts["xray"] > 4 * (counts.get("muon", 0) + counts.get("other", 0)), counts
    print("classes", counts, "live fit", live.counts, live.ok, live.gain_rel, live.reason)
    assert live.counts >= 100, live
