"""Status banner, always visible and of fixed width (long texts are elided, whole in the tooltip):
the DAQ's state, run, elapsed time, events, trigger rate, alarms; the connection, the run file,
the pedestal table in use (or a NO PEDESTAL TABLE warning), data lost apart from events not
processed online, free disk; the DAQ's own message and how the last run ended (or that a run was
killed). Coloured by the worst alarm (latched alarms keep their colour until acknowledged); grey
while no data has arrived. Values older than the stale limit are greyed and say their age."""

from __future__ import annotations

import os
import time

from PyQt6.QtWidgets import QFrame, QGridLayout, QWidget

from agetdaq.gui import formatting as fmt
from agetdaq.gui.alarms import severity_rank
from agetdaq.gui.views.base import View
from agetdaq.gui.widgets import ElidedLabel

COLOURS = {  # (background, text, stale text)
    "ok": ("#2e7d32", "white", "#a5c8a7"),
    "warning": ("#f9a825", "black", "#6d5a2a"),
    "alarm": ("#c62828", "white", "#e0a0a0"),
    "nodata": ("#616161", "white", "#b0b0b0"),
}
# (name, row, column, column span, point size increase, bold, from the DAQ's status)
LAYOUT = (
    ("state", 0, 0, 2, 4, True, True),
    ("elapsed", 0, 2, 1, 2, False, True),
    ("events", 0, 3, 1, 2, False, True),
    ("rate", 0, 4, 1, 2, False, True),
    ("alarms", 0, 5, 3, 3, True, False),
    ("connection", 1, 0, 2, 1, False, False),
    ("file", 1, 2, 2, 1, False, True),
    ("losses", 1, 4, 3, 1, False, True),
    ("disk", 1, 7, 1, 1, False, True),
    ("message", 2, 0, 3, 1, False, True),
    ("pedestals", 2, 3, 2, 1, True, True),
    ("last_run", 2, 5, 3, 1, False, True),
)
FIELDS = tuple(f[0] for f in LAYOUT)
COLUMNS = 8


class BannerView(View):
    title = "Status"
    parts = ("status", "alarms", "link", "runs")
    refresh_s = 0.5  # the data age moves on by itself

    def build(self) -> QWidget:
        frame = QFrame()
        frame.setObjectName("banner")
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(frame)
        grid.setContentsMargins(8, 3, 8, 3)
        grid.setVerticalSpacing(1)
        for c in range(COLUMNS):
            grid.setColumnStretch(c, 1)
        self.labels: dict[str, ElidedLabel] = {}
        self._from_status: set[str] = set()
        for name, row, col, span, bigger, bold, daq in LAYOUT:
            label = ElidedLabel("-")
            font = label.font()
            font.setPointSize(font.pointSize() + bigger)
            font.setBold(bold)
            label.setFont(font)
            grid.addWidget(label, row, col, 1, span)
            self.labels[name] = label
            if daq:
                self._from_status.add(name)
        self.colour = ""
        self.stale = False
        self._shown_stale = False
        return frame

    def severity_key(self) -> str:
        m = self.host.model
        worst = m.alarms.worst()
        if worst is not None:
            return worst
        if m.link.state in ("connecting", "error") or not m.status:
            return "nodata"
        if m.link.state in ("stale", "disconnected") or self.stale:
            return "warning"
        return "ok"

    def status_age(self, now: float | None = None) -> float | None:
        rx = self.host.model.status_rx
        return None if rx is None else (time.monotonic() if now is None else now) - rx

    def redraw(self) -> None:
        m = self.host.model
        age = self.status_age()
        finished = m.link.state in ("finished", "replay")
        self.stale = age is not None and age > self.host.config.stale_after_s and not finished
        texts = banner_texts(m, age if self.stale else None)
        for name, text in texts.items():
            self.labels[name].setText(text)
        key = self.severity_key()
        if (key, self.stale) != (self.colour, self._shown_stale):
            self._style(key)

    def _style(self, key: str) -> None:
        """Stylesheets cost: only when the colour or the staleness changes."""
        bg, fg, stale = COLOURS[key]
        self.widget.setStyleSheet(
            f"QFrame#banner {{ background: {bg}; }} QFrame#banner QLabel {{ color: {fg}; }}"
            f' QFrame#banner QLabel[stale="true"] {{ color: {stale}; font-style: italic; }}'
        )
        for name, label in self.labels.items():
            label.setProperty("stale", self.stale and name in self._from_status)
            label.style().unpolish(label)
            label.style().polish(label)
        self.colour, self._shown_stale = key, self.stale

    def text(self) -> str:
        """Everything the banner shows, one line (for tests and the snapshot)."""
        return " | ".join(self.labels[n].text() for n in FIELDS)


