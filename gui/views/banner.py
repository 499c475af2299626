"""Status banner, always visible: connection, run, rates, losses, disk, alarms; coloured by the
worst active alarm (grey while no data has arrived)."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QWidget

from agetdaq.gui import formatting as fmt
from agetdaq.gui.alarms import severity_rank
from agetdaq.gui.views.base import View

COLOURS = {  # (background, text)
    "ok": ("#2e7d32", "white"),
    "warning": ("#f9a825", "black"),
    "alarm": ("#c62828", "white"),
    "nodata": ("#616161", "white"),
}
FIELDS = ("connection", "run", "elapsed", "events", "rate", "mbps", "losses", "disk", "alarms")


class BannerView(View):
    title = "Status"
    parts = ("status", "alarms", "link")
    refresh_s = 0.5  # the data age moves on by itself

    def build(self) -> QWidget:
        frame = QFrame()
        frame.setObjectName("banner")
        frame.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(frame)
        grid.setContentsMargins(8, 4, 8, 4)
        self.labels: dict[str, QLabel] = {}
        for i, name in enumerate(FIELDS):
            label = QLabel("-")
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            font = label.font()
            font.setPointSize(font.pointSize() + (3 if name in ("run", "alarms") else 1))
            font.setBold(name in ("connection", "run", "alarms"))
            label.setFont(font)
            row, col = (0, i) if i < 5 else (1, i - 5)
            grid.addWidget(label, row, col)
            self.labels[name] = label
        self.colour = ""
        return frame

    def severity_key(self) -> str:
        m = self.host.model
        worst = m.alarms.worst()
        if worst is not None:
            return worst
        if m.link.state in ("connecting", "error") or not m.status:
            return "nodata"
        if m.link.state in ("stale", "disconnected"):
            return "warning"
        return "ok"

    def redraw(self) -> None:
        m = self.host.model
        s = m.status
        state = str(s.get("state", "unknown")).upper()
        if s.get("replay"):
            state = f"REPLAY {state}"
        run_type = s.get("run_type") or ""
        active = m.alarms.active
        texts = {
            "connection": f"{m.name}: {fmt.connection(m.link)}",
            "run": f"{state}  run {s.get('run_number', '-')} {run_type}".rstrip(),
            "elapsed": f"elapsed {fmt.duration(s.get('elapsed_s'))}",
            "events": f"events {fmt.count(s.get('events'))}",
            "rate": f"trigger {fmt.number(s.get('trigger_rate'), '.3g', 'Hz')}",
            "mbps": f"{fmt.number(s.get('mb_per_s'), '.3g', 'MB/s')}",
            "losses": f"losses {fmt.losses(s.get('losses'))}  gaps {m.link.gaps}",
            "disk": f"disk {fmt.number(s.get('disk_free_gb'), '.1f', 'GB')} free",
            "alarms": _alarm_text(active),
        }
        for name, text in texts.items():
            if self.labels[name].text() != text:
                self.labels[name].setText(text)
        key = self.severity_key()
        if key != self.colour:  # stylesheets are costly: only on change
            bg, fg = COLOURS[key]
            self.widget.setStyleSheet(
                f"QFrame#banner {{ background: {bg}; }} QFrame#banner QLabel {{ color: {fg}; }}"
            )
            self.colour = key

    def text(self) -> str:
        """Everything the banner shows, one line (for tests and the snapshot)."""
        return " | ".join(self.labels[n].text() for n in FIELDS)


def _alarm_text(active: list) -> str:
    if not active:
        return "no alarms"
    worst = max(active, key=lambda a: severity_rank(a.rule.severity))
    unacked = sum(not a.acknowledged for a in active)
    head = f"{len(active)} {worst.rule.severity.upper()}{'S' if len(active) > 1 else ''}"
    ack = f" ({unacked} unacknowledged)" if unacked else " (acknowledged)"
    return f"{head}{ack}: {worst.text}"
