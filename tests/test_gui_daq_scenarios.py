"""What the shift crew sees, against the real BEC emulator and DAQ server (child processes on
127.0.0.1), driven through the monitor's run-control panel: no pedestal table, a pedestal upload
from its preset (event limit, end-of-run summary, the table then in force), a calibration run with
an outage of the board, a board restart and a frozen DAQ (SIGSTOP), the stop that asks first, the
run list, a replay of the run file, and a run killed with the DAQ server (named after its restart).
(Replaces the former test_gui_e2e.py: the panel drives a run and the file replays.)"""

from __future__ import annotations

import signal
from dataclasses import replace

import numpy as np
import pytest
from daq_procs import DaqProcesses
from scenario_crew import crew_line
from scenario_crew import wait_for as wait

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.replay import ReplayWorker
from agetdaq.gui.views import AlarmsView, HitmapView, RunControlView
from agetdaq.gui.window import MainWindow
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.network, pytest.mark.slow, pytest.mark.timeout(240)]
MAPPING = StripMapping.default()
PEDESTAL_EVENTS = 150
NO_EVENTS_T = (2.0, 4.0)  # "running, no new event": warning / alarm after (configurable rule)


def active(w: MainWindow) -> dict[str, tuple[str, bool]]:
    """The crew's alarm list: rule -> (severity, condition still holds)."""
    return {a.rule.name: (a.severity, a.holding) for a in w.model.alarms.active}


@pytest.fixture(scope="module")
def line(tmp_path_factory, qapp):
    """(DaqProcesses, window) of one detector line: emulator + DAQ server + monitor."""
    # an outage shorter than the board-lost timeout: the run goes on and the crew sees it
    procs = DaqProcesses(tmp_path_factory.mktemp("line"), "calibration",
                         settings="[daq]\nboard_timeout_s = 30.0\n")  # fmt: skip
    rules = [replace(r, max=NO_EVENTS_T[0], alarm_max=NO_EVENTS_T[1])
             if r.name == "no-events" else r for r in load_rules()]  # fmt: skip
    with crew_line(procs, poll_s=0.25, rules=rules, snapshot_dir=procs.workdir / "logbook",
                   size=(1600, 1000), answer_yes=False) as w:  # fmt: skip
        yield procs, w


def test_no_pedestal_table_then_a_pedestal_upload_from_its_preset(line):
    """The preset uploads: raw run 1, upload, run 2 with the card's equalisation on, whose table
    is then in force (tests/test_gui_pedestal_upload.py: the calibration run that follows)."""
    _, w = line
    rc = w.view(RunControlView)
    w.redraw()
    assert "NO PEDESTAL TABLE" in w.banner.labels["pedestals"].text()
    rc.form.apply_preset("pedestal")
    form = rc.form
    assert (form.run_type.currentText(), form.script.currentText(), form.events_limit.value(),
            form.upload.isChecked()) == ("pedestal", "pedestal_data", 1000, True)  # fmt: skip
    rc.form.events_limit.setValue(PEDESTAL_EVENTS)  # the crew's choice: a short one (per run)
    rc.form.start_button.click()
    wait(lambda: w.model.state() == "running", 30, "the raw pedestal run")
    w.redraw()
    assert rc.form.run_type.currentText() == "pedestal" and not rc.form.run_type.isEnabled()

    def upload() -> dict:
        return w.model.status.get("pedestal_upload") or {}

    wait(lambda: upload().get("outcome") and upload()["phase"] == "idle", 150,
         "the upload to end", detail=lambda: w.model.status.get("message"))  # fmt: skip
    assert upload()["ok"] and upload()["run"] == 2, upload()
    wait(lambda: w.model.runs.ended_count >= 1 and w.model.state() == "configured", 30,
         "the second pedestal run to stop at its limit")  # fmt: skip
    w.redraw()
    summary = rc.run_list.summary_label.text()
    assert "run 2 (pedestal)" in summary and f"{PEDESTAL_EVENTS} events reached" in summary
    peds = w.banner.labels["pedestals"].text()
    assert peds.startswith("pedestals: pedestal run 2, uploaded, in force"), peds
    assert "last run 2: " in w.banner.labels["last_run"].text()
    assert rc.upload_status.label.text().startswith("pedestal table in force: ")
    wait(lambda: rc.run_list.table.rowCount() >= 2, 15, "the run list")

    def row(r: int = 0) -> list[str]:
        return [rc.run_list.table.item(r, c).text() for c in range(rc.run_list.table.columnCount())]

    # the run list may lag the status: the run is never "running" or "KILLED" meanwhile
    assert row()[:2] == ["2", "pedestal"] and row()[5] == f"{PEDESTAL_EVENTS} events reached"
    wait(lambda: w.model.runs.listed[-1].get("end_time") is not None, 15, "the run's end listed")
    w.redraw()
    assert row()[5] == f"{PEDESTAL_EVENTS} events reached" and int(row()[4]) >= PEDESTAL_EVENTS
    assert row(1)[:2] == ["1", "pedestal"] and row(1)[5] == f"{PEDESTAL_EVENTS} events reached"
    assert w.model.pedestal.present  # the table reached the Channels view too


