"""Alarms: the active alarms with acknowledge, the (bounded) history, the rules in force, and the
mute switch of the audible cue."""

from __future__ import annotations

import time

from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.views.base import View

COLUMNS = ("rule", "severity", "since", "value", "now", "acknowledged", "message")
ROW_COLOURS = {"alarm": "#ffb0b0", "warning": "#ffe6a0"}
HISTORY_SHOWN = 300


def wall_clock(t_monotonic: float) -> str:
    return time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(time.time() - (time.monotonic() - t_monotonic))
    )


class AlarmsView(View):
    title = "Alarms"
    parts = ("alarms",)
    refresh_s = 2.0

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        bar = QHBoxLayout()
        self.ack_button = QPushButton("Acknowledge selected")
        self.ack_all_button = QPushButton("Acknowledge all")
        self.mute_box = QCheckBox("mute sound")
        self.ack_button.clicked.connect(self.acknowledge_selected)
        self.ack_all_button.clicked.connect(lambda: self.acknowledge(None))
        self.mute_box.toggled.connect(self._mute)
        for widget in (self.ack_button, self.ack_all_button, self.mute_box):
            bar.addWidget(widget)
        bar.addStretch(1)
        layout.addLayout(bar)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(QLabel("Active alarms"))
        layout.addWidget(self.table, 2)
        layout.addWidget(QLabel("History (newest last)"))
        self.history = QPlainTextEdit()
        self.history.setReadOnly(True)
        layout.addWidget(self.history, 2)
        self.rules = QLabel("")
        self.rules.setWordWrap(True)
        layout.addWidget(self.rules)
        self._history_key: tuple = ()
        return w

    def _mute(self, on: bool) -> None:
        self.host.muted = on

    def acknowledge(self, name: str | None) -> int:
        n = self.host.model.alarms.acknowledge(name, time.monotonic())
        if n:
            self.host.model.touch("alarms")
            self.host.schedule_redraw()
        return n

    def acknowledge_selected(self) -> int:
        rows = {i.row() for i in self.table.selectedIndexes()}
        n = 0
        for r in rows:
            item = self.table.item(r, 0)
            if item is not None:
                n += self.acknowledge(item.text())
        return n

    def redraw(self) -> None:
        engine = self.host.model.alarms
        active = engine.active
        self.table.setRowCount(len(active))
        for r, a in enumerate(active):
            value = "-" if a.value is None else f"{a.value:.4g}"
            now = "holds" if a.holding else f"gone since {wall_clock(a.cleared_at or 0.0)[11:]}"
            cells = (a.rule.name, a.severity, wall_clock(a.fired_at or a.since), value, now,
                     "yes" if a.acknowledged else "NO", a.text)  # fmt: skip
            colour = QColor("#e0e0e0" if a.acknowledged else ROW_COLOURS[a.severity])
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setBackground(colour)
                self.table.setItem(r, c, item)
        if active:
            self.table.resizeColumnsToContents()
        hist = engine.history
        key = (len(hist), hist[-1] if hist else None)
        if key != self._history_key:
            self._history_key = key
            lines = [
                f"{wall_clock(e.time)}  {e.kind:12s} {e.severity:8s} {e.rule}: {e.text}"
                for e in list(hist)[-HISTORY_SHOWN:]
            ]
            self.history.setPlainText("\n".join(lines))
            self.history.verticalScrollBar().setValue(self.history.verticalScrollBar().maximum())
        self.rules.setText(
            "Rules: "
            + "; ".join(
                f"{r.name} ({r.severity}: {r.metric} in [{_b(r.min)}, {_b(r.max)}]"
                + (
                    f", alarm outside [{_b(r.alarm_min)}, {_b(r.alarm_max)}]"
                    if r.alarm_min is not None or r.alarm_max is not None
                    else ""
                )
                + f"{f' for {r.delay_s:g} s' if r.delay_s else ''})"
                for r in engine.rules
            )
        )

    def summary(self) -> list[str]:
        active = self.host.model.alarms.active
        if not active:
            return ["alarms: none active"]
        return [
            f"alarm: {a.severity} {a.rule.name}: {a.text}"
            + (" (acknowledged)" if a.acknowledged else "")
            for a in active
        ]


def _b(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"
