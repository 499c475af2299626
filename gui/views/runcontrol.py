"""Run control: presets (pedestal with an event limit, calibration with the calibration script and a
time limit, background), the DAQ's shipped scripts to choose from, start / stop (stop asks
first), the DAQ's state machine, the end-of-run summary of the last run and the DAQ's run list
(its run log). The pedestal preset uploads: its Start sends the DAQ's ``pedestal`` command with
``upload`` (raw run, ped/thr to the card, run with the card's equalisation on, whose table is then
in force: what a calibration run with ``subtract_ped`` needs); the upload's phase and outcome come
from the DAQ's status (``pedestal_upload``). Requests go through the window's ControlWorker (never
blocking); buttons are enabled only where the state allows (agetdaq.gui.runstate.allowed_actions)
and not during an upload; while a run is open the form shows that run (its type), not the crew's
choice; refusals and errors are in red."""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable

from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agetdaq.gui import formatting as fmt
from agetdaq.gui.runs import OPEN_STATES
from agetdaq.gui.runstate import STATE_COLOURS, STATES, allowed_actions
from agetdaq.gui.views.base import View
from agetdaq.readout.transport.control import RUN_TYPES

ERROR_COLOUR = "#c62828"
# run type -> (script, stop after events, stop after seconds); the presets' buttons. The pedestal
# preset uploads (its event limit per pass; the DAQ chooses the scripts of the two passes)
PRESETS: dict[str, tuple[str, int, float]] = {
    "pedestal": ("pedestal_data", 1000, 0.0),
    "calibration": ("calibration", 0, 600.0),
    "background": ("run", 0, 0.0),
}
# the scripts offered until the DAQ lists its own (``run`` message)
SHIPPED_SCRIPTS = ("run", "calibration", "pedestal_data", "pedestal", "startup")
RUN_COLUMNS = ("run", "type", "started", "duration", "events", "end", "comment", "file")
RUNS_SHOWN = 50


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
            label.setStyleSheet("padding: 6px; border: 1px solid #888; color: #777;")
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
        split = QSplitter()
        layout.addWidget(split, 1)
        split.addWidget(self._build_form())
        split.addWidget(self._build_runs())
        split.setSizes([420, 700])
        self.upload_label = QLabel("")
        self.upload_label.setWordWrap(True)
        layout.addWidget(self.upload_label)
        self.control_reply_state: tuple[float, str] | None = None
        self._upload_shown: tuple | None = None  # the upload outcome last logged
        self._shown_state: str | None = None
        self._shown_ended = 0
        self._runs_key: tuple = ()
        self._pending_start: dict | None = None  # a start waiting for its configure
        self.buttons = {
            "configure": self.configure_button,
            "start": self.start_button,
            "stop": self.stop_button,
        }
        for button in self.buttons.values():
            button.setEnabled(False)  # until the DAQ's state is known
        return w

    def _build_form(self) -> QWidget:
        left = QWidget()
        col = QVBoxLayout(left)
        box = QGroupBox("Presets")
        row = QHBoxLayout(box)
        self.preset_buttons: dict[str, QPushButton] = {}
        for run_type, (script, events, seconds) in PRESETS.items():
            limit = f"{events} events" if events else (f"{seconds / 60:g} min" if seconds else "")
            upload = run_type == "pedestal"
            label = f"{run_type.capitalize()}" + (" + upload" if upload else "")
            button = QPushButton(label + (f"\n{limit}" if limit else ""))
            tip = (f"pedestal run, upload of its pedestals and thresholds to the card, pedestal "
                   f"run with the card's equalisation on ({limit} each): its table is then in "
                   f"force for the runs that follow" if upload else
                   f"{run_type} run with the {script} script"
                   + (f", stops after {limit}" if limit else ""))  # fmt: skip
            button.setToolTip(tip)
            button.clicked.connect(lambda _c=False, t=run_type: self.apply_preset(t))
            row.addWidget(button)
            self.preset_buttons[run_type] = button
        col.addWidget(box)

        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.run_type = QComboBox()
        self.run_type.addItems(RUN_TYPES)
        self.run_type.currentTextChanged.connect(self._type_chosen)
        self.script = QComboBox()
        self.script.setEditable(True)
        self.script.addItems(SHIPPED_SCRIPTS)
        self.script.setToolTip("command script sent before the run (the DAQ's shipped scripts, "
                               "or a file in its data directory)")  # fmt: skip
        self.comment = QLineEdit()
        self.events_limit = QSpinBox()
        self.events_limit.setRange(0, 2_000_000_000)
        self.events_limit.setSpecialValueText("no limit")
        self.seconds_limit = QDoubleSpinBox()
        self.seconds_limit.setRange(0, 1e7)
        self.seconds_limit.setSpecialValueText("no limit")
        self.upload = QCheckBox("upload to the card, then measure again (table in force)")
        self.upload.setToolTip("pedestal runs: raw pedestals, upload of ped/thr to the card, "
                               "pedestals with the card's equalisation on; the limits apply to "
                               "each of the two runs")  # fmt: skip
        buttons = QHBoxLayout()
        self.configure_button = QPushButton("Configure")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop ...")
        self.configure_button.clicked.connect(self.configure)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        for b in (self.configure_button, self.start_button, self.stop_button):
            buttons.addWidget(b)
        form.addRow("run type", self.run_type)
        form.addRow("script", self.script)
        form.addRow("comment", self.comment)
        form.addRow("stop after events", self.events_limit)
        form.addRow("stop after seconds", self.seconds_limit)
        form.addRow("pedestals", self.upload)
        form.addRow(buttons)
        col.addWidget(box)
        self.form_box = box
        col.addWidget(QLabel("Replies"))
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        col.addWidget(self.log, 1)
        self._type_chosen(self.run_type.currentText())
        return left

    def _build_runs(self) -> QWidget:
        right = QWidget()
        col = QVBoxLayout(right)
        box = QGroupBox("Last run")
        inner = QVBoxLayout(box)
        self.summary_label = QLabel("no run has ended while the monitor watched")
        self.summary_label.setWordWrap(True)
        inner.addWidget(self.summary_label)
        col.addWidget(box)
        col.addWidget(QLabel("Runs (the DAQ's run log, newest first)"))
        self.runs_table = QTableWidget(0, len(RUN_COLUMNS))
        self.runs_table.setHorizontalHeaderLabels(RUN_COLUMNS)
        self.runs_table.horizontalHeader().setStretchLastSection(True)
        self.runs_table.verticalHeader().setVisible(False)
        col.addWidget(self.runs_table, 1)
        return right

    # ---- actions ------------------------------------------------------------------------------

    def apply_preset(self, run_type: str) -> None:
        """Fill the form with a preset (the crew then presses Start)."""
        script, events, seconds = PRESETS[run_type]
        self.run_type.setCurrentText(run_type)
        self.script.setCurrentText(script)
        self.events_limit.setValue(events)
        self.seconds_limit.setValue(seconds)
        self.upload.setChecked(run_type == "pedestal")
        self._log(f"preset: {run_type} run, script {script}"
                  + (" + upload to the card" if run_type == "pedestal" else "")
                  + (f", {events} events" if events else "")
                  + (f", {seconds:g} s" if seconds else ""))  # fmt: skip

    def _type_chosen(self, run_type: str) -> None:
        """A run type chosen by hand: its script; a pedestal run gets an event limit."""
        if run_type not in PRESETS:
            return
        script, events, _ = PRESETS[run_type]
        self.script.setCurrentText(script)
        self.upload.setEnabled(run_type == "pedestal")
        self.upload.setChecked(run_type == "pedestal")
        auto = PRESETS["pedestal"][1]
        if run_type == "pedestal" and self.events_limit.value() == 0:
            self.events_limit.setValue(events)
            self._auto_limit = True
        elif getattr(self, "_auto_limit", False) and self.events_limit.value() == auto:
            self.events_limit.setValue(0)  # the pedestal run's default limit, not the crew's
            self._auto_limit = False

    def configure(self) -> None:
        script = self.script.currentText().strip()
        self._send("configure", **({"script": script} if script else {}))

    def start_request(self) -> dict:
        fields: dict[str, object] = {"run_type": self.run_type.currentText()}
        if self.comment.text().strip():
            fields["comment"] = self.comment.text().strip()
        if self.events_limit.value() > 0:
            fields["events"] = int(self.events_limit.value())
        if self.seconds_limit.value() > 0:
            fields["seconds"] = float(self.seconds_limit.value())
        return fields

    def upload_request(self) -> dict | None:
        """The ``pedestal`` command of a pedestal run with the upload ticked (None: a plain run)."""
        if self.run_type.currentText() != "pedestal" or not self.upload.isChecked():
            return None
        fields = self.start_request()
        del fields["run_type"]
        return {"upload": True, **fields}

    def start(self) -> None:
        """Start; first configure with the chosen script when the DAQ has another one. A pedestal
        run with the upload: the DAQ's ``pedestal`` command (it configures both of its runs)."""
        upload = self.upload_request()
        if upload is not None:
            self._send("pedestal", **upload)
            return
        fields = self.start_request()
        script = self.script.currentText().strip()
        if script and script != self.host.model.status.get("script"):
            self._pending_start = fields
            self._send("configure", script=script)
            return
        self._send("start", **fields)

    def stop(self) -> None:
        s = self.host.model.status
        what = f"run {s.get('run_number', '?')} ({s.get('run_type', '')})"
        if self.ask(self.widget, "Stop the run?", f"Stop {what} now?"):
            self._send("stop")
        else:
            self._log(f"stop of {what} cancelled")

    def _send(self, cmd: str, **fields: object) -> None:
        if self.host.control(cmd, **fields):
            self._log(f"-> {cmd} {fields if fields else ''}".rstrip())
        self.redraw()

    def _log(self, text: str, error: bool = False) -> None:
        line = html.escape(f"{time.strftime('%H:%M:%S')} {text}")
        self.log.appendHtml(f'<span style="color:{ERROR_COLOUR}"><b>{line}</b></span>'
                            if error else line)  # fmt: skip

    # ---- hooks --------------------------------------------------------------------------------

    def on_control_reply(self, cmd: str, reply: dict) -> None:
        state = reply.get("state")
        if isinstance(state, str):
            self.control_reply_state = (time.monotonic(), state)
        ok = bool(reply.get("ok", False))
        if cmd != "status" or not ok:
            if ok:
                self._log(f"<- {cmd}: ok, state {state}")
                self.error_label.setText("")
            else:
                error = reply.get("error", "?")
                self._log(f"<- {cmd}: FAILED: {error}", error=True)
                self.error_label.setText(f"{cmd} failed: {error}")
        if cmd == "configure" and self._pending_start is not None:
            fields, self._pending_start = self._pending_start, None
            if ok:
                self._send("start", **fields)
            else:
                self._log("start not sent: the configuration failed", error=True)
        self.redraw()

    def model_changed(self) -> None:
        super().model_changed()
        self.control_reply_state = None
        self._runs_key = ()

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
        uploading = self._draw_upload()
        allowed = allowed_actions(state, reachable, busy)
        if uploading:  # between its runs the DAQ is "configured": nothing else meanwhile
            allowed = allowed & {"stop"}
        for name, button in self.buttons.items():
            button.setEnabled(name in allowed)
        for button in self.preset_buttons.values():
            button.setEnabled("start" in allowed)
        self._follow_run(state)
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
        m = self.host.model
        if state == "error" and m.status.get("message"):
            self.error_label.setText(f"DAQ in error: {m.status['message']}")
        self._draw_summary()
        self._draw_runs()

    def _draw_upload(self) -> bool:
        """The pedestal upload's phase (True while it runs) and, once, each outcome: logged, and
        in red when it failed."""
        up = self.host.model.status.get("pedestal_upload")
        if not isinstance(up, dict):
            self.upload_label.setText("")
            return False
        phase = up.get("phase", "idle")
        if phase != "idle":
            s = self.host.model.status
            run = f" (run {s.get('run_number')})" if s.get("state") in OPEN_STATES else ""
            self.upload_label.setStyleSheet("font-weight: bold;")
            self.upload_label.setText(f"pedestal upload in progress: {phase}{run}")
            return True
        if up.get("outcome") is None:
            self.upload_label.setText("")
            return False
        key = (up.get("outcome"), up.get("run"), up.get("message"))
        if key != self._upload_shown:
            self._upload_shown = key
            ok = bool(up.get("ok"))
            message = str(up.get("message", ""))
            self._log(message if ok else f"pedestal upload FAILED: {message}", error=not ok)
            if ok:
                self.upload_label.setStyleSheet("")
                self.upload_label.setText(upload_text(up))
            else:
                self.upload_label.setStyleSheet(f"color: {ERROR_COLOUR}; font-weight: bold;")
                self.upload_label.setText(f"pedestal upload failed: {message}")
        return False

    def _follow_run(self, state: str | None) -> None:
        """While a run is open the form shows it (type, script) and cannot be edited."""
        s = self.host.model.status
        open_run = state in OPEN_STATES
        if open_run and s.get("state") in OPEN_STATES:
            run_type = s.get("run_type")
            if isinstance(run_type, str) and run_type != self.run_type.currentText():
                self.run_type.blockSignals(True)
                self.run_type.setCurrentText(run_type)
                self.run_type.blockSignals(False)
            script = s.get("script")
            if isinstance(script, str) and script and script != self.script.currentText():
                self.script.setCurrentText(script)
        for widget in (self.run_type, self.script, self.events_limit, self.seconds_limit):
            widget.setEnabled(not open_run)
        self.upload.setEnabled(not open_run and self.run_type.currentText() == "pedestal")

    def _draw_summary(self) -> None:
        watch = self.host.model.runs
        if watch.ended_count == self._shown_ended or watch.ended is None:
            return
        self._shown_ended = watch.ended_count
        text = end_of_run_text(watch.ended)
        self.summary_label.setText(text)
        self._log(f"run {watch.ended.get('run_number')} ended: {watch.ended.get('stop_reason')}")

    def _draw_runs(self) -> None:
        watch = self.host.model.runs
        runs = watch.listed[-RUNS_SHOWN:][::-1]
        s = self.host.model.status
        current = s.get("run_number") if s.get("state") in OPEN_STATES else None
        ended, killed = _number(s.get("last_run")), _number(s.get("killed_run"))
        key = (len(watch.listed), tuple(sorted(runs[0].items())) if runs else (), current,
               ended, killed)  # fmt: skip
        scripts = tuple(watch.scripts)
        if scripts and scripts != getattr(self, "_scripts", ()):
            self._scripts = scripts
            current = self.script.currentText()
            self.script.clear()
            self.script.addItems(scripts)
            self.script.setCurrentText(current)
        if key == self._runs_key:
            return
        self._runs_key = key
        self.runs_table.setRowCount(len(runs))
        for r, run in enumerate(runs):
            for c, text in enumerate(run_row(run, current, s.get("last_run"), killed)):
                item = QTableWidgetItem(text)
                if c == 5 and text.startswith("KILLED"):
                    item.setForeground(_red())
                self.runs_table.setItem(r, c, item)
        self.runs_table.resizeColumnsToContents()

    def summary(self) -> list[str]:
        ended = self.host.model.runs.ended
        if ended is None:
            return []
        return ["last run: " + end_of_run_text(ended).replace("<br>", "; ")]


def _red():
    from PyQt6.QtGui import QColor

    return QColor(ERROR_COLOUR)


def _number(run: object) -> int | None:
    """The run number of a status' ``last_run`` / ``killed_run`` entry (None: none)."""
    number = run.get("run_number") if isinstance(run, dict) else None
    return number if isinstance(number, int) else None


def run_row(
    run: dict, current: int | None = None, last: object = None, killed: int | None = None
) -> list[str]:
    """The run-list cells of a ``run`` entry. From the DAQ's status: ``current`` the run in
    progress, ``last`` the run that ended last (its entry), ``killed`` a run the DAQ died in.
    A run without an end in the list is running, killed, or just ended (the list lags)."""
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
        str(run.get("comment", "")), os.path.basename(str(run.get("file", ""))),
    ]  # fmt: skip


def upload_text(up: dict) -> str:
    """A pedestal upload that left its table in force, for the crew."""
    check = up.get("upload_check") or {}
    return (f"pedestal table in force: {up.get('in_force')} (pedestal run {up.get('run')} after "
            f"the upload; {check.get('strips_off', '?')} of {check.get('strips', '?')} strips "
            f"off by more than 3 ADC)")  # fmt: skip


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
