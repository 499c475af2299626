"""Run control (pytest-qt, offscreen, a real ControlServer on 127.0.0.1): the buttons follow the
DAQ's state, Stop asks, the pedestal preset's upload and its outcome, the run list's end column,
and the control worker's refusals."""

from __future__ import annotations

from gui_views_support import make_window, start_control_server, wire

from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.synthetic import status_payload
from agetdaq.gui.views import RunControlView


def test_run_control_buttons_follow_the_daq_state(qtbot, tmp_path):
    requests: list[dict] = []
    server, stop = start_control_server(requests)
    ctl = ControlWorker(server.address, poll_s=0.2)
    w = make_window(qtbot, tmp_path, controls={0: ctl})
    view = w.view(RunControlView)
    w.tabs.setCurrentWidget(view.widget)
    assert not view.form.start_button.isEnabled() and not view.form.stop_button.isEnabled()
    w.start()
    try:
        qtbot.waitUntil(lambda: view.form.start_button.isEnabled(), timeout=5000)  # idle
        assert view.form.configure_button.isEnabled() and not view.form.stop_button.isEnabled()
        view.form.run_type.setCurrentText("background")
        view.form.comment.setText("night shift")
        view.form.start_button.click()
        assert not view.form.start_button.isEnabled()  # request in flight or running
        qtbot.waitUntil(lambda: view.form.stop_button.isEnabled(), timeout=5000)  # running
        assert not view.form.start_button.isEnabled() and not view.form.configure_button.isEnabled()
        assert not view.form.run_type.isEnabled()  # the form shows the running run
        sent = [r for r in requests if r["cmd"] in ("configure", "start")]
        assert sent == [
            {"cmd": "configure", "script": "run"},  # the run type's script first
            {"cmd": "start", "run_type": "background", "comment": "night shift"},
        ]
        view.ask = lambda *_: False  # Stop asks first: "No"
        view.form.stop_button.click()
        assert not any(r["cmd"] == "stop" for r in requests)
        assert "cancelled" in view.replies.text()
        view.ask = lambda *_: True
        view.form.stop_button.click()
        qtbot.waitUntil(lambda: view.form.start_button.isEnabled(), timeout=5000)
        assert "stop: ok" in view.replies.text()
    finally:
        w.shutdown()
        stop()


def test_control_worker_refuses_invalid_requests_without_sending(qtbot):
    ctl = ControlWorker("tcp://127.0.0.1:9", poll_s=0)  # never started: nothing is sent
    replies = []
    ctl.reply.connect(lambda slot, cmd, reply: replies.append((cmd, reply)))
    assert not ctl.submit("start", run_type="cosmics")
    assert not ctl.submit("mask", strips=["X3"])
    assert replies[0][0] == "start" and "run_type" in replies[0][1]["error"]
    assert replies[1][1]["ok"] is False and not ctl.busy
    assert ctl.submit("stop") and ctl.busy and ctl.requests.qsize() == 1


def test_run_list_end_column_tells_running_killed_and_just_ended_apart():
    from agetdaq.gui.views.runcontrol import run_row

    open_entry = {"run_number": 7, "run_type": "calibration", "start_time": 0.0, "end_time": None}
    last = {"run_number": 7, "stop_reason": "600 s reached"}
    assert run_row(open_entry, current=7)[5] == "running"
    assert run_row(open_entry, current=8, killed=7)[5].startswith("KILLED")
    # the run list lags the status by a moment: a run that just ended is not "killed"
    assert run_row(open_entry, current=None, last=last)[5] == "600 s reached"
    assert run_row(open_entry)[5] == "ended"
    ended = {**open_entry, "end_time": 5.0, "stop_reason": "stop requested by run control"}
    assert run_row(ended, current=None, killed=7)[5] == "stop requested by run control"


def test_pedestal_preset_sends_the_upload_and_shows_its_outcome(qtbot, tmp_path):
    """The pedestal preset's Start is the DAQ's ``pedestal`` command with ``upload`` (the upload
    unticked: a plain pedestal run); the upload's phase locks the panel, a failed one is red."""
    requests: list[dict] = []
    server, stop = start_control_server(requests)
    ctl = ControlWorker(server.address, poll_s=0.2)
    w = make_window(qtbot, tmp_path, controls={0: ctl})
    view = w.view(RunControlView)
    w.tabs.setCurrentWidget(view.widget)
    w.start()
    try:
        qtbot.waitUntil(lambda: view.form.start_button.isEnabled(), timeout=5000)
        view.form.preset_buttons["pedestal"].click()
        assert view.form.upload.isChecked() and view.form.upload.isEnabled()
        view.form.start_button.click()
        qtbot.waitUntil(lambda: any(r["cmd"] == "pedestal" for r in requests), timeout=5000)
        sent = [r for r in requests if r["cmd"] != "status"]
        assert sent == [{"cmd": "pedestal", "upload": True, "events": 1000}]
        # the DAQ's status during and after the upload
        up = {"phase": "uploading"}  # between its runs: the DAQ is "configured"
        st = {**status_payload(state="configured", run_type="pedestal"), "pedestal_upload": up}
        w._on_batch(0, [wire("status", 1, st)])
        w.redraw()
        assert view.upload_status.label.text() == "pedestal upload in progress: uploading"
        assert not view.form.start_button.isEnabled() and not view.form.configure_button.isEnabled()
        up = {"phase": "idle", "ok": False, "outcome": "strips_off", "run": 2,
              "message": "the board's baselines after the upload are not where ..."}  # fmt: skip
        st = {**status_payload(run_number=2, state="configured"), "pedestal_upload": up}
        w._on_batch(0, [wire("status", 2, st)])
        w.redraw()
        assert view.upload_status.label.text().startswith("pedestal upload failed: the board's")
        assert "c62828" in view.upload_status.label.styleSheet()  # red
        assert "pedestal upload FAILED" in view.replies.text()
        # unticked: a plain pedestal run (its script first)
        qtbot.waitUntil(lambda: view.form.start_button.isEnabled(), timeout=5000)
        view.form.upload.setChecked(False)
        assert view.form.upload_request() is None
        view.form.start_button.click()
        qtbot.waitUntil(lambda: any(r["cmd"] == "start" for r in requests), timeout=5000)
        sent = [r for r in requests if r["cmd"] in ("configure", "start")]
        assert sent == [{"cmd": "configure", "script": "pedestal_data"},
                        {"cmd": "start", "run_type": "pedestal", "events": 1000}]  # fmt: skip
        # another run type: no upload
        view.form.run_type.setCurrentText("background")
        assert not view.form.upload.isChecked() and not view.form.upload.isEnabled()
    finally:
        w.shutdown()
        stop()
