"""The run-control tab's reply log: what was asked of the DAQ and what it answered, errors in
red."""

from __future__ import annotations

import html
import time

from PyQt6.QtWidgets import QPlainTextEdit

ERROR_COLOUR = "#c62828"
MAX_LINES = 500


class ReplyLog:
    """Timestamped lines of requests, replies and run-control events (the newest last)."""

    def __init__(self) -> None:
        self.widget = QPlainTextEdit()
        self.widget.setReadOnly(True)
        self.widget.setMaximumBlockCount(MAX_LINES)

    def add(self, text: str, error: bool = False) -> None:
        line = html.escape(f"{time.strftime('%H:%M:%S')} {text}")
        self.widget.appendHtml(f'<span style="color:{ERROR_COLOUR}"><b>{line}</b></span>'
                               if error else line)  # fmt: skip

    def text(self) -> str:
        return self.widget.toPlainText()
