"""Hitmap of X-ray-like cluster centroids (X-Y, mm) and the X / Y strip occupancy, with the
dead and noisy strips of the last pedestal table marked. Both are the DAQ's run histograms
(``hist``); Reset only moves the display's baseline."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF
from PyQt6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from agetdaq.gui.accumulators import PedestalInfo
from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import StripAxis, align_left_axis, colour_bar, outside_legend, strip_names

DEAD_PEN = pg.mkPen("#ff3030", width=1)
NOISY_PEN = pg.mkPen("#ffa000", width=1)
DEAD_BRUSH = pg.mkBrush("#ff3030")
NOISY_BRUSH = pg.mkBrush("#ffa000")


class HitmapView(View):
    title = "Hitmap"
    parts = ("hist", "pedestal")

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        self.log_box = QCheckBox("log scale")
        self.log_box.toggled.connect(self._force)
        reset = QPushButton("Reset")
        reset.clicked.connect(self.reset)
        self.info = QLabel("-")
        bar.addWidget(self.log_box)
        bar.addWidget(reset)
        bar.addWidget(self.info, 1)
        layout.addLayout(bar)
        glw = pg.GraphicsLayoutWidget()
        layout.addWidget(glw, 1)
        m = self.host.mapping
        hm = self.host.model.hist
        self.map_plot = glw.addPlot(row=0, col=0, rowspan=2, title="X-ray-like centroids")
        self.map_plot.setLabel("bottom", "x", "mm")
        self.map_plot.setLabel("left", "y", "mm")
        self.map_plot.setAspectLocked(True)
        self.image = pg.ImageItem(np.zeros(hm.hitmap.shape, np.float32))
        cmap = pg.colormap.get("viridis")
        self.image.setColorMap(cmap)
        self._rect: tuple[float, ...] = ()
        self._place(hm)
        self.map_plot.addItem(self.image)
        self.bar = colour_bar(self.image, self.map_plot, cmap, "centroids / strip bin")
        self._bar_log: bool | None = None
        self.dead_lines = pg.PlotDataItem(connect="pairs", pen=DEAD_PEN)
        self.noisy_lines = pg.PlotDataItem(connect="pairs", pen=NOISY_PEN)
        self.map_plot.addItem(self.dead_lines)
        self.map_plot.addItem(self.noisy_lines)
        self.occ = {}
        self.marks = {}
        plots = []
        for row, axis, n in ((0, "X", m.n_x), (1, "Y", m.n_y)):
            strip_axis = StripAxis(strip_names(m, axis))
            p = glw.addPlot(row=row, col=1, title=f"{axis} strip occupancy",
                            axisItems={"bottom": strip_axis})  # fmt: skip
            p.setLabel("bottom", f"{axis} strip")
            p.setLabel("left", "hits")
            plots.append(p)
            edges = np.arange(n + 1, dtype=np.float32) - 0.5
            curve = p.plot(edges, np.zeros(n, np.float32), stepMode="center", fillLevel=0,
                           brush=(80, 140, 255, 90), pen="#5090ff")  # fmt: skip
            marks = p.plot([], [], pen=None, symbol="x", symbolSize=10, symbolPen=None)
            self.occ[axis] = curve
            self.marks[axis] = marks
        align_left_axis(*plots)
        legend = outside_legend(glw.ci, 2, 1, colCount=3)
        legend.addItem(pg.PlotDataItem(pen=None, symbol="x", symbolBrush=DEAD_BRUSH,
                                       symbolPen=DEAD_PEN), "dead strip")  # fmt: skip
        legend.addItem(pg.PlotDataItem(pen=None, symbol="x", symbolBrush=NOISY_BRUSH,
                                       symbolPen=NOISY_PEN), "noisy strip")  # fmt: skip
        legend.addItem(self.dead_lines, "dead (on the map)")
        glw.ci.layout.setColumnStretchFactor(0, 3)
        glw.ci.layout.setColumnStretchFactor(1, 2)
        self.glw = glw
        return w

    def _place(self, hm) -> None:
        """The image covers the DAQ's hitmap bins (x and y edges in mm)."""
        rect = (hm.x_edges[0], hm.x_edges[-1], hm.y_edges[0], hm.y_edges[-1])
        if rect != self._rect:
            x0, x1, y0, y1 = rect
            self.image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            self._rect = rect

    def _force(self) -> None:
        self._drawn.clear()
        self.host.schedule_redraw()

    def reset(self) -> None:
        """Show only what the DAQ counts from now on."""
        m = self.host.model
        m.hist.reset_display()
        m.touch("hist")
        self.host.schedule_redraw()

    def redraw(self) -> None:
        model = self.host.model
        mapping = self.host.mapping
        hm = model.hist
        counts = hm.shown_hitmap
        img = np.log10(1.0 + counts) if self.log_box.isChecked() else counts
        top = float(img.max()) if img.size else 0.0
        self.image.setImage(img, autoLevels=False)
        self.bar.setLevels((0.0, max(top, 1.0)))
        log = self.log_box.isChecked()
        if log != self._bar_log:
            self._bar_log = log
            self.bar.getAxis("left").setLabel(
                "log10(1 + centroids)" if log else "centroids / strip bin"
            )
        self._place(hm)
        occ = hm.shown_occupancy
        nx = mapping.n_x
        self.occ["X"].setData(np.arange(nx + 1) - 0.5, occ[:nx])
        self.occ["Y"].setData(np.arange(mapping.n_strips - nx + 1) - 0.5, occ[nx:])
        dead = model.pedestal.strips_with(PedestalInfo.DEAD)
        noisy = model.pedestal.strips_with(PedestalInfo.NOISY)
        box = (hm.x_edges[0], hm.x_edges[-1], hm.y_edges[0], hm.y_edges[-1])
        for item, strips in ((self.dead_lines, dead), (self.noisy_lines, noisy)):
            item.setData(*_strip_lines(strips, mapping, box))
        marked = np.concatenate((dead, noisy))
        brushes = np.array([DEAD_BRUSH] * len(dead) + [NOISY_BRUSH] * len(noisy), dtype=object)
        for axis, lo, hi in (("X", 0, nx), ("Y", nx, mapping.n_strips)):
            sel = (marked >= lo) & (marked < hi)
            s = marked[sel]
            self.marks[axis].setData(mapping.strip[s].astype(float), occ[s].astype(float),
                                     symbolBrush=list(brushes[sel]))  # fmt: skip
        shed = f"; {hm.not_processed} events not processed online" if hm.not_processed else ""
        if model.status.get("pedestal_table") == "":
            shed += "; NO PEDESTAL TABLE: hits are not pedestal-subtracted"
        self.info.setText(
            f"{hm.total} X-ray-like centroids ({hm.outside} outside); occupancy of "
            f"{hm.shown_occupancy_events} triggered events; dead {len(dead)}, noisy {len(noisy)} "
            f"strips{shed}" + ("" if hm.received else "; no DAQ histogram yet")
        )

    def summary(self) -> list[str]:
        m = self.host.model
        return [f"hitmap: {m.hist.total} X-ray-like centroids"]


def _strip_lines(strips: np.ndarray, mapping, box: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Line segments (pairs) across the hitmap at the positions of ``strips``."""
    x0, x1, y0, y1 = box
    pos = mapping.position_mm[strips]
    is_x = mapping.axis[strips] == 0
    xs = np.empty(2 * len(strips))
    ys = np.empty(2 * len(strips))
    xs[0::2] = np.where(is_x, pos, x0)
    xs[1::2] = np.where(is_x, pos, x1)
    ys[0::2] = np.where(is_x, y0, pos)
    ys[1::2] = np.where(is_x, y1, pos)
    return xs, ys
