"""Run control: configure / start (pedestal, calibration, background) / stop, the DAQ's state
machine, and the replies. Requests go through the window's ControlWorker (never blocking);
buttons are enabled only where the state allows (agetdaq.gui.runstate.allowed_actions)."""

from __future__ import annotations

import time

from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui.runstate import STATE_COLOURS, STATES, allowed_actions
from agetdaq.gui.views.base import View
from agetdaq.readout.transport.control import RUN_TYPES


class RunControlView(View):
    title = "Run control"
    parts = ("status", "link")
    refresh_s = 0.5

    def build(self) -> QWidget:
        w = QWidget()
        layout = QVBoxLayout(w)
        machine = QHBoxLayout()
        self.state_labels: dict[str, QLabel] = {}
        for s in STATES:
            label = QLabel(s)
            label.setMinimumWidth(90)
            label.setStyleSheet("padding: 6px; border: 1px solid #888; color: #777;")
            machine.addWidget(label)
            self.state_labels[s] = label
        machine.addStretch(1)
        layout.addLayout(machine)
        self.reach_label = QLabel("-")
        layout.addWidget(self.reach_label)

        box = QGroupBox("Configure")
        form = QFormLayout(box)
        self.script_edit = QLineEdit()
        self.script_edit.setPlaceholderText("board script name (empty: the DAQ's default)")
        self.configure_button = QPushButton("Configure")
        self.configure_button.clicked.connect(self.configure)
        form.addRow("script", self.script_edit)
        form.addRow(self.configure_button)
        layout.addWidget(box)

        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.run_type = QComboBox()
        self.run_type.addItems(RUN_TYPES)
        self.comment = QLineEdit()
        self.events_limit = QSpinBox()
        self.events_limit.setRange(0, 2_000_000_000)
        self.events_limit.setSpecialValueText("no limit")
        self.seconds_limit = QDoubleSpinBox()
        self.seconds_limit.setRange(0, 1e7)
        self.seconds_limit.setSpecialValueText("no limit")
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        form.addRow("run type", self.run_type)
        form.addRow("comment", self.comment)
        form.addRow("stop after events", self.events_limit)
        form.addRow("stop after seconds", self.seconds_limit)
        form.addRow(buttons)
        layout.addWidget(box)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        layout.addWidget(QLabel("Replies"))
        layout.addWidget(self.log, 1)
        self.control_reply_state: tuple[float, str] | None = None
        self._shown_state: str | None = None
        self.buttons = {
            "configure": self.configure_button,
            "start": self.start_button,
            "stop": self.stop_button,
        }
        for button in self.buttons.values():
            button.setEnabled(False)  # until the DAQ's state is known
        return w

    # ---- actions ------------------------------------------------------------------------------

    def configure(self) -> None:
        script = self.script_edit.text().strip()
        self._send("configure", **({"script": script} if script else {}))

    def start(self) -> None:
        fields: dict[str, object] = {"run_type": self.run_type.currentText()}
        if self.comment.text().strip():
            fields["comment"] = self.comment.text().strip()
        if self.events_limit.value() > 0:
            fields["events"] = int(self.events_limit.value())
        if self.seconds_limit.value() > 0:
            fields["seconds"] = float(self.seconds_limit.value())
        self._send("start", **fields)

    def stop(self) -> None:
        self._send("stop")

    def _send(self, cmd: str, **fields: object) -> None:
        if self.host.control(cmd, **fields):
            self._log(f"-> {cmd} {fields if fields else ''}".rstrip())
        self.redraw()

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"{time.strftime('%H:%M:%S')} {text}")

    # ---- hooks --------------------------------------------------------------------------------

    def on_control_reply(self, cmd: str, reply: dict) -> None:
        state = reply.get("state")
        if isinstance(state, str):
            self.control_reply_state = (time.monotonic(), state)
        if cmd != "status" or not reply.get("ok", False):
            if reply.get("ok"):
                self._log(f"<- {cmd}: ok, state {state}")
            else:
                self._log(f"<- {cmd}: FAILED: {reply.get('error', '?')}")
        self.redraw()

    def model_changed(self) -> None:
        super().model_changed()
        self.control_reply_state = None

    def current_state(self) -> str | None:
        """The newest of the stream's status state and the control socket's answer."""
        m = self.host.model
        stream_t = m.status_rx if m.state() is not None else None
        ctl = self.control_reply_state
        if ctl is not None and (stream_t is None or ctl[0] >= stream_t):
            return ctl[1]
        return m.state()

    def redraw(self) -> None:
        state = self.current_state()
        reachable, busy = self.host.control_state()
        allowed = allowed_actions(state, reachable, busy)
        for name, button in self.buttons.items():
            button.setEnabled(name in allowed)
        if state != self._shown_state:  # stylesheets only on change
            self._shown_state = state
            for s, label in self.state_labels.items():
                on = f"background: {STATE_COLOURS[s]}; color: black; font-weight: bold;"
                style = on if s == state else "color: #777;"
                label.setStyleSheet(f"padding: 6px; border: 1px solid #888; {style}")
        addr = self.host.control_address()
        if addr is None:
            text = "no control socket (monitor only): give --control tcp://HOST:5555"
        else:
            text = f"control {addr}: {'answers' if reachable else 'NOT answering'}"
            text += " - request in flight" if busy else ""
        self.reach_label.setText(text)
