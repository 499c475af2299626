"""Debug: the developers' counters, out of the crew's way: redraw times, messages received per
topic, sequence gaps, damaged messages, DAQ restarts and reconnects, events the monitor did not
show because it lagged, the DAQ's stream drops, draws per view."""

from __future__ import annotations

from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import QPlainTextEdit, QVBoxLayout, QWidget

from agetdaq.gui.views.base import View


class DebugView(View):
    title = "Debug"
    parts = ("link", "status")
    refresh_s = 1.0

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFont("monospace"))
        layout.addWidget(self.text)
        return w

    def lines(self) -> list[str]:
        host = self.host
        m = host.model
        link = m.link
        times = list(getattr(host, "redraw_ms", []))
        redraw = (f"redraw {times[-1]:.1f} ms (max {max(times):.1f} ms of the last {len(times)})"
                  if times else "redraw: none yet")  # fmt: skip
        stream = m.status.get("losses", {}).get("stream", {}) if m.status else {}
        gaps = ", ".join(f"{t} {n}" for t, n in sorted(link.gaps_by_topic.items())) or "none"
        out = [
            f"source {m.name} [{link.address}], link state {link.state}",
            redraw,
            f"received {link.received} messages; sequence gaps {link.gaps} ({gaps})",
            f"malformed (dropped) {link.malformed}; DAQ restarts {link.restarts}; "
            f"reconnects {link.reconnects}",
            f"events not shown (the monitor lagged) {link.viewer_dropped}",
            f"DAQ stream: dropped for slow subscribers {stream.get('dropped', '-')}",
            f"summaries {m.summary_events} rows; events seen {m.events_seen}; "
            f"calib points {m.calib.points}; hist {m.hist.received}",
            f"model versions {m.version}",
        ]
        views = getattr(host, "views", [])
        out.append("draws: " + ", ".join(f"{v.title} {v.draw_count}" for v in views))
        return out

    def redraw(self) -> None:
        text = "\n".join(self.lines())
        if text != self.text.toPlainText():
            self.text.setPlainText(text)
