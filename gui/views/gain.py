"""55Fe and gain, all from the DAQ's calibration feed (``calib``) and run histogram (``hist``):
the one gain number (the DAQ's live fit of its last N X-rays, the number the gain alarm watches),
the live window's spectrum in keV with the fitted 5.9 keV and escape peaks, the run's X-ray-like
spectrum, the gain / resolution / threshold trend points with the alarm bands, run boundaries and
gaps for outages, and the gain map with a colour bar (each empty cell says why). The view fits
nothing."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import align_left_axis, colour_bar, outside_legend

DASH = Qt.PenStyle.DashLine
MAX_SYMBOLS = 100
MAX_BOUNDARIES = 12  # run boundaries drawn on the trends (the newest)
LABEL_ROOM = 0.08  # a run label needs this fraction of the time shown before the next boundary
GAP_FACTOR = 4.0  # trend points further apart than this x the median spacing: a gap
SHOWN_BINS = 512  # bins of the live spectrum as drawn
KEV_SHOWN = 12.0  # energy axis of the spectra: 0 .. 12 keV (0 .. 8192 ADC without a scale)
ADC_SHOWN = 8192.0
TRENDS = (("gain_rel", "gain / reference"), ("resolution_pct", "FWHM/E at 5.9 keV (%)"),
          ("threshold_kev", "threshold (keV)"))  # fmt: skip
BAND_BRUSH = (60, 180, 75, 40)
WARN_PEN = pg.mkPen("#f9a825", style=DASH, width=1)
ALARM_PEN = pg.mkPen("#e53935", style=DASH, width=1.5)
RUN_PEN = pg.mkPen("#9e9e9e", style=Qt.PenStyle.DotLine, width=1)


def with_gaps(t: np.ndarray, y: np.ndarray, cuts: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """The points with a NaN between neighbours far apart (an outage) or across a run boundary
    (``cuts``), so a line breaks there instead of ramping over it."""
    if len(t) < 2:
        return t, y
    dt = np.diff(t)
    typical = float(np.median(dt)) if len(dt) else 0.0
    gap = dt > GAP_FACTOR * typical if typical > 0 else np.zeros(len(dt), bool)
    for c in cuts:
        gap |= (t[:-1] < c) & (t[1:] >= c)
    idx = np.flatnonzero(gap) + 1
    if not len(idx):
        return t, y
    return np.insert(t, idx, t[idx - 1]), np.insert(y, idx, np.nan)


class GainView(View):
    title = "55Fe && gain"
    parts = ("calib", "hist", "runs")

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        self.gain_label = QLabel("gain: no fit yet")
        font = self.gain_label.font()
        font.setPointSize(font.pointSize() + 4)
        font.setBold(True)
        self.gain_label.setFont(font)
        bar.addWidget(self.gain_label)
        self.reference_button = QPushButton("DAQ reference = last peak")
        self.reference_button.setToolTip("send the gain of the DAQ's newest good fit as the "
                                         "reference of the relative gain")  # fmt: skip
        self.reference_button.clicked.connect(self.send_reference)
        bar.addStretch(1)
        bar.addWidget(self.reference_button)
        layout.addLayout(bar)
        self.slicing = QLabel("-")
        layout.addWidget(self.slicing)
        self.info = QLabel("-")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        split = QSplitter()
        layout.addWidget(split, 1)
        split.addWidget(self._build_spectra())
        split.addWidget(self._build_map())
        split.addWidget(self._build_trends())
        split.setSizes([520, 480, 520])
        self._symbols: dict[str, bool] = {}
        self._scale: float | None = -1.0  # energy scale the axes show (keV per ADC)
        return w

    def _build_spectra(self) -> pg.GraphicsLayoutWidget:
        left = pg.GraphicsLayoutWidget()
        self.spec_plot = left.addPlot(row=0, col=0, title="live window (DAQ): last X-rays")
        self.spec_plot.setLabel("left", "counts / bin")
        self.spec_curve = self.spec_plot.plot([0.0, 1.0], [0.0], stepMode="center",
                                              pen="#5090ff")  # fmt: skip
        self.fit_curve = self.spec_plot.plot([], [], pen=pg.mkPen("#ff3030", width=2))
        self.peak_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ff3030", style=DASH))
        self.esc_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffa000", style=DASH))
        self.spec_plot.addItem(self.peak_line)
        self.spec_plot.addItem(self.esc_line)
        legend = outside_legend(left.ci, 1, 0, colCount=4)
        legend.addItem(self.spec_curve, "live window")
        legend.addItem(self.fit_curve, "DAQ fit")
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#ff3030", style=DASH)), "fitted 5.9 keV peak")
        legend.addItem(pg.PlotDataItem(pen=pg.mkPen("#ffa000", style=DASH)), "escape peak")
        self.run_plot = left.addPlot(row=2, col=0, title="run: X-ray-like events (DAQ hist)")
        self.run_plot.setLabel("left", "counts / bin")
        self.run_curve = self.run_plot.plot([0.0, 1.0], [0.0], stepMode="center", pen="#aaaaaa",
                                            fillLevel=0, brush=(170, 170, 170, 60))  # fmt: skip
        self.run_plot.setXLink(self.spec_plot)
        align_left_axis(self.spec_plot, self.run_plot)
        left.ci.layout.setRowStretchFactor(0, 3)
        left.ci.layout.setRowStretchFactor(2, 2)
        return left

    def _build_map(self) -> QWidget:
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        glw = pg.GraphicsLayoutWidget()
        col.addWidget(glw, 1)
        self.map_info = QLabel("-")
        self.map_info.setWordWrap(True)
        col.addWidget(self.map_info)
        n = self.host.config.gainmap_n  # until the DAQ's map says its own
        self.map_plot = glw.addPlot(row=0, col=0, title="gain map (DAQ): region / median")
        self.map_plot.setAspectLocked(True)
        self.map_plot.setLabel("bottom", "x", "mm")
        self.map_plot.setLabel("left", "y", "mm")
        self.map_image = pg.ImageItem(np.ones((n, n), np.float32))
        cmap = pg.colormap.get("CET-D1")
        self.map_image.setColorMap(cmap)
        x0, x1, y0, y1 = self._area()
        self.map_image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        self.map_plot.addItem(self.map_image)
        self.map_bar = colour_bar(self.map_image, self.map_plot, cmap, "relative gain")
        self.map_bar.setLevels((0.8, 1.2))
        self.map_labels: list[pg.TextItem] = []
        self._cells(n, n, (x0, x1, y0, y1))
        return box

    def _cells(self, nx: int, ny: int, area: tuple[float, float, float, float]) -> None:
        """One text per map region ([ix, iy] order); made again only when the DAQ's map has
        another shape than the one shown (its [calibration] map_n)."""
        for t in self.map_labels:
            self.map_plot.removeItem(t)
        self.map_labels = []
        self.map_shape = (nx, ny)
        x0, x1, y0, y1 = area
        font = QFont()
        font.setPointSize(8)
        for ix in range(nx):
            for iy in range(ny):
                t = pg.TextItem("-", anchor=(0.5, 0.5), color="k")
                t.setFont(font)
                t.setPos(x0 + (ix + 0.5) * (x1 - x0) / nx, y0 + (iy + 0.5) * (y1 - y0) / ny)
                self.map_plot.addItem(t)
                self.map_labels.append(t)

    def _build_trends(self) -> pg.GraphicsLayoutWidget:
        right = pg.GraphicsLayoutWidget()
        rules = {r.metric: r for r in getattr(self.host.model.alarms, "rules", [])}
        self.trend_items: dict[str, pg.PlotDataItem] = {}
        self.boundaries: dict[str, list[pg.InfiniteLine]] = {}
        plots = []
        for row, (name, label) in enumerate(TRENDS):
            p = right.addPlot(row=row, col=0, axisItems={"bottom": pg.DateAxisItem()})
            p.setLabel("left", label)
            p.showGrid(y=True, alpha=0.3)
            if plots:
                p.setXLink(plots[0])
            self._bands(p, rules.get(name))
            lines = []
            for _ in range(MAX_BOUNDARIES):
                line = pg.InfiniteLine(angle=90, pen=RUN_PEN, movable=False,
                                       label="" if plots else "run", labelOpts={
                                           "position": 0.95, "color": "#9e9e9e"})  # fmt: skip
                line.hide()
                p.addItem(line)
                lines.append(line)
            self.boundaries[name] = lines
            self.trend_items[name] = p.plot([], [], pen="#ffa000", symbol="s", symbolSize=6,
                                            symbolBrush="#ffa000", connect="finite")  # fmt: skip
            plots.append(p)
        align_left_axis(*plots)
        return right

    @staticmethod
    def _bands(plot: pg.PlotItem, rule) -> None:
        """The allowed range of the rule that watches this trend, its warning and alarm limits."""
        if rule is None:
            return
        lo, hi = rule.min, rule.max
        if lo is not None or hi is not None:
            band = pg.LinearRegionItem(
                (lo if lo is not None else -1e9, hi if hi is not None else 1e9),
                orientation="horizontal", movable=False, brush=BAND_BRUSH, pen=pg.mkPen(None),
            )  # fmt: skip
            band.setZValue(-10)
            plot.addItem(band, ignoreBounds=True)
        for value, pen in ((lo, WARN_PEN), (hi, WARN_PEN), (rule.alarm_min, ALARM_PEN),
                           (rule.alarm_max, ALARM_PEN)):  # fmt: skip
            if value is not None:
                plot.addItem(pg.InfiniteLine(value, angle=0, pen=pen, movable=False))

    def _area(self) -> tuple[float, float, float, float]:
        hm = self.host.model.hist
        return (float(hm.x_edges[0]), float(hm.x_edges[-1]),
                float(hm.y_edges[0]), float(hm.y_edges[-1]))  # fmt: skip

    # ---- actions ------------------------------------------------------------------------------

    def send_reference(self) -> bool:
        """Tell the DAQ the gain (ADC per keV) of its newest good fit as the new reference."""
        gain = self.host.model.calib.last_gain()
        if gain is None or not gain > 0:
            return False
        return self.host.control("reference", gain_adc=float(gain))

    # ---- drawing ------------------------------------------------------------------------------

    def energy_scale(self) -> float | None:
        """keV per ADC of the spectra (the DAQ's: 1 / reference gain), None: show ADC."""
        cs = self.host.model.calib
        live = cs.live
        if live is not None and live.kev_per_adc is not None:
            return live.kev_per_adc
        return 1.0 / cs.reference_gain if cs.reference_gain else None

    def redraw(self) -> None:
        model = self.host.model
        cs = model.calib
        live = cs.live
        scale = self.energy_scale()
        if scale != self._scale:
            self._scale = scale
            # keV at the reference gain: a drift moves the peaks off 5.9 keV by the gain ratio
            unit = (("energy (X + Y) at the reference gain", "keV") if scale
                    else ("energy (X + Y)", "ADC"))  # fmt: skip
            self.spec_plot.setLabel("bottom", *unit)
            self.run_plot.setLabel("bottom", *unit)
            # a fixed energy range (the plots are linked: neither may follow its own data)
            self.spec_plot.setXRange(0.0, KEV_SHOWN if scale else ADC_SHOWN, padding=0.0)
        k = scale or 1.0
        merged = 1  # DAQ bins per drawn bin
        if live is not None:
            merged = max(1, -(-len(live.spectrum) // SHOWN_BINS))
            self.spec_curve.setData(*coarse(live.edges * k, live.spectrum))
        else:
            self.spec_curve.setData([0.0, 1.0], [0.0])
        if live is not None and live.ok and len(live.curve_x) > 1:
            cx = 0.5 * (live.curve_x[1:] + live.curve_x[:-1])
            self.fit_curve.setData(cx * k, live.curve_y * merged)  # counts per drawn bin
            self.peak_line.setPos(live.peak_adc * k)
            self.esc_line.setPos(live.escape_adc * k)
            self.peak_line.show()
            self.esc_line.show()
        else:
            self.fit_curve.setData([], [])
            self.peak_line.hide()
            self.esc_line.hide()
        hm = model.hist
        if len(hm.spectrum):
            self.run_curve.setData(hm.spectrum_edges * k, hm.spectrum)
        else:
            self.run_curve.setData([0.0, 1.0], [0.0])
        self._draw_map()
        self._draw_trends()
        n, minutes = cs.slice_xrays, cs.slice_minutes
        slicing = f"DAQ trend point every {n} X-rays" if n else "no DAQ calibration feed yet"
        if n and minutes is not None and math.isfinite(minutes):
            slicing += f" or {minutes:g} min"
        if live is not None:
            slicing += f"; live window: last {live.window_xrays} X-rays"
            if live.window_minutes:
                slicing += f" within {live.window_minutes:g} min"
        self.slicing.setText(slicing)
        self.gain_label.setText(self.gain_text())
        self.info.setText(self.fit_text())

    def _draw_trends(self) -> None:
        cs = self.host.model.calib
        starts = [t for t, _ in self.host.model.runs.starts][-MAX_BOUNDARIES:]
        runs = [rn for _, rn in self.host.model.runs.starts][-MAX_BOUNDARIES:]
        labels = boundary_labels(starts, runs, cs.trend.t)
        for name, _ in TRENDS:
            item = self.trend_items[name]
            y = cs.trend.column(name)
            ok = np.isfinite(y)
            symbols = int(np.count_nonzero(ok)) <= MAX_SYMBOLS  # symbols cost per point
            if symbols != self._symbols.get(name):
                self._symbols[name] = symbols
                item.setSymbol("s" if symbols else None)
            t, v = with_gaps(cs.trend.t[ok], y[ok].astype(np.float64), starts)
            item.setData(t, v, connect="finite")
            for k, line in enumerate(self.boundaries[name]):
                if k < len(starts):
                    line.setPos(starts[k])
                    if line.label is not None:
                        line.label.setFormat(labels[k])
                    line.show()
                else:
                    line.hide()

    def _draw_map(self) -> None:
        gm = self.host.model.calib.gain_map
        if gm is None:
            self.map_image.setImage(np.ones(self.map_shape, np.float32), autoLevels=False)
            texts = ["-"] * len(self.map_labels)
        else:
            shown = np.nan_to_num(gm.rel_gain, nan=1.0).astype(np.float32)
            self.map_image.setImage(shown, autoLevels=False)
            x0, x1, y0, y1 = gm.area_mm
            self.map_image.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
            nx, ny = gm.rel_gain.shape
            if (nx, ny) != self.map_shape:
                self._cells(nx, ny, gm.area_mm)
            texts = [gm.cell_text(ix, iy) for ix in range(nx) for iy in range(ny)]
        self.map_image.setLevels((0.8, 1.2))
        for label, text in zip(self.map_labels, texts):
            if label.textItem.toPlainText() != text:
                label.setText(text)
        self.map_info.setText(
            gm.summary()
            if gm is not None
            else "gain map: none from the DAQ yet (calibration runs only)"
        )

    def gain_text(self) -> str:
        gain_rel, _, _, what = self.host.model.calib.gain_now()
        if gain_rel is None:
            return "gain: no good fit yet"
        return f"gain {gain_rel:.3f} of the reference ({what}; the gain alarm watches it)"

    def fit_text(self) -> str:
        cs = self.host.model.calib
        live = cs.live
        ref_text = cs.reference_text()
        if live is None:
            return f"no live fit from the DAQ yet (calibration runs only); {ref_text}"
        head = f"live window: {live.counts} X-rays; "
        if not live.ok:
            return head + f"{_why(live.reason)}; {ref_text}"
        thr = f"{live.threshold_kev:.2f} keV" if math.isfinite(live.threshold_kev) else "-"
        return (
            head + f"5.9 keV peak {live.peak_adc:.1f} +- {live.peak_adc_err:.1f} ADC, "
            f"FWHM/E {100 * live.resolution:.1f} %, {live.n_peak:.0f} counts in the peak; "
            f"escape peak {live.escape_adc:.0f} ADC ({live.n_escape:.0f} counts); threshold "
            f"{thr}; chi2/ndf {live.chi2_ndf:.2f}; {ref_text}"
        )

    def summary(self) -> list[str]:
        return ["55Fe: " + self.gain_text(), "55Fe: " + self.fit_text()]


def boundary_labels(starts: list[float], runs: list[int], t: np.ndarray) -> list[str]:
    """``run N`` at each run boundary, left out where the next run starts too soon after it to
    be read beside it (short pedestal runs just before a calibration run) and where it lies well
    before every trend point (at the plot's edge, clipped)."""
    times = [*starts, *(float(x) for x in t[-1:])]
    span = max(times) - min(times) if times else 0.0
    room = LABEL_ROOM * span
    first = float(t[0]) if len(t) else -math.inf
    out = []
    for k, (t0, rn) in enumerate(zip(starts, runs)):
        crowded = k + 1 < len(starts) and starts[k + 1] - t0 <= room
        out.append("" if crowded or t0 < first - room else f"run {rn}")
    return out


def coarse(edges: np.ndarray, counts: np.ndarray, most: int = SHOWN_BINS):
    """At most ``most`` bins for the eye: neighbouring bins added up (the fit is the DAQ's)."""
    k = -(-len(counts) // most)
    if k <= 1:
        return edges, counts
    n = len(counts) // k * k
    return edges[: n + 1 : k], counts[:n].reshape(-1, k).sum(axis=1)


def _why(reason: str) -> str:
    return reason if reason.startswith("waiting") else f"fit failed: {reason}"
