"""Run control: the DAQ's state machine, whether its control socket answers, the form of the next
run with its presets (:class:`~agetdaq.gui.views.runcontrol.form.RunForm`), start / stop (stop
asks first), the pedestal upload's progress
(:class:`~agetdaq.gui.views.runcontrol.upload.UploadStatus`), the end-of-run summary and the DAQ's
run list (:class:`~agetdaq.gui.views.runcontrol.runlist.RunList`) and the replies
(:class:`~agetdaq.gui.views.runcontrol.replies.ReplyLog`). The pedestal preset uploads: its Start
sends the DAQ's ``pedestal`` command with ``upload`` (raw run, ped/thr to the card, run with the
card's equalisation on, whose table is then in force: what a calibration run with ``subtract_ped``
needs). Requests go through the window's ControlWorker (never blocking); buttons are enabled only
where the state allows (agetdaq.gui.runstate.allowed_actions) and not during an upload; refusals
and errors are in red."""

from __future__ import annotations

import time
from collections.abc import Callable

from PyQt6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.runs import OPEN_STATES
from agetdaq.gui.runstate import STATE_COLOURS, STATES, allowed_actions
from agetdaq.gui.views.base import View
from agetdaq.gui.views.runcontrol.form import RunForm
from agetdaq.gui.views.runcontrol.replies import ERROR_COLOUR, ReplyLog
from agetdaq.gui.views.runcontrol.runlist import RunList
from agetdaq.gui.views.runcontrol.upload import UploadStatus

STATE_STYLE = "padding: 6px; border: 1px solid #888;"


def ask_yes_no(parent: QWidget, title: str, text: str) -> bool:
    """A modal question; True for Yes."""
    answer = QMessageBox.question(parent, title, text)
    return answer == QMessageBox.StandardButton.Yes


