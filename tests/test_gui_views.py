"""Views (pytest-qt, offscreen): every view draws the data it is fed; run control, mask editor,
alarms, banner colour, stream selector and the logbook snapshot."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QApplication

from agetdaq.gui.alarms import load_rules, rules_from_text
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.model import LinkInfo, StreamModel
from agetdaq.gui.synthetic import (
    FakeDaq,
    event_arrays,
    status_payload,
    synthetic_hits,
    synthetic_rows,
)
from agetdaq.gui.views import (
    AlarmsView,
    ChannelsView,
    EventView,
    GainView,
    HitmapView,
    RatesView,
    RunControlView,
)
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import SourceWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.sink import Collect
from agetdaq.readout.transport.control import ControlServer
from agetdaq.readout.transport.stream import Message, decode_message, encode_message

MAPPING = StripMapping.default()


def wire(topic: str, seq: int, header: dict, arrays: dict | None = None, source="d0") -> Message:
    frames = encode_message(topic, seq, header, arrays or {}, source)
    return decode_message([bytes(f) for f in frames])


def make_window(qtbot, tmp_path, n_sources=1, controls=None, rules=None) -> MainWindow:
    sources = [(SourceWorker(f"test://{i}"), (controls or {}).get(i)) for i in range(n_sources)]
    w = MainWindow(sources, MAPPING, MonitorConfig(), rules if rules is not None else load_rules(),
                   snapshot_dir=tmp_path)  # fmt: skip
    qtbot.addWidget(w)
    w.show()
    return w


@pytest.fixture(scope="module")
def shared(qapp, tmp_path_factory):
    """One window for the tests that only feed data (building a window costs ~1 s)."""
    w = MainWindow([(SourceWorker("test://0"), None)], MAPPING, MonitorConfig(), load_rules(),
                   snapshot_dir=tmp_path_factory.mktemp("snapshots"))  # fmt: skip
    w.show()
    yield w
    w.close()


@pytest.fixture
def win(shared):
    """The shared window with a fresh model (nothing left from the previous test)."""
    for s in shared.sources:
        s.model = StreamModel(s.worker.address, MAPPING, shared.config, load_rules())
    for v in [shared.banner, *shared.views]:
        v.model_changed()
    shared.tabs.setCurrentIndex(0)
    return shared


def show(w: MainWindow, cls) -> object:
    view = w.view(cls)
    w.tabs.setCurrentWidget(view.widget)
    w.redraw()
    return view


def feed_run(w: MainWindow, slot: int = 0, n: int = 400, seed: int = 1, source="d0") -> dict:
    """Status x2 and what the DAQ's feed makes of ``n`` synthetic events (a summary and the run's
    hist), two sampled events, a pedestal table and a calib point; returns the summary."""
    sink = Collect(source, clock=lambda: 1000.0)
    daq = FakeDaq(sink, MAPPING, seed=seed, clock=lambda: 1000.0, run_number=7)
    arrays = daq.summary(n)
    daq.event(1.0, -2.0, event_id=11)
    daq.event(-10.0, 5.0, event_id=12)
    daq.pedestal(dead=(5,), noisy=(130,))
    daq.calib(0, 0.97, t=1000.0)
    st = status_payload(run_number=7, events=n, class_counts={"xray": 0, "muon": 0})
    st2 = status_payload(run_number=7, events=2 * n, class_counts={"xray": 30, "muon": 3})
    msgs = [wire("status", 0, {**st, "time": 1000.0}, source=source), *sink.messages]
    w._on_link(slot, LinkInfo(f"test://{slot}", state="connected"))
    w._on_batch(slot, msgs)
    # status carries the time of its header; a second one 2 s later gives rates
    second = wire("status", 1, st2, source=source)
    second.header["time"] = msgs[0].header["time"] + 2.0
    w._on_batch(slot, [second])
    return arrays


def expected_occupancy(arrays: dict) -> np.ndarray:
    """The strips FakeDaq's events hit (every event is kept by the trigger)."""
    rows = synthetic_rows(np.random.default_rng(0), len(arrays["x_mm"]), 0.0)
    rows["x_mm"], rows["y_mm"] = arrays["x_mm"], arrays["y_mm"]
    return synthetic_hits(MAPPING, rows).sum(axis=0)


