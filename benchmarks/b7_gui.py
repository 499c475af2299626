"""B7: the monitor's redraw cost and event -> screen latency (offscreen Qt unless a display is set).

1. Full redraw: every view of a window holding a full data set, made by the DAQ's own feeds over
   synthetic events (240 strips; 120 x 120 hitmap and occupancy of 100 000 events; 240 x 512
   event; pedestal table of 256 channels; 24 h of 1 Hz rate history; the 2048-bin live 55Fe
   spectrum with its fit and the run's 512-bin spectrum; 36-region gain map; 700 trend points)
   redrawn at once (``MainWindow.redraw(force)``: setData / setImage on every item). Also the
   slowest single tab including its paint.
2. Latency: a real Publisher on 127.0.0.1 sends sampled ``event`` messages at 5 Hz; the time from
   just before ``publish`` to the end of the event view's redraw that shows the event.
Reference for the redraw: the 100 ms frame of the 10 Hz redraw cap (ratio = share of a frame).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from benchmarks.common import make_row

ID = "B7"
TARGET_REDRAW_MS = 15.0
TARGET_LATENCY_MS = 100.0


def _app():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PyQt6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


def _filled_window():
    """A window whose model holds a full, realistic data set, made as the DAQ makes it: the
    DAQ's monitor and 55Fe feeds over synthetic event rows (agetdaq.gui.synthetic.FakeDaq)."""
    from dataclasses import replace

    from agetdaq.gui.alarms import load_rules
    from agetdaq.gui.synthetic import FakeDaq, status_payload
    from agetdaq.gui.window import MainWindow
    from agetdaq.gui.worker import SourceWorker
    from agetdaq.readout.analysis.sink import Collect
    from agetdaq.readout.transport.stream import Message

    w = MainWindow([(SourceWorker("bench://0"), None)], rules=load_rules())
    w.show()
    m = w.model
    rng = np.random.default_rng(7)
    t0 = time.time() - 86400
    sink = Collect("bench", clock=lambda: t0 + 86400)
    daq = FakeDaq(sink, w.mapping, seed=7, run_type="calibration", clock=lambda: t0 + 86400)
    calib = daq.feed.calib
    calib.config = replace(calib.config, slice_xrays=10**6)
    calib.window_xrays = 2000
    calib.live_interval_s = calib.map_step_s = 0.0
    daq.new_run(1)
    for _ in range(20):
        daq.summary(5000)  # summaries and the run's hist: 100 000 events
    for k in range(m.config.recent_events):
        daq.event(rng.uniform(-20, 20), rng.uniform(-20, 20), event_id=k)
    daq.pedestal(dead=(3, 77), noisy=(130, 200))
    for _ in range(calib.sweep.n_regions + 1):
        daq.feed.tick()  # the live window's fit, then the gain map region by region
    for k in range(700):  # trend points over 24 h
        daq.calib(k, 1 - 0.0001 * k, t=t0 + 120 * k)
    w._on_batch(0, sink.messages)
    status = status_payload(run_number=1)
    for k in range(86400):  # 24 h of status at 1 Hz, straight into the rate history
        status["class_counts"] = {"xray": 40 * k, "muon": 5 * k, "noise": 2 * k}
        m.rates.add_status(t0 + k, status, 0)
    m.apply(Message("status", {**status, "time": t0 + 86400, "seq": 1}))
    assert m.calib.live is not None and m.calib.live.ok and m.calib.gain_map is not None
    assert m.hist.total > 50000 and len(m.calib.trend) == 700
    m.evaluate_alarms()
    return w


