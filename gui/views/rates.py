"""Rates vs time: trigger rate, per-class rates (X-ray-like, muon-like, noise), dead time,
losses and throughput over a selectable window (10 min ... 24 h), from the status messages."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import align_left_axis, outside_legend

WINDOWS = (("10 min", 600), ("30 min", 1800), ("1 h", 3600), ("3 h", 10800), ("6 h", 21600),
           ("12 h", 43200), ("24 h", 86400))  # fmt: skip
MAX_POINTS = 2000
PLOTS = (  # title, unit, [(series, legend, colour)]
    ("trigger", "Hz", [("trigger_rate", "trigger", "#5090ff"), ("events_per_s", "events", "#aaa")]),
    ("per class", "Hz", [("rate_xray", "X-ray-like", "#3cb44b"), ("rate_muon", "muon-like",
     "#e6194b"), ("rate_noise", "noise", "#aaaaaa"), ("rate_other", "other", "#911eb4")]),
    ("busy", "%", [("dead_time_pct", "dead time", "#f58231"),
                                ("queue_fill_pct", "queue fill", "#42d4f4")]),
    ("losses", "1/s", [("data_lost_rate", "data lost", "#ff3030"),
                       ("not_processed_rate", "not processed online", "#f58231")]),
    ("throughput", "MB/s", [("mb_per_s", "MB/s", "#5090ff")]),
)  # fmt: skip


class RatesView(View):
    title = "Rates"
    parts = ("status",)
    refresh_s = 2.0

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("window"))
        self.window_box = QComboBox()
        for text, _ in WINDOWS:
            self.window_box.addItem(text)
        self.window_box.currentIndexChanged.connect(self._force)
        bar.addWidget(self.window_box)
        self.info = QLabel("-")
        bar.addWidget(self.info, 1)
        layout.addLayout(bar)
        glw = pg.GraphicsLayoutWidget()
        layout.addWidget(glw, 1)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.plots = []
        for row, (title, unit, series) in enumerate(PLOTS):
            p = glw.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem()})
            p.setLabel("left", f"{title} ({unit})")
            p.getAxis("left").enableAutoSIPrefix(False)  # no "(x0.001)" on a quiet plot
            p.showGrid(y=True, alpha=0.3)
            if self.plots:
                p.setXLink(self.plots[0])
            legend = outside_legend(glw.ci, row, 1)
            for i, (name, text, colour) in enumerate(series):
                self.curves[name] = p.plot([], [], pen=pg.mkPen(colour, width=1.5))
                self.curves[name].setZValue(-i)  # the first on top (trigger over events)
                legend.addItem(self.curves[name], text)
            self.plots.append(p)
        align_left_axis(*self.plots)
        glw.ci.layout.setColumnStretchFactor(0, 5)
        return w

    def _force(self) -> None:
        self._drawn.clear()
        self.host.schedule_redraw()

    @property
    def window_s(self) -> int:
        return WINDOWS[self.window_box.currentIndex()][1]

    def redraw(self) -> None:
        series = self.host.model.rates.series
        end = series.last_time()
        if end is None:
            for c in self.curves.values():
                c.setData([], [])
            self.info.setText("no status received yet")
            return
        names = [n for n in self.curves if n != "queue_fill_pct"] + ["queue_fill"]
        t, cols = series.window(end - self.window_s, names, MAX_POINTS)
        cols["queue_fill_pct"] = cols.pop("queue_fill") * 100.0
        for name, curve in self.curves.items():
            curve.setData(t, cols[name], connect="finite")
        self.plots[0].setXRange(end - self.window_s, end, padding=0.01)
        rates = self.host.model.rates
        lost = rates.increase_since("data_lost_total", self.window_s)
        skipped = rates.increase_since("not_processed_total", self.window_s)
        lost_text = ""
        if lost is not None:
            lost_text = f"; in this window: data lost {lost:.0f}"
            lost_text += f", not processed online {skipped:.0f}" if skipped is not None else ""
        self.info.setText(f"{len(series)} status points kept (up to {series.capacity}){lost_text}")
