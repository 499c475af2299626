"""The view seam (docs/ARCHITECTURE.md, "where to add a view"): a view plugin is one class given
to the window, no existing view or window code edited. This test adds one that shows the DAQ's
X-ray-like count and mean energy, feeds the window what the DAQ's own feed publishes, and checks
the new tab draws exactly those numbers while the shipped tabs are all still there."""

from __future__ import annotations

import numpy as np
from PyQt6.QtWidgets import QLabel, QWidget

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.gui.synthetic import FakeDaq
from agetdaq.gui.views import VIEWS, View
from agetdaq.gui.window import MainWindow
from agetdaq.gui.worker import SourceWorker
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.sink import Collect
from agetdaq.readout.schema import EventClass

MAPPING = StripMapping.default()


class XrayCountView(View):
    """A site's own tab: the X-ray-like events of the run and their mean energy (ADC)."""

    title = "X-ray count"
    parts = ("hist",)

    def build(self) -> QWidget:
        self.label = QLabel("no run yet")
        self.seen = 0
        return self.label

    def on_message(self, msg) -> None:
        self.seen += 1

    def redraw(self) -> None:
        h = self.host.model.hist
        n = h.class_counts.get("xray", 0)
        e, edges = np.asarray(h.spectrum, float), h.spectrum_edges
        centres = 0.5 * (edges[1:] + edges[:-1])
        mean = float((e * centres).sum() / e.sum()) if e.sum() else float("nan")
        self.label.setText(f"{n} X-rays, mean {mean:.0f} ADC")


def test_a_view_plugin_is_one_class_given_to_the_window(qtbot, tmp_path):
    w = MainWindow([(SourceWorker("test://0"), None)], MAPPING, MonitorConfig(), load_rules(),
                   snapshot_dir=tmp_path, views=(*VIEWS, XrayCountView))  # fmt: skip
    qtbot.addWidget(w)
    w.show()
    titles = [w.tabs.tabText(i) for i in range(w.tabs.count())]
    assert titles == [cls.title for cls in VIEWS] + ["X-ray count"]

    sink = Collect("d0", clock=lambda: 1000.0)
    daq = FakeDaq(sink, MAPPING, seed=3, clock=lambda: 1000.0, run_number=4)
    rows = daq.summary(300)
    w._on_batch(0, list(sink.messages))
    view = w.view(XrayCountView)
    w.tabs.setCurrentIndex(len(VIEWS))
    w.redraw()

    xray = rows["class"] == int(EventClass.XRAY)
    assert view.seen == len(sink.messages) and view.draw_count >= 1
    n, rest = view.label.text().split(" X-rays, mean ")
    assert int(n) == int(xray.sum()) > 0  # the DAQ's count, as published
    assert abs(float(rest.split()[0]) - rows["energy_adc"][xray].mean()) < 0.02 * 8192
    assert MainWindow.__init__.__defaults__[-1] == VIEWS  # the default tabs stay the shipped ones
