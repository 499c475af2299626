"""55Fe and gain: live spectrum of X-ray-like events with the fitted 5.9 keV and escape peaks,
gain / resolution / threshold trends (the monitor's own slice fits and the DAQ's ``calib``
points), and the gain map. Fits run in the window's thread pool, never here."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.views.base import View

DASH = Qt.PenStyle.DashLine
MAX_SYMBOLS = 100
TRENDS = (("gain_rel", "gain / reference"), ("resolution_pct", "FWHM/E at 5.9 keV (%)"),
          ("threshold_kev", "threshold (keV)"))  # fmt: skip


class GainView(View):
    title = "55Fe && gain"
    parts = ("summary", "gain", "calib")

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        gm = self.host.model.gain
        self.slice_n = QSpinBox()
        self.slice_n.setRange(100, 10_000_000)
        self.slice_n.setValue(gm.slice_xrays)
        self.slice_n.setPrefix("trend point every ")
        self.slice_n.setSuffix(" X-rays")
        self.slice_t = QDoubleSpinBox()
        self.slice_t.setRange(0.1, 1440.0)
        self.slice_t.setValue(gm.slice_minutes)
        self.slice_t.setPrefix("or ")
        self.slice_t.setSuffix(" min")
        self.slice_n.valueChanged.connect(self._settings)
        self.slice_t.valueChanged.connect(self._settings)
        buttons = {
            "Close slice now": self.host.fit_now,
            "Reference = last peak": self.set_reference,
            "Clear reference": self.clear_reference,
            "Send reference to DAQ": self.send_reference,
            "Reset spectrum": self.reset,
        }
        bar.addWidget(self.slice_n)
        bar.addWidget(self.slice_t)
        for text, slot in buttons.items():
            b = QPushButton(text)
            b.clicked.connect(slot)
            bar.addWidget(b)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.info = QLabel("-")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        split = QSplitter()
        layout.addWidget(split, 1)

        left = pg.GraphicsLayoutWidget()
        split.addWidget(left)
        self.spec_plot = left.addPlot(row=0, col=0, title="X-ray-like energy spectrum")
        self.spec_plot.setLabel("bottom", "energy (X + Y)", "ADC")
        self.spec_plot.setLabel("left", "counts / bin")
        edges = gm.spectrum.edges.astype(np.float32)
        self.spec_curve = self.spec_plot.plot(
            edges, np.zeros(len(edges) - 1, np.float32), stepMode="center", pen="#5090ff"
        )
        self.fit_curve = self.spec_plot.plot([], [], pen=pg.mkPen("#ff3030", width=2))
        self.peak_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ff3030", style=DASH))
        self.esc_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffa000", style=DASH))
        self.spec_plot.addItem(self.peak_line)
        self.spec_plot.addItem(self.esc_line)
        n = self.host.config.gainmap_n
        self.map_plot = left.addPlot(row=1, col=0, title=f"gain map ({n} x {n}, / median)")
        self.map_plot.setAspectLocked(True)
        self.map_image = pg.ImageItem(np.zeros((n, n), np.float32))
        self.map_image.setColorMap(pg.colormap.get("CET-D1"))
        x0, x1, y0, y1 = gm.area
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

        right = pg.GraphicsLayoutWidget()
        split.addWidget(right)
        self.trend_items: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        first = None
        for row, (name, label) in enumerate(TRENDS):
            p = right.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem()})
            p.setLabel("left", label)
            p.showGrid(y=True, alpha=0.3)
            if first is None:
                first = p
                p.addLegend()
            else:
                p.setXLink(first)
            own = p.plot([], [], pen="#5090ff", symbol="o", symbolSize=5, name="monitor fits")
            daq = p.plot([], [], pen=pg.mkPen("#ffa000", style=DASH), symbol="s", symbolSize=6,
                         symbolBrush="#ffa000", name="DAQ calib")  # fmt: skip
            own.opts["_symbol"], daq.opts["_symbol"] = "o", "s"
            self.trend_items[name] = (own, daq)
        self._symbols: dict[int, bool] = {}
        return w

    # ---- actions ------------------------------------------------------------------------------

    def _settings(self) -> None:
        value = (int(self.slice_n.value()), float(self.slice_t.value()))
        self.host.model.gain.command("settings", value)

    def model_changed(self) -> None:
        super().model_changed()
        gm = self.host.model.gain
        for box, value in ((self.slice_n, gm.slice_xrays), (self.slice_t, gm.slice_minutes)):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)

    def _last_peak(self) -> float | None:
        gm = self.host.model.gain
        peak = gm.trend.last("peak_adc")
        if peak is None and gm.live is not None and gm.live.ok:
            peak = gm.live.peak_adc
        return peak

    def set_reference(self) -> None:
        """The last fitted peak becomes the reference of the relative gain."""
        gm = self.host.model.gain
        peak = self._last_peak()
        if peak is not None and math.isfinite(peak) and peak > 0:
            gm.command("reference", peak / gm.ref_energy_kev)
            self._changed()

    def clear_reference(self) -> None:
        """No reference: the next good slice sets it."""
        self.host.model.gain.command("reference", None)
        self._changed()

    def send_reference(self) -> None:
        """Tell the DAQ the reference gain (ADC per keV, as agetdaq.readout.analysis.calibration
        uses it)."""
        ref = self.host.model.gain.reference_gain
        if ref:
            self.host.control("reference", gain_adc=float(ref))

    def reset(self) -> None:
        self.host.model.gain.reset()
        self._changed("summary")

    def _changed(self, *parts: str) -> None:
        self.host.model.touch("gain", *parts)
        self.host.schedule_redraw()

    # ---- drawing ------------------------------------------------------------------------------

    def redraw(self) -> None:
        model = self.host.model
        gm = model.gain
        spec = gm.spectrum
        self.spec_curve.setData(spec.edges, spec.counts.astype(np.float32))
        live = gm.live
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
        gmap = gm.gain_map
        shown = np.nan_to_num(gmap, nan=1.0).astype(np.float32)
        self.map_image.setImage(shown, levels=(0.8, 1.2), autoLevels=False)
        for label, v in zip(self.map_labels, gmap.ravel()):
            text = f"{v:.2f}" if math.isfinite(v) else "-"
            if label.textItem.toPlainText() != text:
                label.setText(text)
        for name, _ in TRENDS:
            for item, series in zip(self.trend_items[name], (gm.trend, model.daq_calib)):
                t = series.t
                y = series.column(name)
                ok = np.isfinite(y)
                n = int(np.count_nonzero(ok))
                symbols = n <= MAX_SYMBOLS  # symbols cost per point: only for short trends
                if symbols != self._symbols.get(id(item)):
                    self._symbols[id(item)] = symbols
                    item.setSymbol(item.opts.get("_symbol") if symbols else None)
                item.setData(t[ok], y[ok].astype(np.float64))
        self.info.setText(self.fit_text())

    def fit_text(self) -> str:
        gm = self.host.model.gain
        live = gm.live
        ref = gm.reference_adc
        ref_text = f"reference peak {ref:.1f} ADC" if ref else "no reference yet"
        ref_text += f"; open slice {gm.open_xrays} X-rays"
        ref_text += f"; last error: {gm.last_error}" if gm.last_error else ""
        head = f"{gm.spectrum.total} X-ray-like events in the spectrum; "
        if live is None:
            return head + "no fit yet; " + ref_text
        if not live.ok:
            return head + f"fit failed: {live.reason}; " + ref_text
        rel = gm.gain_rel(live.peak_adc)
        rel_text = f"gain {rel:.3f} of reference" if math.isfinite(rel) else "no reference"
        thr = f"{live.threshold_kev:.2f} keV" if math.isfinite(live.threshold_kev) else "-"
        return (
            head + f"5.9 keV peak {live.peak_adc:.1f} +- {live.peak_err:.1f} ADC "
            f"({rel_text}), FWHM/E {100 * live.resolution:.1f} %, "
            f"{live.n_peak:.0f} counts in the peak; escape peak {live.escape_adc:.0f} ADC "
            f"({live.n_escape:.0f} counts); threshold {thr}; chi2/ndf {live.chi2_ndf:.2f}; "
            + ref_text
        )

    def summary(self) -> list[str]:
        return ["55Fe: " + self.fit_text()]
