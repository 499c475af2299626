"""The runs as run control lists them: the end-of-run summary of the last run the monitor saw
end, and the DAQ's run list (its run log, newest first) with what became of each run."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Mapping

from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QGroupBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from agetdaq.gui import formatting as fmt
from agetdaq.gui.runs import OPEN_STATES, RunWatch
from agetdaq.gui.views.runcontrol.replies import ERROR_COLOUR, ReplyLog

# the comment last: it takes the width left (the file name stays in sight)
RUN_COLUMNS = ("run", "type", "started", "duration", "events", "end", "file", "comment")
END_COLUMN = RUN_COLUMNS.index("end")
COMMENT_COLUMN = RUN_COLUMNS.index("comment")
RUNS_SHOWN = 50


class RunList:
    """The last run's summary and the run table; what they last showed."""

    def __init__(self, replies: ReplyLog) -> None:
        self.replies = replies
        self.shown_ended = 0  # RunWatch.ended_count last summarised
        self.shown_key: tuple = ()  # what the table last showed
        self.widget = QWidget()
        col = QVBoxLayout(self.widget)
        box = QGroupBox("Last run")
        inner = QVBoxLayout(box)
        self.summary_label = QLabel("no run has ended while the monitor watched")
        self.summary_label.setWordWrap(True)
        inner.addWidget(self.summary_label)
        col.addWidget(box)
        col.addWidget(QLabel("Runs (the DAQ's run log, newest first)"))
        self.table = QTableWidget(0, len(RUN_COLUMNS))
        self.table.setHorizontalHeaderLabels(RUN_COLUMNS)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)  # the comment: the width left, elided (tooltip: all)
        self.table.verticalHeader().setVisible(False)
        col.addWidget(self.table, 1)

    def forget(self) -> None:
        """Another stream: the table is drawn again."""
        self.shown_key = ()

    def draw(self, watch: RunWatch, status: Mapping) -> None:
        self._draw_summary(watch)
        self._draw_table(watch, status)

    def _draw_summary(self, watch: RunWatch) -> None:
        if watch.ended_count == self.shown_ended or watch.ended is None:
            return
        self.shown_ended = watch.ended_count
        self.summary_label.setText(end_of_run_text(watch.ended))
        ended = watch.ended
        self.replies.add(f"run {ended.get('run_number')} ended: {ended.get('stop_reason')}")

    def _draw_table(self, watch: RunWatch, status: Mapping) -> None:
        runs = watch.listed[-RUNS_SHOWN:][::-1]
        current = status.get("run_number") if status.get("state") in OPEN_STATES else None
        ended, killed = _number(status.get("last_run")), _number(status.get("killed_run"))
        key = (len(watch.listed), tuple(sorted(runs[0].items())) if runs else (), current,
               ended, killed)  # fmt: skip
        if key == self.shown_key:
            return
        self.shown_key = key
        self.table.setRowCount(len(runs))
        for r, run in enumerate(runs):
            for c, text in enumerate(run_row(run, current, status.get("last_run"), killed)):
                item = QTableWidgetItem(text)
                if c == COMMENT_COLUMN:
                    item.setToolTip(text)
                if c == END_COLUMN and text.startswith("KILLED"):
                    item.setForeground(QColor(ERROR_COLOUR))
                self.table.setItem(r, c, item)
        for c in range(len(RUN_COLUMNS) - 1):  # the last one stretches: no scroll bar
            self.table.resizeColumnToContents(c)

    @staticmethod
    def summary(watch: RunWatch) -> list[str]:
        """The last run for the logbook."""
        if watch.ended is None:
            return []
        return ["last run: " + end_of_run_text(watch.ended).replace("<br>", "; ")]


def _number(run: object) -> int | None:
    """The run number of a status' ``last_run`` / ``killed_run`` entry (None: none)."""
    number = run.get("run_number") if isinstance(run, dict) else None
    return number if isinstance(number, int) else None


def run_row(
    run: dict, current: int | None = None, last: object = None, killed: int | None = None
) -> list[str]:
    """The run-list cells of a ``run`` entry (RUN_COLUMNS). From the DAQ's status: ``current``
    the run in progress, ``last`` the run that ended last (its entry), ``killed`` a run the DAQ
    died in. A run without an end in the list is running, killed, or just ended (the list
    lags)."""
    start = run.get("start_time")
    started = (time.strftime("%Y-%m-%d %H:%M", time.localtime(start))
               if isinstance(start, (int, float)) else "-")  # fmt: skip
    number = run.get("run_number")
    if run.get("end_time") is not None:
        end = run.get("stop_reason") or "ended"
    elif number == current:
        end = "running"
    elif number == killed:
        end = "KILLED (the DAQ stopped during it)"
    elif number is not None and number == _number(last):
        end = str(last.get("stop_reason") or "ended")  # type: ignore[union-attr]
    else:
        end = "ended"
    return [
        str(run.get("run_number", "-")), str(run.get("run_type", "")), started,
        fmt.duration(run.get("elapsed_s")), fmt.count(run.get("events")), end,
        os.path.basename(str(run.get("file", ""))), str(run.get("comment", "")),
    ]  # fmt: skip


def end_of_run_text(e: dict) -> str:
    """The end-of-run summary (HTML lines)."""
    counts = e.get("class_counts") or {}
    classes = ", ".join(f"{k} {fmt.count(v)}" for k, v in counts.items() if v)
    gain = e.get("gain_rel")
    lines = [
        f"<b>run {e.get('run_number')} ({e.get('run_type')})</b> ended: "
        f"{html.escape(str(e.get('stop_reason') or '-'))}",
        f"duration {fmt.duration(e.get('elapsed_s'))}, {fmt.count(e.get('events'))} events"
        + (f" ({classes})" if classes else ""),
        f"data lost {fmt.count(e.get('data_lost'))}, not processed online "
        f"{fmt.count(e.get('not_processed'))}",
        f"file {html.escape(str(e.get('file') or '-'))}",
        f"pedestal table: {html.escape(str(e.get('pedestal_table') or 'NONE'))}",
    ]
    if isinstance(gain, (int, float)):
        lines.append(f"last gain {gain:.3f} of the reference")
    if e.get("state") == "error":
        lines.append(f'<span style="color:{ERROR_COLOUR}"><b>DAQ in error: '
                     f"{html.escape(str(e.get('message', '')))}</b></span>")  # fmt: skip
    return "<br>".join(lines)