def test_hitmap_view_shows_every_xray_centroid(qtbot, win):
    w = win
    arrays = feed_run(w)
    view = show(w, HitmapView)
    n_xray = int(np.count_nonzero(arrays["class"] == 1))
    assert view.image.image.sum() == pytest.approx(n_xray)
    assert view.image.image.dtype == np.float32 and view.image.image.shape == (120, 120)
    assert view.image.levels is not None and float(np.max(view.image.levels)) >= 1
    occ = expected_occupancy(arrays)  # the DAQ's occupancy of the run, not sampled events
    np.testing.assert_array_equal(view.occ["X"].getData()[1], occ[:120])
    np.testing.assert_array_equal(view.occ["Y"].getData()[1], occ[120:])
    assert occ[:120].sum() > 0 and occ[120:].sum() > 0
    assert f"occupancy of {len(arrays['x_mm'])} triggered events" in view.info.text()
    dead_x, _ = view.marks["X"].getData()
    noisy_y, _ = view.marks["Y"].getData()
    assert list(dead_x) == [5.0] and list(noisy_y) == [10.0]  # X5 dead, Y10 noisy
    assert len(view.dead_lines.getData()[0]) == 2  # one line across the map
    view.log_box.setChecked(True)
    w.redraw()
    assert view.image.image.max() == pytest.approx(np.log10(1 + w.model.hist.hitmap.max()))
    view.log_box.setChecked(False)
    view.reset()
    w.redraw()
    assert view.image.image.sum() == 0 and view.occ["X"].getData()[1].sum() == 0
    hist = w.model.hist
    w._on_batch(0, [wire("hist", 9, {"run_number": 7, "spectrum_max_adc": 8192.0},
                         {"hitmap": hist.hitmap + 1, "occupancy": hist.occupancy + 2,
                          "x_edges_mm": hist.x_edges, "y_edges_mm": hist.y_edges})])  # fmt: skip
    w.redraw()
    assert view.image.image.sum() == 120 * 120  # what came after the reset
    assert view.occ["X"].getData()[1].sum() == 2 * 120


def test_event_view_shows_the_last_event_and_navigates(qtbot, win):
    w = win
    feed_run(w)
    view = show(w, EventView)
    last = w.model.events[-1]
    np.testing.assert_array_equal(view.images["X"].image, last.waveforms[:120])
    np.testing.assert_array_equal(view.images["Y"].image, last.waveforms[120:])
    assert "event 12" in view.info.text()
    drawn = [c for c in view.curves if c.getData()[0] is not None and len(c.getData()[0])]
    assert len(drawn) == int(last.hits.sum())  # the hit strips
    np.testing.assert_array_equal(drawn[0].getData()[1], last.waveforms[view.selected[0]])
    view.step(-1)  # older: pauses the display
    w.redraw()
    assert view.pause_button.isChecked() and "event 11" in view.info.text()
    w._on_batch(0, [wire("event", 2, {"event_id": 13}, event_arrays(MAPPING, 0.0, 0.0))])
    w.redraw()
    assert "event 11" in view.info.text()  # paused: new events do not replace it
    view.step(+1)
    w.redraw()
    assert "event 12" in view.info.text()
    view.strip_edit.setText("X2, Y7")
    view.pause_button.setChecked(False)
    w.redraw()
    assert view.selected == [2, 127] and "event 13" in view.info.text()


def test_channels_view_shows_the_pedestal_table_and_sends_masks(qtbot, tmp_path):
    requests: list[dict] = []
    server, stop = start_control_server(requests)
    ctl = ControlWorker(server.address, poll_s=0.2)
    w = make_window(qtbot, tmp_path, controls={0: ctl})
    w.start()
    try:
        feed_run(w)
        view = show(w, ChannelsView)
        edges, sigma = view.items["sigma"]["all"].getData()
        assert len(sigma) == 240 + 16 and len(edges) == len(sigma) + 1
        assert sigma[5] == pytest.approx(0.2) and sigma[130] == pytest.approx(15.0)
        x_flag, y_flag = view.items["sigma"]["flagged"].getData()
        assert list(x_flag) == [5, 130] and y_flag[1] == pytest.approx(15.0)
        assert view.table.rowCount() == 2 and view.table.item(1, 0).text() == "Y10"
        view.mask_edit.setText("X3, Y10-Y11")
        assert view.send_mask(True)
        qtbot.waitUntil(lambda: any(r["cmd"] == "mask" for r in requests), timeout=5000)
        mask = next(r for r in requests if r["cmd"] == "mask")
        assert mask == {"cmd": "mask", "strips": [3, 130, 131], "masked": True}
        qtbot.waitUntil(lambda: view.mask_reply.text() == "DAQ: done", timeout=5000)
        view.mask_edit.setText("Q9")
        assert not view.send_mask(False) and "not sent" in view.mask_reply.text()
    finally:
        w.shutdown()
        stop()