def test_a_calibration_run_through_outage_restart_frozen_daq_and_stop(line):
    procs, w = line
    rc = w.view(RunControlView)
    alarms = w.view(AlarmsView)
    latency: dict[str, float] = {}
    ended = w.model.runs.ended_count  # the runs before (the pedestal upload's two)
    rc.form.apply_preset("calibration")
    assert rc.form.script.currentText() == "calibration" and rc.form.seconds_limit.value() == 600
    rc.form.script.setCurrentText("run")  # hit channels only: light for a shared 2-core machine
    rc.form.comment.setText("GUI scenario test")
    rc.form.start_button.click()
    wait(lambda: w.model.state() == "running", 30, "the calibration run")
    w.redraw()
    run = w.model.status["run_number"]
    text = w.banner.text()
    assert f"RUNNING  run {run} calibration" in text and f"R{run:05d}_calibration.h5" in text
    # the form follows the run (a control reply older than the stream's status can lag a moment)
    wait(lambda: rc.redraw() or not rc.form.run_type.isEnabled(), 5, "the form to follow the run",
         detail=lambda: (rc.current_state(), rc.control_reply_state))  # fmt: skip
    assert rc.form.run_type.currentText() == "calibration"
    hitmap = w.view(HitmapView)
    w.tabs.setCurrentWidget(hitmap.widget)
    wait(lambda: w.model.hist.total >= 50, 30, "X-ray-like events on the hitmap")
    wait(lambda: hitmap.image.image.sum() > 0, 5, "the hitmap drawn")
    w.tick()
    assert "board-silent" not in active(w) and "no-events" not in active(w)

    # the board falls silent: red, the DAQ's message, events stop
    assert procs.emu("silence 8") is not None
    latency["board silent -> red"] = wait(
        lambda: active(w).get("board-silent") == ("alarm", True) and w.banner.colour == "alarm",
        10, "the board-silent alarm")  # fmt: skip
    # the DAQ's message, unless a newer one (e.g. the pedestal check's notice for a batch still
    # in the pipeline) replaced it; the latched alarm keeps the board's
    shown = [w.banner.labels["message"].text(), *(a.text for a in w.model.alarms.active)]
    assert any("not answering" in t or "silent" in t for t in shown), shown
    latency["no events -> red"] = wait(
        lambda: active(w).get("no-events", ("",))[0] == "alarm", 30, "no-events to escalate"
    )
    texts = [a.text for a in w.model.alarms.active]
    assert any(t.startswith("running, but no new event for") for t in texts), texts
    assert w.banner.labels["events"].text() == w.banner.labels["events"].text()  # frozen count
    # it answers again: the alarms latch until acknowledged, one per cause
    wait(lambda: not active(w)["board-silent"][1], 20, "the board back")
    assert w.banner.colour == "alarm" and "(gone, acknowledge)" in alarms.summary()[0] + str(
        [a.text for a in w.model.alarms.active]
    )
    assert alarms.acknowledge(None) >= 2
    wait(lambda: "board-silent" not in active(w), 5, "the acknowledged alarm to go")

    # the board reboots
    assert procs.emu("reboot") is not None
    latency["board restart -> red"] = wait(
        lambda: active(w).get("board-restarted", ("",))[0] == "alarm", 15, "board-restarted"
    )
    # the DAQ's message may already say "answers again"; the latched alarm tells the restart
    assert any("restarted" in a.text for a in w.model.alarms.active)
    alarms.acknowledge(None)

    # the DAQ freezes (SIGSTOP): old values greyed with their age, no longer "live"
    procs.stop_server(signal.SIGSTOP)
    try:
        latency["frozen DAQ -> greyed"] = wait(lambda: w.banner.stale, 15, "stale values")
        w.tick()
        w.redraw()
        assert "old]" in w.banner.labels["state"].text()
        assert w.banner.labels["rate"].property("stale") is True
        assert w.banner.labels["connection"].property("stale") is False  # the link is live
        wait(lambda: "no-data" in active(w), 10, "the no-data alarm")
        assert w.banner.colour in ("warning", "alarm")
    finally:
        procs.stop_server(signal.SIGCONT)
    wait(lambda: not w.banner.stale, 30, "fresh values after SIGCONT")

    # stop asks first, then the end-of-run summary and the run list
    w.tabs.setCurrentWidget(rc.widget)
    rc.ask = lambda *_: False
    rc.form.stop_button.click()
    assert w.model.state() == "running"
    rc.ask = lambda *_: True
    wait(lambda: rc.form.stop_button.isEnabled(), 30, "run control after the freeze")
    rc.form.stop_button.click()
    wait(
        lambda: w.model.runs.ended_count > ended,
        60,
        "the end of the run",
        detail=lambda: f"status {w.model.status}; log {rc.replies.text()[-1500:]}",
    )
    w.redraw()
    assert "stop requested by run control" in rc.run_list.summary_label.text()
    assert f"R{run:05d}_calibration.h5" in rc.run_list.summary_label.text()
    table = rc.run_list.table
    wait(lambda: table.rowCount() >= 2 and table.item(0, 5).text() != "running", 15,
         "the run list")  # fmt: skip
    assert rc.run_list.table.item(0, 0).text() == str(run)
    assert rc.run_list.table.item(0, 5).text() == "stop requested by run control"
    assert "start: ok" in rc.replies.text() and "stop: ok" in rc.replies.text()
    print("latencies (s):", {k: round(v, 2) for k, v in latency.items()})

    # the run file replays through the same feed
    path = procs.data / f"R{run:05d}_calibration.h5"
    with RunFile(path) as rf:
        n_file = rf.n_events
        assert rf.metadata().get("comment") == "GUI scenario test"
    replay = MainWindow([(ReplayWorker(path, speed=0.0), None)], MAPPING, MonitorConfig())
    replay.start()
    try:
        wait(lambda: replay.model.link.state == "finished", 60, "the replay")
        assert replay.model.status["events"] == n_file > 0
        assert replay.model.summary_events > 0 and replay.model.hist.total > 0
        assert np.isfinite(replay.model.hist.hitmap).all()
    finally:
        replay.shutdown()
        replay.close()


