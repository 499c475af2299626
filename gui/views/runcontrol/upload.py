"""The pedestal upload as run control shows it: its phase while it runs (nothing else may be
started meanwhile) and, once, each outcome (logged; in red when it failed), from the DAQ's status
``pedestal_upload``."""

from __future__ import annotations

from collections.abc import Mapping

from PyQt6.QtWidgets import QLabel

from agetdaq.gui.runs import OPEN_STATES
from agetdaq.gui.views.runcontrol.replies import ERROR_COLOUR, ReplyLog


class UploadStatus:
    """The upload's line under the form and the outcome last logged."""

    def __init__(self, replies: ReplyLog) -> None:
        self.replies = replies
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.shown: tuple | None = None  # (outcome, run, message) last logged

    def draw(self, status: Mapping) -> bool:
        """Show the upload's phase or outcome; True while it runs."""
        up = status.get("pedestal_upload")
        if not isinstance(up, dict):
            self.label.setText("")
            return False
        phase = up.get("phase", "idle")
        if phase != "idle":
            run = f" (run {status.get('run_number')})" if status.get("state") in OPEN_STATES else ""
            self.label.setStyleSheet("font-weight: bold;")
            self.label.setText(f"pedestal upload in progress: {phase}{run}")
            return True
        if up.get("outcome") is None:
            self.label.setText("")
            return False
        key = (up.get("outcome"), up.get("run"), up.get("message"))
        if key != self.shown:
            self.shown = key
            ok = bool(up.get("ok"))
            message = str(up.get("message", ""))
            self.replies.add(message if ok else f"pedestal upload FAILED: {message}", error=not ok)
            if ok:
                self.label.setStyleSheet("")
                self.label.setText(upload_text(up))
            else:
                self.label.setStyleSheet(f"color: {ERROR_COLOUR}; font-weight: bold;")
                self.label.setText(f"pedestal upload failed: {message}")
        return False


def upload_text(up: Mapping) -> str:
    """A pedestal upload that left its table in force, for the crew."""
    check = up.get("upload_check") or {}
    return (f"pedestal table in force: {up.get('in_force')} (pedestal run {up.get('run')} after "
            f"the upload; {check.get('strips_off', '?')} of {check.get('strips', '?')} strips "
            f"off by more than 3 ADC)")  # fmt: skip