def feed_calibration(w: MainWindow, seed: int = 6) -> FakeDaq:
    """A calibration run through the DAQ's feed: 4000 X-rays at 3000 ADC, two trend points,
    the live window's fit and the gain map, into the window's model."""
    sink = Collect("d0", clock=lambda: 1000.0)
    daq = FakeDaq(sink, MAPPING, seed=seed, run_type="calibration", clock=lambda: 1000.0,
                  run_number=7)  # fmt: skip
    calib = daq.feed.calib
    calib.config = replace(calib.config, slice_xrays=2000)
    calib.live_interval_s = calib.map_step_s = 0.0
    daq.new_run(7)
    sink.messages.clear()
    for _ in range(4):
        daq.summary(1000, xray_fraction=1.0)
    for _ in range(calib.sweep.n_regions + 1):
        daq.feed.tick()
    w._on_link(0, LinkInfo("test://0", state="connected"))
    w._on_batch(0, list(sink.messages))
    return daq


def test_gain_view_shows_the_daq_spectrum_fit_trend_and_map(qtbot, win):
    w = win
    feed_calibration(w)
    view = show(w, GainView)
    cs = w.model.calib
    live = cs.live
    assert live is not None and live.ok and live.counts > 1900
    x, y = view.spec_curve.getData()
    assert y.sum() == pytest.approx(live.spectrum.sum()) and len(x) == len(y) + 1
    assert len(view.fit_curve.getData()[0]) > 10
    assert live.kev_per_adc == pytest.approx(1 / cs.reference_gain)  # the DAQ's scale
    assert abs(view.peak_line.value() - 5.9) < 0.2  # keV: the peak is at the reference gain
    assert view.spec_plot.getAxis("bottom").labelUnits == "keV"
    assert "5.9 keV peak" in view.info.text()
    assert "gain 1.0" in view.gain_label.text() and "the gain alarm watches it" in (
        view.gain_label.text()
    )
    _, run_y = view.run_curve.getData()
    assert run_y.sum() == pytest.approx(w.model.hist.spectrum.sum()) and run_y.sum() > 3900
    _t, g = view.trend_items["gain_rel"].getData()
    assert list(g) == [pytest.approx(1.0), pytest.approx(1.0, abs=0.03)]  # the first: reference
    assert view.map_image.image.shape == (6, 6)
    texts = [label.textItem.toPlainText() for label in view.map_labels]
    assert any("." in t and t[0].isdigit() for t in texts) and "-" not in texts
    assert "DAQ trend point every 2000 X-rays" in view.slicing.text()


def test_gain_view_sends_the_daq_its_newest_gain_as_reference(qtbot, tmp_path):
    requests: list[dict] = []
    server, stop = start_control_server(requests)
    ctl = ControlWorker(server.address, poll_s=0.2)
    w = make_window(qtbot, tmp_path, controls={0: ctl})
    w.start()
    try:
        view = w.view(GainView)
        assert not view.send_reference()  # no fit yet: nothing to send
        feed_calibration(w)
        qtbot.waitUntil(lambda: ctl.reachable is True, timeout=5000)
        assert view.send_reference()
        qtbot.waitUntil(lambda: any(r["cmd"] == "reference" for r in requests), timeout=5000)
        sent = next(r for r in requests if r["cmd"] == "reference")
        assert sent["gain_adc"] == pytest.approx(w.model.calib.live.gain)
    finally:
        w.shutdown()
        stop()


def test_rates_view_plots_status_history(qtbot, win):
    w = win
    feed_run(w)
    view = show(w, RatesView)
    _t, y = view.curves["trigger_rate"].getData()
    assert list(y) == [50.0, 50.0]
    _, xray = view.curves["rate_xray"].getData()
    assert xray[-1] == pytest.approx(15.0)  # 30 X-rays in 2 s
    view.window_box.setCurrentIndex(6)
    w.redraw()
    assert view.window_s == 86400


