"""55Fe and gain, all from the DAQ's calibration feed (``calib``) and run histogram (``hist``):
the spectrum of the DAQ's live window (its last N X-rays) with the fitted 5.9 keV and escape
peaks, the run's X-ray-like spectrum, the gain / resolution / threshold trend points and the gain
map. The view fits nothing; the gain it shows is the one the gain alarms watch."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from agetdaq.gui.views.base import View

DASH = Qt.PenStyle.DashLine
MAX_SYMBOLS = 100
REF_KEV = 5.9
TRENDS = (("gain_rel", "gain / reference"), ("resolution_pct", "FWHM/E at 5.9 keV (%)"),
          ("threshold_kev", "threshold (keV)"))  # fmt: skip


class GainView(View):
    title = "55Fe && gain"
    parts = ("calib", "hist")

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        self.reference_button = QPushButton("DAQ reference = last peak")
        self.reference_button.setToolTip("send the gain of the DAQ's newest good fit as the "
                                         "reference of the relative gain")  # fmt: skip
        self.reference_button.clicked.connect(self.send_reference)
        bar.addWidget(self.reference_button)
        self.slicing = QLabel("-")
        bar.addWidget(self.slicing, 1)
        layout.addLayout(bar)
        self.info = QLabel("-")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        split = QSplitter()
        layout.addWidget(split, 1)

        left = pg.GraphicsLayoutWidget()
        split.addWidget(left)
        self.spec_plot = left.addPlot(row=0, col=0, title="live window (DAQ): last X-rays")
        self.spec_plot.setLabel("bottom", "energy (X + Y)", "ADC")
        self.spec_plot.setLabel("left", "counts / bin")
        self.spec_curve = self.spec_plot.plot([0.0, 1.0], [0.0], stepMode="center",
                                              pen="#5090ff")  # fmt: skip
        self.fit_curve = self.spec_plot.plot([], [], pen=pg.mkPen("#ff3030", width=2))
        self.peak_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ff3030", style=DASH))
        self.esc_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffa000", style=DASH))
        self.spec_plot.addItem(self.peak_line)
        self.spec_plot.addItem(self.esc_line)
        self.run_plot = left.addPlot(row=1, col=0, title="run: X-ray-like events (DAQ hist)")
        self.run_plot.setLabel("bottom", "energy (X + Y)", "ADC")
        self.run_curve = self.run_plot.plot([0.0, 1.0], [0.0], stepMode="center", pen="#aaaaaa",
                                            fillLevel=0, brush=(170, 170, 170, 60))  # fmt: skip
        self.run_plot.setXLink(self.spec_plot)
        n = self.host.config.gainmap_n
        self.map_n = n
        self.map_plot = left.addPlot(row=2, col=0, title="gain map (DAQ, / median)")
        self.map_plot.setAspectLocked(True)
        self.map_image = pg.ImageItem(np.ones((n, n), np.float32))
        self.map_image.setColorMap(pg.colormap.get("CET-D1"))
        x0, x1, y0, y1 = self._area()
        self.map_image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.map_plot.addItem(self.map_image)
        self.map_labels = []
        for ix in range(n):
            for iy in range(n):
                t = pg.TextItem("-", anchor=(0.5, 0.5), color="k")
                t.setPos(x0 + (ix + 0.5) * (x1 - x0) / n, y0 + (iy + 0.5) * (y1 - y0) / n)
                self.map_plot.addItem(t)
                self.map_labels.append(t)
        left.ci.layout.setRowStretchFactor(0, 3)
        left.ci.layout.setRowStretchFactor(1, 2)
        left.ci.layout.setRowStretchFactor(2, 3)

        right = pg.GraphicsLayoutWidget()
        split.addWidget(right)
        self.trend_items: dict[str, pg.PlotDataItem] = {}
        first = None
        for row, (name, label) in enumerate(TRENDS):
            p = right.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem()})
            p.setLabel("left", label)
            p.showGrid(y=True, alpha=0.3)
            if first is None:
                first = p
            else:
                p.setXLink(first)
            self.trend_items[name] = p.plot([], [], pen="#ffa000", symbol="s", symbolSize=6,
                                            symbolBrush="#ffa000")  # fmt: skip
        self._symbols: dict[str, bool] = {}
        return w

    def _area(self) -> tuple[float, float, float, float]:
        hm = self.host.model.hist
        return (
            float(hm.x_edges[0]),
            float(hm.x_edges[-1]),
            float(hm.y_edges[0]),
            float(hm.y_edges[-1]),
        )

    # ---- actions ------------------------------------------------------------------------------

    def send_reference(self) -> bool:
        """Tell the DAQ the gain (ADC per keV) of its newest good fit as the new reference."""
        gain = self.host.model.calib.last_gain()
        if gain is None or not gain > 0:
            return False
        return self.host.control("reference", gain_adc=float(gain))

    # ---- drawing ------------------------------------------------------------------------------

    def redraw(self) -> None:
        model = self.host.model
        cs = model.calib
        live = cs.live
        if live is not None:
            self.spec_curve.setData(live.edges, live.spectrum)
        else:
            self.spec_curve.setData([0.0, 1.0], [0.0])
        if live is not None and live.ok and len(live.curve_x) > 1:
            cx = 0.5 * (live.curve_x[1:] + live.curve_x[:-1])
            self.fit_curve.setData(cx, live.curve_y)
            self.peak_line.setPos(live.peak_adc)
            self.esc_line.setPos(live.escape_adc)
            self.peak_line.show()
            self.esc_line.show()
        else:
            self.fit_curve.setData([], [])
            self.peak_line.hide()
            self.esc_line.hide()
        hm = model.hist
        if len(hm.spectrum):
            self.run_curve.setData(hm.spectrum_edges, hm.spectrum)
        else:
            self.run_curve.setData([0.0, 1.0], [0.0])
        self._draw_map()
        for name, _ in TRENDS:
            item = self.trend_items[name]
            y = cs.trend.column(name)
            ok = np.isfinite(y)
            symbols = int(np.count_nonzero(ok)) <= MAX_SYMBOLS  # symbols cost per point
            if symbols != self._symbols.get(name):
                self._symbols[name] = symbols
                item.setSymbol("s" if symbols else None)
            item.setData(cs.trend.t[ok], y[ok].astype(np.float64))
        n, minutes = cs.slice_xrays, cs.slice_minutes
        slicing = f"DAQ trend point every {n} X-rays" if n else "no DAQ calibration feed yet"
        if n and minutes is not None and math.isfinite(minutes):
            slicing += f" or {minutes:g} min"
        if live is not None:
            slicing += f"; live window: last {live.window_xrays} X-rays"
        self.slicing.setText(slicing)
        self.info.setText(self.fit_text())

    def _draw_map(self) -> None:
        gm = self.host.model.calib.gain_map
        n = self.map_n
        if gm is None:
            self.map_image.setImage(np.ones((n, n), np.float32), levels=(0.8, 1.2),
                                    autoLevels=False)  # fmt: skip
            texts = ["-"] * len(self.map_labels)
        else:
            shown = np.nan_to_num(gm.rel_gain, nan=1.0).astype(np.float32)
            self.map_image.setImage(shown, levels=(0.8, 1.2), autoLevels=False)
            x0, x1, y0, y1 = gm.area_mm
            self.map_image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            if gm.rel_gain.shape == (n, n):
                texts = [gm.cell_text(ix, iy) for ix in range(n) for iy in range(n)]
            else:
                texts = ["-"] * len(self.map_labels)
        for label, text in zip(self.map_labels, texts):
            if label.textItem.toPlainText() != text:
                label.setText(text)

    def fit_text(self) -> str:
        cs = self.host.model.calib
        live = cs.live
        ref = cs.reference_gain
        ref_text = f"reference {ref * REF_KEV:.1f} ADC at 5.9 keV" if ref else "no reference yet"
        gain_rel, _, _, what = cs.gain_now()
        now_text = (f"gain {gain_rel:.3f} of reference ({what}; the gain alarms watch it)"
                    if gain_rel is not None else "no good fit yet")  # fmt: skip
        if live is None:
            return f"no live fit from the DAQ yet (calibration runs only); {now_text}; {ref_text}"
        head = f"live window: {live.counts} X-rays; "
        if not live.ok:
            return head + f"fit failed: {live.reason}; {now_text}; {ref_text}"
        thr = f"{live.threshold_kev:.2f} keV" if math.isfinite(live.threshold_kev) else "-"
        return (
            head + f"5.9 keV peak {live.peak_adc:.1f} +- {live.peak_adc_err:.1f} ADC, "
            f"FWHM/E {100 * live.resolution:.1f} %, {live.n_peak:.0f} counts in the peak; "
            f"escape peak {live.escape_adc:.0f} ADC ({live.n_escape:.0f} counts); threshold "
            f"{thr}; chi2/ndf {live.chi2_ndf:.2f}; {now_text}; {ref_text}"
        )

    def summary(self) -> list[str]:
        return ["55Fe: " + self.fit_text()]
