"""Views (pytest-qt, offscreen): the data views draw what they are fed (hitmap, event, channels
and mask editor, rates), alarms and banner colour, only visible views redraw, the stream selector,
the logbook snapshot and the redraw cap. The 55Fe view: test_gui_views_gain.py; run control:
test_gui_views_runcontrol.py."""

from __future__ import annotations

import numpy as np
import pytest
from gui_views_support import (
    MAPPING,
    expected_occupancy,
    feed_run,
    fresh,
    make_window,
    shared_window,
    show,
    start_control_server,
    wire,
)
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QApplication

from agetdaq.gui.alarms import rules_from_text
from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.synthetic import event_arrays, status_payload
from agetdaq.gui.views import AlarmsView, ChannelsView, EventView, HitmapView, RatesView


@pytest.fixture(scope="module")
def shared(qapp, tmp_path_factory):
    """One window for the tests that only feed data (building a window costs ~1 s)."""
    yield from shared_window(tmp_path_factory)


@pytest.fixture
def win(shared):
    """The shared window with a fresh model (nothing left from the previous test)."""
    return fresh(shared)


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
