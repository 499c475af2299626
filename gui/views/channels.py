"""Channels: pedestal mean, noise sigma and threshold of every read channel (240 strips, then the
FPN / unconnected channels) with dead / noisy / masked flags, and a mask editor that sends
``{"cmd": "mask", "strips": [...], "masked": bool}`` to the DAQ."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.accumulators import PedestalInfo
from agetdaq.gui.strips import StripSpecError, format_strips, parse_strips
from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import StripAxis, align_left_axis, strip_names

QUANTITIES = (("mean", "pedestal mean (ADC)"), ("sigma", "noise sigma (ADC)"),
              ("threshold", "threshold (ADC)"))  # fmt: skip
GROUPS = (  # (name, flag bit, symbol colour); every channel is on the "all" step curve
    ("dead", PedestalInfo.DEAD, "#ff3030"),
    ("noisy", PedestalInfo.NOISY, "#ffa000"),
    ("masked", PedestalInfo.MASKED, "#909090"),
)
DASH = Qt.PenStyle.DashLine
COLUMNS = ("channel", "card", "chip", "chan", "mean", "sigma", "threshold", "flags")


def _worst_flag(flags: int) -> str:
    """The group a flagged channel is drawn in: dead, else noisy, else masked."""
    return next(name for name, bit, _ in GROUPS if flags & bit)


def flag_names(flags: int) -> str:
    names = [n for n, bit, _ in GROUPS if flags & bit]
    return ",".join(names) or "ok"


class ChannelsView(View):
    title = "Channels"
    parts = ("pedestal",)

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        self.info = QLabel("no pedestal table received yet")
        layout.addWidget(self.info)
        split = QSplitter()
        layout.addWidget(split, 1)
        glw = pg.GraphicsLayoutWidget()
        split.addWidget(glw)
        n = self.host.mapping.n_strips
        nx = self.host.mapping.n_x
        self.items: dict[str, dict[str, pg.PlotDataItem]] = {}
        names = strip_names(self.host.mapping)
        plots = []
        for row, (q, label) in enumerate(QUANTITIES):
            p = glw.addPlot(row=row, col=0, axisItems={"bottom": StripAxis(names)})
            p.setLabel("left", label)
            p.setLabel("bottom", f"strip (X0..X{nx - 1}, then Y), then the other channels")
            plots.append(p)
            if len(plots) > 1:
                p.setXLink(plots[0])
            p.showGrid(y=True, alpha=0.3)
            for x in (nx - 0.5, n - 0.5):
                p.addItem(pg.InfiniteLine(x, angle=90, pen=pg.mkPen("#888", style=DASH)))
            self.items[q] = {
                "all": p.plot([0, 1], [0], stepMode="center", pen="#5090ff"),
                "flagged": p.plot([], [], pen=None, symbol="o", symbolSize=9, symbolPen=None),
            }
        align_left_axis(*plots)
        self.brushes = {name: pg.mkBrush(colour) for name, _, colour in GROUPS}
        legend = ", ".join(f'<span style="color:{c}">&#9679; {n}</span>' for n, _, c in GROUPS)
        layout.addWidget(QLabel(legend))
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(QLabel("Flagged channels (click to add to the mask editor)"))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.cellClicked.connect(self._pick)
        rl.addWidget(self.table, 1)
        rl.addWidget(QLabel("Mask editor: strips (e.g. X17, Y3-Y5)"))
        self.mask_edit = QLineEdit()
        rl.addWidget(self.mask_edit)
        buttons = QHBoxLayout()
        self.mask_button = QPushButton("Mask")
        self.unmask_button = QPushButton("Unmask")
        self.mask_button.clicked.connect(lambda: self.send_mask(True))
        self.unmask_button.clicked.connect(lambda: self.send_mask(False))
        buttons.addWidget(self.mask_button)
        buttons.addWidget(self.unmask_button)
        rl.addLayout(buttons)
        self.mask_reply = QLabel("")
        self.mask_reply.setWordWrap(True)
        rl.addWidget(self.mask_reply)
        split.addWidget(right)
        split.setSizes([700, 350])
        return w

    # ---- mask editor --------------------------------------------------------------------------

    def _pick(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is None or item.text()[:1] not in ("X", "Y"):
            return
        current = self.mask_edit.text().strip()
        self.mask_edit.setText(f"{current}, {item.text()}" if current else item.text())

    def send_mask(self, masked: bool) -> bool:
        """Parse the editor and send the mask request; False when nothing was sent."""
        try:
            strips = parse_strips(self.mask_edit.text(), self.host.mapping)
        except StripSpecError as exc:
            self.mask_reply.setText(f"not sent: {exc}")
            return False
        if not strips:
            self.mask_reply.setText("not sent: no strips given")
            return False
        if not self.host.control("mask", strips=strips, masked=masked):
            self.mask_reply.setText("not sent: no control connection")
            return False
        names = format_strips(strips, self.host.mapping)
        self.mask_reply.setText(f"{'mask' if masked else 'unmask'} {names}: sent, waiting ...")
        return True

    def on_control_reply(self, cmd: str, reply: dict) -> None:
        if cmd == "mask":
            ok = reply.get("ok")
            self.mask_reply.setText("DAQ: done" if ok else f"DAQ refused: {reply.get('error')}")

    # ---- drawing ------------------------------------------------------------------------------

    def redraw(self) -> None:
        ped = self.host.model.pedestal
        if not ped.present:
            for group in self.items.values():
                group["all"].setData([0, 1], [0])
                group["flagged"].setData([], [])
            self.table.setRowCount(0)
            self.info.setText("no pedestal table received yet")
            return
        t = ped.table
        x = ped.x_index().astype(np.float64)
        flags = t["flags"].astype(np.int64)
        flagged = np.flatnonzero(flags & 7)
        brushes = [self.brushes[_worst_flag(int(f))] for f in flags[flagged]]
        order = np.argsort(x, kind="stable")
        edges = np.append(x[order] - 0.5, x[order][-1] + 0.5)
        for q, _ in QUANTITIES:
            y = t[q].astype(np.float64)
            self.items[q]["all"].setData(edges, y[order])
            self.items[q]["flagged"].setData(x[flagged], y[flagged], symbolBrush=brushes)
        self.table.setRowCount(len(flagged))
        for r, i in enumerate(flagged):
            s = int(t["strip"][i])
            name = self.host.mapping.name(s) if 0 <= s < ped.n_strips else "other"
            values = (
                name,
                str(int(t["card"][i])) if "card" in t else "-",
                str(int(t["chip"][i])) if "chip" in t else "-",
                str(int(t["channel"][i])) if "channel" in t else "-",
                f"{float(t['mean'][i]):.1f}",
                f"{float(t['sigma'][i]):.2f}",
                f"{float(t['threshold'][i]):.1f}",
                flag_names(int(flags[i])),
            )
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))
        counts = {name: int(np.count_nonzero(flags & bit)) for name, bit, _ in GROUPS}
        self.info.setText(
            f"pedestal table of run {ped.run_number}: {len(flags)} channels, "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + (f"; threshold = {ped.k_sigma:g} sigma" if ped.k_sigma else "")
        )

    def summary(self) -> list[str]:
        ped = self.host.model.pedestal
        if not ped.present:
            return ["channels: no pedestal table"]
        dead = format_strips(list(ped.strips_with(PedestalInfo.DEAD)), self.host.mapping)
        noisy = format_strips(list(ped.strips_with(PedestalInfo.NOISY)), self.host.mapping)
        return [f"dead strips: {dead or 'none'}", f"noisy strips: {noisy or 'none'}"]
