"""A real agetdaq.readout.transport.stream.Publisher on 127.0.0.1 feeding the GUI's StreamWorker:
data reaches the views, gaps are shown, a closed publisher shows as disconnected/stale within 2 s,
and a publisher back on the same address brings data again without restarting the GUI."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.synthetic import FakeDaq
from agetdaq.gui.views import EventView, HitmapView
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import StreamWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.transport.stream import Publisher

pytestmark = pytest.mark.network
MAPPING = StripMapping.default()


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.term()


def publish_until(qtbot, daq: FakeDaq, condition, timeout_ms: int = 10000) -> None:
    """Publish status messages until ``condition()`` holds (PUB/SUB joins late)."""

    def check() -> bool:
        daq.status()
        qtbot.wait(50)
        return bool(condition())

    qtbot.waitUntil(check, timeout=timeout_ms)


def test_stream_reaches_views_and_survives_publisher_restart(qtbot, tcp_port, ctx):
    address = f"tcp://127.0.0.1:{tcp_port}"
    worker = StreamWorker(address, stale_after_s=1.0, context=ctx)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.show()
    assert w.model.link.state == "connecting"
    w.start()
    pub = Publisher(address, source="line-1", context=ctx)
    daq = FakeDaq(pub)
    try:
        publish_until(qtbot, daq, lambda: w.model.link.state == "connected" and w.model.status)
        assert w.selector.itemText(0) == "line-1"
        sent = daq.summary(300)
        daq.event(x_mm=3.0, y_mm=-4.0, event_id=77)
        hitmap = w.view(HitmapView)
        w.tabs.setCurrentWidget(hitmap.widget)
        n_xray = int(np.count_nonzero(sent["class"] == 1))
        qtbot.waitUntil(lambda: hitmap.image.image.sum() == n_xray, timeout=5000)
        event = w.view(EventView)
        w.tabs.setCurrentWidget(event.widget)
        qtbot.waitUntil(lambda: "event 77" in event.info.text(), timeout=5000)

        pub.seq["summary"] += 5  # five summaries "lost" on the way
        daq.summary(10)
        qtbot.waitUntil(lambda: w.model.link.gaps == 5, timeout=5000)
        w.redraw()
        assert "gaps 5" in w.banner.text()
        assert w.model.link.gaps_by_topic == {"summary": 5}

        received = w.model.link.received
        pub.close()  # the DAQ goes away
        qtbot.waitUntil(lambda: w.model.link.state in ("disconnected", "stale"), timeout=2000)
        w.redraw()
        assert "DISCONNECTED" in w.banner.text() or "STALE" in w.banner.text()
        assert w.banner.colour in ("warning", "alarm")

        pub = Publisher(address, source="line-1", context=ctx)  # back on the same address
        daq = FakeDaq(pub)
        publish_until(qtbot, daq, lambda: w.model.link.state == "connected")
        assert w.model.link.received > received
        assert w.model.link.reconnects == 1 and w.model.link.gaps == 5  # an outage is no gap
        w.redraw()
        assert "connected" in w.banner.text()
    finally:
        w.shutdown()
        pub.close()


def test_worker_does_not_fall_behind_a_fast_publisher(qtbot, tcp_port, ctx):
    """A burst far above the GUI's needs is coalesced: nothing of it is lost to the views."""
    address = f"tcp://127.0.0.1:{tcp_port}"
    worker = StreamWorker(address, context=ctx)
    w = MainWindow([(worker, None)], MAPPING, MonitorConfig(), load_rules())
    qtbot.addWidget(w)
    w.start()
    pub = Publisher(address, source="fast", hwm=100000, context=ctx)
    daq = FakeDaq(pub)
    try:
        publish_until(qtbot, daq, lambda: w.model.status)
        batches_before = worker._emitted
        total = 0
        for _ in range(300):
            total += int(np.count_nonzero(daq.summary(50)["class"] == 1))
        qtbot.waitUntil(lambda: w.model.hist.total == total, timeout=10000)
        qtbot.waitUntil(lambda: w.model.summary_events == 300 * 50, timeout=10000)
        assert worker._emitted - batches_before < 300  # merged into fewer batches
        assert w.model.link.gaps == 0
    finally:
        w.shutdown()
        pub.close()
