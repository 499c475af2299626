"""The 55Fe view (pytest-qt, offscreen): the DAQ's live spectrum, fit, trend and gain map as the
DAQ's feed publishes them, and the reference it sends back."""

from __future__ import annotations

import numpy as np
import pytest
from gui_views_support import (
    feed_calibration,
    fresh,
    make_window,
    shared_window,
    show,
    start_control_server,
)

from agetdaq.gui.control_worker import ControlWorker
from agetdaq.gui.views import GainView
from agetdaq.gui.views.gain import boundary_labels


@pytest.fixture(scope="module")
def shared(qapp, tmp_path_factory):
    """One window for the tests that only feed data (building a window costs ~1 s)."""
    yield from shared_window(tmp_path_factory)


@pytest.fixture
def win(shared):
    """The shared window with a fresh model (nothing left from the previous test)."""
    return fresh(shared)


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


def test_run_labels_leave_out_a_boundary_too_close_to_the_next() -> None:
    """Two short pedestal runs just before a calibration run: one readable label, not three on
    top of each other."""
    starts, runs = [1000.0, 1024.0, 1030.0], [1, 2, 3]
    t = np.array([1005.0, 1100.0, 1150.0])
    assert boundary_labels(starts, runs, t) == ["run 1", "", "run 3"]
    assert boundary_labels([1000.0, 1100.0], [4, 5], t) == ["run 4", "run 5"]
    # long before the first point (the plot's left edge): no label to clip
    assert boundary_labels(starts, runs, t + 40.0) == ["", "", "run 3"]