def test_banner_alarms_view_and_acknowledge(qtbot, tmp_path, monkeypatch):
    beeps = []
    monkeypatch.setattr(QApplication, "beep", staticmethod(lambda: beeps.append(1)))
    rules = rules_from_text(
        '[[rule]]\nname="disk"\nmetric="disk_free_gb"\nmin=20.0\nseverity="alarm"\n'
        '[[rule]]\nname="slow"\nmetric="trigger_rate"\nmax=10.0\ndelay_s=3600\n'
    )
    w = make_window(qtbot, tmp_path, rules=rules)
    feed_run(w)
    w.redraw()
    assert "RUNNING" in w.banner.text() and "run 7 calibration" in w.banner.text()
    assert "no alarms" in w.banner.text() and w.banner.colour == "ok"
    st = status_payload(run_number=7, disk_free_gb=4.0)
    w._on_batch(0, [wire("status", 2, st)])
    w.tick()
    view = show(w, AlarmsView)
    assert beeps == [1]  # the disk alarm fired; the delayed one did not
    assert view.table.rowCount() == 1 and view.table.item(0, 0).text() == "disk"
    assert w.banner.colour == "alarm" and "1 ALARM" in w.banner.text()
    view.table.selectRow(0)
    assert view.acknowledge_selected() == 1
    w.redraw()
    assert view.table.item(0, 5).text() == "yes" and "(acknowledged)" in w.banner.text()
    w._on_batch(0, [wire("status", 3, status_payload(run_number=7, disk_free_gb=400.0))])
    w.tick()
    w.redraw()
    assert view.table.rowCount() == 0 and w.banner.colour == "ok"
    assert "cleared" in view.history.toPlainText()


def test_only_visible_views_redraw(qtbot, win):
    w = win
    show(w, HitmapView)
    counts = {type(v).__name__: v.draw_count for v in w.views}
    feed_run(w)
    w.redraw()
    after = {type(v).__name__: v.draw_count for v in w.views}
    assert after["HitmapView"] == counts["HitmapView"] + 1
    assert all(after[k] == counts[k] for k in after if k != "HitmapView")
    w.redraw()  # nothing changed: no redraw
    assert w.view(HitmapView).draw_count == after["HitmapView"]


def test_stream_selector_switches_every_view(qtbot, tmp_path):
    w = make_window(qtbot, tmp_path, n_sources=2)
    a = feed_run(w, slot=0, n=100, seed=1, source="det-a")
    b = feed_run(w, slot=1, n=1000, seed=2, source="det-b")
    view = show(w, HitmapView)
    assert w.selector.itemText(0) == "det-a" and w.selector.itemText(1) == "det-b"
    assert view.image.image.sum() == np.count_nonzero(a["class"] == 1)
    w.selector.setCurrentIndex(1)
    w.redraw()
    assert view.image.image.sum() == np.count_nonzero(b["class"] == 1)
    assert "det-b" in w.banner.text()


def test_run_control_buttons_follow_the_daq_state(qtbot, tmp_path):
    requests: list[dict] = []
    server, stop = start_control_server(requests)
    ctl = ControlWorker(server.address, poll_s=0.2)
    w = make_window(qtbot, tmp_path, controls={0: ctl})
    view = w.view(RunControlView)
    w.tabs.setCurrentWidget(view.widget)
    assert not view.start_button.isEnabled() and not view.stop_button.isEnabled()
    w.start()
    try:
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=5000)  # idle
        assert view.configure_button.isEnabled() and not view.stop_button.isEnabled()
        view.run_type.setCurrentText("background")
        view.comment.setText("night shift")
        view.start_button.click()
        assert not view.start_button.isEnabled()  # request in flight or running
        qtbot.waitUntil(lambda: view.stop_button.isEnabled(), timeout=5000)  # running
        assert not view.start_button.isEnabled() and not view.configure_button.isEnabled()
        assert not view.run_type.isEnabled()  # the form shows the running run
        sent = [r for r in requests if r["cmd"] in ("configure", "start")]
        assert sent == [
            {"cmd": "configure", "script": "run"},  # the run type's script first
            {"cmd": "start", "run_type": "background", "comment": "night shift"},
        ]
        view.ask = lambda *_: False  # Stop asks first: "No"
        view.stop_button.click()
        assert not any(r["cmd"] == "stop" for r in requests)
        assert "cancelled" in view.log.toPlainText()
        view.ask = lambda *_: True
        view.stop_button.click()
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=5000)
        assert "stop: ok" in view.log.toPlainText()
    finally:
        w.shutdown()
        stop()