def test_a_run_killed_with_the_daq_is_named_after_its_restart(line):
    procs, w = line
    rc = w.view(RunControlView)
    if w.model.state() == "running":  # left so by an earlier test
        procs.request("stop")
    wait(lambda: rc.form.start_button.isEnabled(), 30, "run control")
    rc.form.apply_preset("background")
    rc.form.start_button.click()
    wait(lambda: w.model.state() == "running", 30, "the background run")
    run = w.model.status["run_number"]
    procs.stop_server(signal.SIGKILL)
    wait(lambda: w.banner.stale, 15, "the DAQ gone")
    procs.start_server()
    wait(lambda: (w.model.status.get("killed_run") or {}).get("run_number") == run, 90,
         "the restarted DAQ to name the killed run")  # fmt: skip
    w.tick()
    w.redraw()
    assert f"RUN {run} KILLED" in w.banner.labels["last_run"].text()
    assert "killed-run" in active(w)
    wait(lambda: rc.run_list.table.rowCount() >= 3, 15, "the run list")
    assert rc.run_list.table.item(0, 0).text() == str(run)
    assert rc.run_list.table.item(0, 5).text().startswith("KILLED")
    pngs, txt = w.snapshot()  # the logbook: every tab and the text
    assert len(pngs) == w.tabs.count() and "killed run: " in txt.read_text()
