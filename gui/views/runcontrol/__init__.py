"""The run-control tab: :class:`RunControlView` and its collaborators (the form of the next run,
the run list, the pedestal upload's status, the reply log)."""

from __future__ import annotations

from agetdaq.gui.views.runcontrol.form import PRESETS, RunForm
from agetdaq.gui.views.runcontrol.replies import ReplyLog
from agetdaq.gui.views.runcontrol.runlist import RunList, end_of_run_text, run_row
from agetdaq.gui.views.runcontrol.upload import UploadStatus, upload_text
from agetdaq.gui.views.runcontrol.view import RunControlView

__all__ = ["PRESETS", "ReplyLog", "RunControlView", "RunForm", "RunList", "UploadStatus",
           "end_of_run_text", "run_row", "upload_text"]  # fmt: skip