def banner_texts(m, stale_age: float | None = None) -> dict[str, str]:
    """The banner's fields of a StreamModel; ``stale_age``: the status is that old (seconds)."""
    s = m.status
    state = str(s.get("state", "no status yet")).upper()
    if s.get("replay"):
        state = f"REPLAY {state}"
    running = s.get("state") in ("running", "stopping")
    run = f"run {s.get('run_number', '-')} {s.get('run_type') or ''}".rstrip()
    last = s.get("last_run") if isinstance(s.get("last_run"), dict) else {}
    if running or s.get("replay"):
        head = f"{state}  {run}"
        elapsed = f"elapsed {fmt.duration(s.get('elapsed_s'))}"
    elif last:
        head = f"{state}  (last: run {last.get('run_number', '-')} {last.get('run_type', '')})"
        elapsed = f"last run {fmt.duration(last.get('elapsed_s'))}"
    else:
        head, elapsed = state, "elapsed -"
    if stale_age is not None:
        head += f"  [{fmt.age(stale_age)} old]"
    file = s.get("file") or ""
    file_text = (f"file {os.path.basename(file)} ({fmt.number(s.get('file_mb'), '.1f', 'MB')})"
                 if file else "no run file open")  # fmt: skip
    table = s.get("pedestal_table")
    if table is None:
        peds = "pedestals: not reported"
    elif table:
        peds = f"pedestals: {table}"
    else:
        peds = "NO PEDESTAL TABLE (no pedestal subtraction)"
    return {
        "state": head,
        "elapsed": elapsed,
        "events": f"{fmt.count(s.get('events'))} events",
        "rate": f"trigger {fmt.number(s.get('trigger_rate'), '.3g', 'Hz')}",
        "alarms": alarm_text(m.alarms.active),
        "connection": f"{m.name}: {fmt.connection(m.link)}",
        "file": file_text,
        "pedestals": peds,
        "losses": fmt.loss_text(s, m.link.gaps),
        "disk": f"disk {fmt.number(s.get('disk_free_gb'), '.1f', 'GB')} free",
        "message": f"DAQ: {s.get('message') or '-'}",
        "last_run": last_run_text(s),
    }


def last_run_text(s: dict) -> str:
    killed = s.get("killed_run")
    if isinstance(killed, dict) and killed:
        return (f"RUN {killed.get('run_number')} KILLED: the DAQ stopped during it "
                f"({os.path.basename(str(killed.get('file', '')))})")  # fmt: skip
    last = s.get("last_run")
    if isinstance(last, dict) and last:
        return (f"last run {last.get('run_number')}: {fmt.count(last.get('events'))} events, "
                f"stopped: {last.get('stop_reason') or '-'}")  # fmt: skip
    return "no run ended yet"


def alarm_text(active: list) -> str:
    if not active:
        return "no alarms"
    worst = max(active, key=lambda a: severity_rank(a.severity))
    unacked = sum(not a.acknowledged for a in active)
    head = f"{len(active)} {worst.severity.upper()}{'S' if len(active) > 1 else ''}"
    ack = f" ({unacked} unacknowledged)" if unacked else " (acknowledged)"
    return f"{head}{ack}: {worst.text}"