class RunControlView(View):
    title = "Run control"
    parts = ("status", "link", "runs")
    refresh_s = 0.5

    ask: Callable[[QWidget, str, str], bool] = staticmethod(ask_yes_no)

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        machine = QHBoxLayout()
        self.state_labels: dict[str, QLabel] = {}
        for s in STATES:
            label = QLabel(s)
            label.setMinimumWidth(90)
            label.setStyleSheet(f"{STATE_STYLE} color: #777;")
            machine.addWidget(label)
            self.state_labels[s] = label
        machine.addStretch(1)
        layout.addLayout(machine)
        self.reach_label = QLabel("-")
        layout.addWidget(self.reach_label)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOUR}; font-weight: bold;")
        layout.addWidget(self.error_label)
        self.replies = ReplyLog()
        self.form = RunForm(self.replies)
        self.run_list = RunList(self.replies)
        self.upload_status = UploadStatus(self.replies)
        form = self.form
        form.configure_button.clicked.connect(self.configure)
        form.start_button.clicked.connect(self.start)
        form.stop_button.clicked.connect(self.stop)
        left = QWidget()
        col = QVBoxLayout(left)
        col.addWidget(form.presets)
        col.addWidget(form.box)
        col.addWidget(QLabel("Replies"))
        col.addWidget(self.replies.widget, 1)
        split = QSplitter()
        layout.addWidget(split, 1)
        split.addWidget(left)
        split.addWidget(self.run_list.widget)
        split.setSizes([420, 700])
        layout.addWidget(self.upload_status.label)
        self.control_reply_state: tuple[float, str] | None = None  # (monotonic, state)
        self.shown_state: str | None = None  # the state the labels show
        self.pending_start: dict | None = None  # a start waiting for its configure
        self.buttons = {
            "configure": form.configure_button,
            "start": form.start_button,
            "stop": form.stop_button,
        }
        for button in self.buttons.values():
            button.setEnabled(False)  # until the DAQ's state is known
        return w

    # ---- actions ------------------------------------------------------------------------------

    def configure(self) -> None:
        script = self.form.script_name()
        self._send("configure", **({"script": script} if script else {}))

    def start(self) -> None:
        """Start; first configure with the chosen script when the DAQ has another one. A pedestal
        run with the upload: the DAQ's ``pedestal`` command (it configures both of its runs)."""
        upload = self.form.upload_request()
        if upload is not None:
            self._send("pedestal", **upload)
            return
        fields = self.form.start_request()
        script = self.form.script_name()
        if script and script != self.host.model.status.get("script"):
            self.pending_start = fields
            self._send("configure", script=script)
            return
        self._send("start", **fields)

    def stop(self) -> None:
        s = self.host.model.status
        what = f"run {s.get('run_number', '?')} ({s.get('run_type', '')})"
        if self.ask(self.widget, "Stop the run?", f"Stop {what} now?"):
            self._send("stop")
        else:
            self.replies.add(f"stop of {what} cancelled")

    def _send(self, cmd: str, **fields: object) -> None:
        if self.host.control(cmd, **fields):
            self.replies.add(f"-> {cmd} {fields if fields else ''}".rstrip())
        self.redraw()

    # ---- hooks --------------------------------------------------------------------------------

    def on_control_reply(self, cmd: str, reply: dict) -> None:
        state = reply.get("state")
        if isinstance(state, str):
            self.control_reply_state = (time.monotonic(), state)
        ok = bool(reply.get("ok", False))
        if cmd != "status" or not ok:
            if ok:
                self.replies.add(f"<- {cmd}: ok, state {state}")
                self.error_label.setText("")
            else:
                error = reply.get("error", "?")
                self.replies.add(f"<- {cmd}: FAILED: {error}", error=True)
                self.error_label.setText(f"{cmd} failed: {error}")
        if cmd == "configure" and self.pending_start is not None:
            fields, self.pending_start = self.pending_start, None
            if ok:
                self._send("start", **fields)
            else:
                self.replies.add("start not sent: the configuration failed", error=True)
        self.redraw()

    def model_changed(self) -> None:
        super().model_changed()
        self.control_reply_state = None
        self.run_list.forget()

    def current_state(self) -> str | None:
        """The newest of the stream's status state and the control socket's answer."""
        m = self.host.model
        stream_t = m.status_rx if m.state() is not None else None
        ctl = self.control_reply_state
        if ctl is not None and (stream_t is None or ctl[0] >= stream_t):
            return ctl[1]
        return m.state()

    def redraw(self) -> None:
        m = self.host.model
        state = self.current_state()
        reachable, busy = self.host.control_state()
        uploading = self.upload_status.draw(m.status)
        allowed = allowed_actions(state, reachable, busy)
        if uploading:  # between its runs the DAQ is "configured": nothing else meanwhile
            allowed = allowed & {"stop"}
        for name, button in self.buttons.items():
            button.setEnabled(name in allowed)
        for button in self.form.preset_buttons.values():
            button.setEnabled("start" in allowed)
        self.form.follow(m.status, state in OPEN_STATES)
        self.form.offer_scripts(tuple(m.runs.scripts))
        self._draw_state(state)
        addr = self.host.control_address()
        if addr is None:
            text = "no control socket (monitor only): give --control tcp://HOST:5555"
        else:
            text = f"control {addr}: {'answers' if reachable else 'NOT answering'}"
            text += " - request in flight" if busy else ""
        self.reach_label.setText(text)
        if state == "error" and m.status.get("message"):
            self.error_label.setText(f"DAQ in error: {m.status['message']}")
        self.run_list.draw(m.runs, m.status)

    def _draw_state(self, state: str | None) -> None:
        if state == self.shown_state:  # stylesheets only on change
            return
        self.shown_state = state
        for s, label in self.state_labels.items():
            on = f"background: {STATE_COLOURS[s]}; color: black; font-weight: bold;"
            label.setStyleSheet(f"{STATE_STYLE} {on if s == state else 'color: #777;'}")

    def summary(self) -> list[str]:
        return self.run_list.summary(self.host.model.runs)
