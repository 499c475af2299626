"""The run-control form: the presets (pedestal with an event limit and the upload, calibration with
the calibration script and a time limit, background), the run to start (type, script, comment,
limits, the pedestal upload) and the Configure / Start / Stop buttons. While a run is open it shows
that run (its type and script) and cannot be edited."""

from __future__ import annotations

from collections.abc import Mapping

from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
)

from agetdaq.gui.runs import OPEN_STATES
from agetdaq.gui.views.runcontrol.replies import ReplyLog
from agetdaq.readout.transport.control import RUN_TYPE_SCRIPT, RUN_TYPES

# run type -> (script, stop after events, stop after seconds); the presets' buttons. The pedestal
# preset uploads (its event limit per pass; the DAQ chooses the scripts of the two passes)
# (the scripts: the DAQ's defaults for the run type, but the calibration preset reads every
# channel whole: calibration-zs needs the thresholds of a pedestal upload on the card, and a crew
# may press the preset on a board that never had one)
PRESETS: dict[str, tuple[str, int, float]] = {
    "pedestal": (RUN_TYPE_SCRIPT["pedestal"], 1000, 0.0),
    "calibration": ("calibration", 0, 600.0),
    "background": (RUN_TYPE_SCRIPT["background"], 0, 0.0),
}
# the scripts offered until the DAQ lists its own (``run`` message)
SHIPPED_SCRIPTS = ("run", "calibration-zs", "calibration", "pedestal_data", "pedestal", "startup")


class RunForm:
    """The presets, the run form and its buttons; the crew's choice of the next run."""

    def __init__(self, replies: ReplyLog) -> None:
        self.replies = replies
        self.auto_limit = False  # the event limit is the pedestal run's default, not the crew's
        self.offered: tuple[str, ...] = ()  # the DAQ's scripts in the script box
        self.presets = self._build_presets()
        self.box = self._build_form()
        self._type_chosen(self.run_type.currentText())

    def _build_presets(self) -> QGroupBox:
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
        return box

    def _build_form(self) -> QGroupBox:
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
        for b in (self.configure_button, self.start_button, self.stop_button):
            buttons.addWidget(b)
        form.addRow("run type", self.run_type)
        form.addRow("script", self.script)
        form.addRow("comment", self.comment)
        form.addRow("stop after events", self.events_limit)
        form.addRow("stop after seconds", self.seconds_limit)
        form.addRow("pedestals", self.upload)
        form.addRow(buttons)
        return box

    def apply_preset(self, run_type: str) -> None:
        """Fill the form with a preset (the crew then presses Start)."""
        script, events, seconds = PRESETS[run_type]
        self.run_type.setCurrentText(run_type)
        self.script.setCurrentText(script)
        self.events_limit.setValue(events)
        self.seconds_limit.setValue(seconds)
        self.upload.setChecked(run_type == "pedestal")
        self.replies.add(f"preset: {run_type} run, script {script}"
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
            self.auto_limit = True
        elif self.auto_limit and self.events_limit.value() == auto:
            self.events_limit.setValue(0)  # the pedestal run's default limit, not the crew's
            self.auto_limit = False

    def script_name(self) -> str:
        return self.script.currentText().strip()

    def start_request(self) -> dict:
        """The ``start`` command's fields of the run in the form."""
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

    def follow(self, status: Mapping, open_run: bool) -> None:
        """While a run is open (``open_run``: the newest state the monitor knows) the form cannot
        be edited, and shows the run (type, script) once the DAQ's ``status`` tells it."""
        if open_run and status.get("state") in OPEN_STATES:
            run_type = status.get("run_type")
            if isinstance(run_type, str) and run_type != self.run_type.currentText():
                self.run_type.blockSignals(True)
                self.run_type.setCurrentText(run_type)
                self.run_type.blockSignals(False)
            script = status.get("script")
            if isinstance(script, str) and script and script != self.script.currentText():
                self.script.setCurrentText(script)
        editable = not open_run
        for widget in (self.run_type, self.script, self.events_limit, self.seconds_limit):
            widget.setEnabled(editable)
        self.upload.setEnabled(editable and self.run_type.currentText() == "pedestal")

    def offer_scripts(self, scripts: tuple[str, ...]) -> None:
        """The DAQ's shipped scripts in the script box (the choice kept)."""
        if not scripts or scripts == self.offered:
            return
        self.offered = scripts
        current = self.script.currentText()
        self.script.clear()
        self.script.addItems(scripts)
        self.script.setCurrentText(current)