def test_snapshot_writes_png_and_text(qtbot, win):
    w = win
    feed_run(w)
    w.tick()  # the default rules see the noisy channel
    pngs, txt = w.snapshot()
    assert len(pngs) == w.tabs.count() and all(p.parent == txt.parent for p in pngs)
    assert any("55fe" in p.name for p in pngs)
    img = QImage(str(pngs[0]))
    assert not img.isNull() and img.width() >= 800
    text = txt.read_text()
    assert "state: running" in text and "run: 7 calibration" in text
    assert "noisy strips: Y10" in text and "dead strips: X5" in text
    assert "alarm: warning noisy-channel" in text


def start_control_server(requests: list[dict]):
    """A real ControlServer on 127.0.0.1 with a tiny state machine, polled by a thread."""
    state = {"state": "idle"}
    moves = {"configure": "configured", "start": "running", "stop": "idle"}

    def handler(req: dict) -> dict:
        requests.append(req)
        cmd = req["cmd"]
        if cmd in moves:
            state["state"] = moves[cmd]
        return {"ok": True, "state": state["state"]}

    server = ControlServer("tcp://127.0.0.1:*", handler)
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            server.poll(50)
        server.close()

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def stop() -> None:
        done.set()
        th.join(5)

    return server, stop


def test_redraws_are_rate_capped_but_prompt_after_a_quiet_period(qtbot, win):
    w = win
    show(w, HitmapView)
    feed_run(w)
    w.redraw()  # a heavy redraw (the hitmap) just happened
    w._redraw_timer.stop()
    w.schedule_redraw()
    assert w._redraw_timer.isActive() and w._redraw_timer.interval() > 0  # waits for the cap
    w._redraw_timer.stop()
    w._last_redraw -= 1.0  # quiet for a second
    w.schedule_redraw()
    assert w._redraw_timer.interval() == 0  # draws at once


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
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=5000)
        view.preset_buttons["pedestal"].click()
        assert view.upload.isChecked() and view.upload.isEnabled()
        view.start_button.click()
        qtbot.waitUntil(lambda: any(r["cmd"] == "pedestal" for r in requests), timeout=5000)
        sent = [r for r in requests if r["cmd"] != "status"]
        assert sent == [{"cmd": "pedestal", "upload": True, "events": 1000}]
        # the DAQ's status during and after the upload
        up = {"phase": "uploading"}  # between its runs: the DAQ is "configured"
        st = {**status_payload(state="configured", run_type="pedestal"), "pedestal_upload": up}
        w._on_batch(0, [wire("status", 1, st)])
        w.redraw()
        assert view.upload_label.text() == "pedestal upload in progress: uploading"
        assert not view.start_button.isEnabled() and not view.configure_button.isEnabled()
        up = {"phase": "idle", "ok": False, "outcome": "strips_off", "run": 2,
              "message": "the board's baselines after the upload are not where ..."}  # fmt: skip
        st = {**status_payload(run_number=2, state="configured"), "pedestal_upload": up}
        w._on_batch(0, [wire("status", 2, st)])
        w.redraw()
        assert view.upload_label.text().startswith("pedestal upload failed: the board's")
        assert "c62828" in view.upload_label.styleSheet()  # red
        assert "pedestal upload FAILED" in view.log.toPlainText()
        # unticked: a plain pedestal run (its script first)
        qtbot.waitUntil(lambda: view.start_button.isEnabled(), timeout=5000)
        view.upload.setChecked(False)
        assert view.upload_request() is None
        view.start_button.click()
        qtbot.waitUntil(lambda: any(r["cmd"] == "start" for r in requests), timeout=5000)
        sent = [r for r in requests if r["cmd"] in ("configure", "start")]
        assert sent == [{"cmd": "configure", "script": "pedestal_data"},
                        {"cmd": "start", "run_type": "pedestal", "events": 1000}]  # fmt: skip
        # another run type: no upload
        view.run_type.setCurrentText("background")
        assert not view.upload.isChecked() and not view.upload.isEnabled()
    finally:
        w.shutdown()
        stop()
