"""Event display: the last (or a chosen) sampled event as strip-vs-time images for X and Y and
the waveforms of selected strips (default: the strongest hit strips); pause, older / newer.
Live events carry the DAQ's corrected waveforms; replayed ones the samples the run file recorded
(raw ADC), and events the DAQ did not process online say so."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from agetdaq.gui.model import EventRecord
from agetdaq.gui.strips import StripSpecError, parse_strips
from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import StripAxis, align_left_axis, colour_bar, outside_legend, strip_names
from agetdaq.readout.schema import CLASS_LABELS

N_CURVES = 8
CLASS_NAMES = CLASS_LABELS
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45")


class EventView(View):
    title = "Event"
    parts = ("event",)

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._paused)
        self.older_button = QPushButton("< Older")
        self.newer_button = QPushButton("Newer / next >")
        self.older_button.clicked.connect(lambda: self.step(-1))
        self.newer_button.clicked.connect(lambda: self.step(+1))
        self.strip_edit = QLineEdit()
        self.strip_edit.setPlaceholderText(
            "strips to plot, e.g. X17, Y3-Y5 (empty: strongest hits)"
        )
        self.strip_edit.editingFinished.connect(self._force)
        for widget in (self.pause_button, self.older_button, self.newer_button):
            bar.addWidget(widget)
        bar.addWidget(self.strip_edit, 1)
        layout.addLayout(bar)
        self.info = QLabel("no event yet")
        layout.addWidget(self.info)
        glw = pg.GraphicsLayoutWidget()
        layout.addWidget(glw, 1)
        self.images: dict[str, pg.ImageItem] = {}
        cmap = pg.colormap.get("inferno")
        mapping = self.host.mapping
        plots = []
        for col, axis in enumerate(("X", "Y")):
            strips = StripAxis(strip_names(mapping, axis))
            p = glw.addPlot(row=0, col=col, title=f"{axis} strips vs time",
                            axisItems={"bottom": strips})  # fmt: skip
            p.setLabel("bottom", f"{axis} strip")
            p.setLabel("left", "time bin")
            img = pg.ImageItem(np.zeros((1, 1), np.float32))
            img.setColorMap(cmap)
            p.addItem(img)
            self.images[axis] = img
            plots.append(p)
        # one colour scale for both images, its bar beside the Y image
        self.bar = colour_bar([self.images["X"], self.images["Y"]], plots[1], cmap, "ADC")
        self.wave_plot = glw.addPlot(row=1, col=0, colspan=2, title="waveforms")
        self.wave_plot.setLabel("bottom", "time bin")
        self.wave_plot.setLabel("left", "ADC above pedestal")
        align_left_axis(*plots, self.wave_plot)
        self.legend = outside_legend(glw.ci, 1, 2)
        self.curves = [
            self.wave_plot.plot([], [], pen=pg.mkPen(c, width=1.5), name=f"curve {i}")
            for i, c in enumerate(COLOURS[:N_CURVES])
        ]
        self.legend.clear()
        self._legend_names: tuple[str, ...] = ()
        self._y_label = ""
        self.shown: EventRecord | None = None
        self.selected: list[int] = []
        return w

    # ---- navigation ---------------------------------------------------------------------------

    def _paused(self, on: bool) -> None:
        self.pause_button.setText("Resume" if on else "Pause")
        self._force()

    def _force(self) -> None:
        self._drawn.clear()
        self.host.schedule_redraw()

    def step(self, delta: int) -> None:
        """Show an older (-1) or newer (+1) event of the recent ones; pauses the display."""
        events = list(self.host.model.events)
        if not events:
            return
        if not self.pause_button.isChecked():
            self.pause_button.setChecked(True)
        try:
            i = next(k for k, e in enumerate(events) if e is self.shown)
        except StopIteration:
            i = len(events) - 1
        self.shown = events[max(0, min(len(events) - 1, i + delta))]
        self._force()

    def model_changed(self) -> None:
        super().model_changed()
        self.shown = None

    # ---- drawing ------------------------------------------------------------------------------

    def choose_strips(self, ev: EventRecord) -> list[int]:
        text = self.strip_edit.text().strip()
        if text:
            try:
                return parse_strips(text, self.host.mapping)[:N_CURVES]
            except StripSpecError as exc:
                self.info.setText(str(exc))
        peak = ev.waveforms.max(axis=1)
        order = np.argsort(-np.where(ev.hits, peak, -np.inf), kind="stable")
        return [int(i) for i in order[: min(N_CURVES, int(ev.hits.sum()))]] or [int(order[0])]

    def redraw(self) -> None:
        events = self.host.model.events
        if not events:
            self.shown = None
            for img in self.images.values():
                img.setImage(np.zeros((1, 1), np.float32), levels=(0, 1), autoLevels=False)
            for c in self.curves:
                c.setData([], [])
            self.info.setText("no event yet")
            return
        if not self.pause_button.isChecked() or self.shown is None:
            self.shown = events[-1]
        ev = self.shown
        wf = ev.waveforms
        nx = self.host.mapping.n_x
        hi = max(20.0, float(wf.max()))
        lo = min(-10.0, float(wf.min()))
        self.images["X"].setImage(wf[:nx], autoLevels=False)
        self.images["Y"].setImage(wf[nx:], autoLevels=False)
        self.bar.setLevels((lo, hi))
        self.selected = self.choose_strips(ev)
        t = np.arange(wf.shape[1], dtype=np.float32)
        names = tuple(self.host.mapping.name(i) for i in self.selected)
        if names != self._legend_names:
            self.legend.clear()
            for c, name in zip(self.curves, names):
                self.legend.addItem(c, name)
            self._legend_names = names
        for k, c in enumerate(self.curves):
            if k < len(self.selected):
                c.setData(t, wf[self.selected[k]])
            else:
                c.setData([], [])
        h = ev.header
        recorded = h.get("samples") == "recorded"
        no_table = self.host.model.status.get("pedestal_table") == "" and not recorded
        y_label = "ADC above pedestal"
        if recorded:
            y_label = "ADC as recorded (pedestal not subtracted)"
        elif no_table:
            y_label = "ADC (NO PEDESTAL TABLE: not subtracted)"
        if y_label != self._y_label:
            self.wave_plot.setLabel("left", y_label)
            self._y_label = y_label
        if h.get("processed", True) is False:
            what = "NOT PROCESSED ONLINE (no features, no hits)"
        else:
            cls = h.get("class")
            cls_name = CLASS_NAMES.get(cls, "-") if isinstance(cls, int) else "-"
            what = (
                f"{cls_name}  E = {_num(h.get('energy_adc'))} ADC "
                f"(X {_num(h.get('energy_x'))}, Y {_num(h.get('energy_y'))})  "
                f"x = {_num(h.get('x_mm'), '.2f')} mm, y = {_num(h.get('y_mm'), '.2f')} mm  "
                f"{int(ev.hits.sum())} hit strips"
            )
        self.info.setText(
            f"run {h.get('run_number', '-')}  event {h.get('event_id', '-')}  {what}"
            + ("  [recorded samples]" if recorded else "")
            + ("  [NO PEDESTAL TABLE]" if no_table else "")
            + f"  received {time.monotonic() - ev.received:.1f} s ago"
            + ("  [PAUSED]" if self.pause_button.isChecked() else "")
        )


def _num(v: object, fmt: str = ".0f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"