def _redraw_ms(w, repeat: int) -> tuple[float, float, float]:
    """(best and median ms of a forced redraw of every view, slowest tab's redraw + paint in ms,
    best of its repeats): best-of-N as benchmarks.common.best_time, the median as a check."""
    from PyQt6.QtWidgets import QApplication

    w.redraw(force=True)
    QApplication.processEvents()
    full = []
    for _ in range(repeat):
        t = time.perf_counter()
        w.redraw(force=True)
        full.append(1000 * (time.perf_counter() - t))
    worst_tab = 0.0
    for i in range(w.tabs.count()):
        w.tabs.setCurrentIndex(i)
        QApplication.processEvents()
        times = []
        for _ in range(max(3, repeat // 4)):
            t = time.perf_counter()
            for v in [w.banner, *w.views]:
                if v is w.banner or v.is_visible():
                    v.draw()
            w.repaint()
            times.append(1000 * (time.perf_counter() - t))
        worst_tab = max(worst_tab, float(np.min(times)))
    return float(np.min(full)), float(np.median(full)), worst_tab


def _latency_ms(n_events: int) -> list[float]:
    """Publish -> shown latencies through a real Publisher, StreamWorker and window."""
    import zmq
    from PyQt6.QtWidgets import QApplication

    from agetdaq.gui.alarms import load_rules
    from agetdaq.gui.synthetic import FakeDaq
    from agetdaq.gui.views import EventView
    from agetdaq.gui.window import MainWindow
    from agetdaq.gui.worker import StreamWorker
    from agetdaq.readout.transport.stream import Publisher

    ctx = zmq.Context()
    pub = Publisher("tcp://127.0.0.1:*", source="bench", context=ctx)
    worker = StreamWorker(pub.address, context=ctx)
    w = MainWindow([(worker, None)], rules=load_rules())
    view = w.view(EventView)
    w.tabs.setCurrentWidget(view.widget)
    w.show()
    shown: dict[int, float] = {}
    orig = view.redraw

    def timed_redraw() -> None:
        orig()
        if view.shown is not None:
            shown.setdefault(int(view.shown.header.get("event_id", -1)), time.perf_counter())

    view.redraw = timed_redraw
    w.start()
    daq = FakeDaq(pub, w.mapping)
    try:
        end = time.monotonic() + 10
        while not w.model.status and time.monotonic() < end:  # slow joiner
            daq.status()
            t = time.monotonic()
            while time.monotonic() - t < 0.05:
                QApplication.processEvents()
        sent: dict[int, float] = {}
        for k in range(1, n_events + 1):
            sent[k] = time.perf_counter()
            daq.event(event_id=k)
            t = time.monotonic()
            while time.monotonic() - t < 0.2:  # the DAQ samples events at <= 5 Hz
                QApplication.processEvents()
                time.sleep(0.001)
        return [1000 * (shown[k] - sent[k]) for k in sent if k in shown]
    finally:
        w.shutdown()
        pub.close()
        w.close()
        ctx.term()


def run(quick: bool) -> list[dict[str, Any]]:
    app = _app()  # keep a reference: an unreferenced QApplication is destroyed at once
    w = _filled_window()
    try:
        full, full_median, tab = _redraw_ms(w, 10 if quick else 40)
    finally:
        w.shutdown()
        w.close()
    lat = _latency_ms(10 if quick else 40)
    app.processEvents()
    frame = 100.0
    rows = [
        make_row(ID, "full redraw of every view (240 strips, 24 h history)", full, "ms",
                 reference=frame, ref_unit="ms frame at 10 Hz", target=TARGET_REDRAW_MS,
                 target_on="value", higher_is_better=False),
        make_row(ID, "full redraw of every view (median)", full_median, "ms", reference=frame,
                 ref_unit="ms frame at 10 Hz"),
        make_row(ID, "slowest tab: redraw + paint", tab, "ms", reference=frame,
                 ref_unit="ms frame at 10 Hz"),
    ]  # fmt: skip
    if lat:
        rows.append(make_row(ID, "event -> screen latency (median)", float(np.median(lat)), "ms",
                             target=TARGET_LATENCY_MS, target_on="value",
                             higher_is_better=False))  # fmt: skip
        rows.append(make_row(ID, "event -> screen latency (max)", float(np.max(lat)), "ms"))
    else:
        rows.append({"id": ID, "name": "event -> screen latency", "value": None, "unit": "ms",
                     "met": False})  # fmt: skip
    return rows
