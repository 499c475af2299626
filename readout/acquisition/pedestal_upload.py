"""The two-pass pedestal upload, owned by the engine: ``agetdaq pedestal --upload`` and the
run-control command ``pedestal`` (``upload: true``) run the same code.

1. raw pass: a pedestal run with the pedestal script (a run in the data directory);
2. the card is emptied (a run stopped at its event count leaves events in the card), then the
   per-channel ped/thr commands are sent (baselines equalised at 250, like hped);
3. equalised pass: a pedestal run with the card's equalisation on (``pedestal_equalised``);
4. check that the upload took (each strip's mean after the upload vs raw mean + uploaded ped);
   if it did, the table of the equalised pass is left in the data directory as the table in force
   on the board (``pedestals.h5``, pedestal_use.py) and the processing uses it from then on.

:class:`PedestalUpload` holds the flow's progress (``phase``) and its last outcome (``report()``,
in the DAQ's status as ``pedestal_upload``); each outcome goes to the run log. A run in progress is
driven by the owner's ``drive`` (the CLI: with its progress line) or by :meth:`drive_quietly`
(the server: polls the engine, a :meth:`cancel` or the owner's stop request stops the run).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agetdaq.readout.acquisition.pedestal_use import save_in_force
from agetdaq.readout.acquisition.scripts import RUN_TYPE_SCRIPT
from agetdaq.readout.datapath.pedestals import ZS_K_SIGMA, upload_commands, uploaded_rows
from agetdaq.readout.datapath.stages.pedestal import OUTPUT as PEDESTAL_TABLE
from agetdaq.readout.link.board_link import BoardError

if TYPE_CHECKING:
    from agetdaq.readout.acquisition.engine import Acquisition

log = logging.getLogger(__name__)

RAW_SCRIPT = RUN_TYPE_SCRIPT["pedestal"]  # internal generator, every channel, equalisation off
EQUALISED_SCRIPT = "pedestal_equalised"  # pedestal_data.txt with the card's subtract_ped on
RAW_COMMENT = "raw pedestals, before the upload (agetdaq pedestal --upload, pass 1)"
EQUALISED_COMMENT = (
    "pedestals measured after the upload, card pedestal equalisation on: the table that fits the "
    "data of the runs that follow (agetdaq pedestal --upload, pass 2)"
)
UPLOAD_TOLERANCE_ADC = 3.0  # a strip's mean after the upload vs raw mean + uploaded ped
UPLOAD_OFF_FRACTION = 0.05  # more strips off than this: the upload did not take
DRAIN_QUIET_S, DRAIN_LIMIT_S = 0.5, 60.0  # the card is empty after this long without data
DEFAULT_EVENTS, DEFAULT_SECONDS = 500, 120.0  # per pass
DEFAULT_K_SIGMA = ZS_K_SIGMA  # card thresholds k * noise (the CLI's --k-sigma default too)

# outcomes (``Outcome.kind``); only IN_FORCE leaves a new table in force
IN_FORCE = "in_force"  # uploaded, checked, the table in force saved
STRIPS_OFF = "strips_off"  # uploaded, but the baselines are not where the upload puts them
NO_EVENTS = "no_events"  # a pass received no pedestal event
INTERRUPTED = "interrupted"  # stopped before the upload: nothing sent
RUN_FAILED = "run_failed"  # a pass did not end as asked (board lost, writer failure)
UPLOAD_FAILED = "upload_failed"  # the board refused or did not answer a command of the upload
CANCELLED = "cancelled"  # stopped by run control after the upload, before the equalised pass


@dataclass
class Outcome:
    """How an upload ended: ``kind`` (above), a sentence for people, the measured figures."""

    kind: str
    message: str
    summary: dict[str, Any] = field(default_factory=dict)
    run: int | None = None  # the equalised pass' run (its table is the one in force)

    @property
    def ok(self) -> bool:
        return self.kind == IN_FORCE


class PedestalUpload:
    """The pedestal runs of the engine ``acq`` (plain, or the two-pass upload)."""

    def __init__(self, acq: Acquisition) -> None:
        self.acq = acq
        self.phase = "idle"  # idle, raw pass, uploading, equalised pass
        self.last: Outcome | None = None
        self._cancel = threading.Event()

    # ---- any thread --------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the upload in progress or about to start (run control's ``stop`` meanwhile):
        before the upload nothing is sent; during the equalised pass its table is checked as
        measured."""
        self._cancel.set()

    @property
    def busy(self) -> bool:
        return self.phase != "idle"

    def report(self) -> dict[str, Any]:
        """For the status: the phase, and the last outcome once there is one."""
        last = self.last
        out: dict[str, Any] = {"phase": self.phase}
        if last is not None:
            out.update(ok=last.ok, outcome=last.kind, message=last.message, run=last.run)
            for key in ("in_force", "raw_file", "upload_check"):
                if key in last.summary:
                    out[key] = last.summary[key]
        return out

    # ---- the engine's thread -----------------------------------------------------------------

    def measure(
        self,
        output: str | Path | None,
        events: int | None,
        seconds: float | None,
        comment: str,
        drive: Callable[[], None] | None = None,
    ) -> np.ndarray | None:
        """One pedestal run, driven to its end; the table it measured, or None when no pedestal
        event came. :class:`RunEnded` when the run did not end as asked."""
        acq = self.acq
        acq.start_run("pedestal", comment, output, events, seconds)
        (drive or self.drive_quietly)()
        if acq.state == "error" or acq.run.board_lost:
            raise RunEnded(acq.message or acq.run.stop_reason)
        return acq.pedestal_rows if acq.datapath.outputs.get(PEDESTAL_TABLE) is not None else None

    def drive_quietly(self) -> None:
        """Poll the running engine until the run stops by itself, or stop it on :meth:`cancel`
        or the owner's stop request."""
        acq = self.acq
        while acq.state == "running":
            if self._cancel.is_set() or acq.stop_request.is_set():
                acq.stop_run("stop requested by run control"
                             if self._cancel.is_set() else "interrupted (signal)")  # fmt: skip
                break
            acq.poll()
            time.sleep(0.05)

    def upload(
        self,
        output: str | Path | None,
        events: int | None,
        seconds: float | None,
        k_sigma: float,
        drive: Callable[[], None] | None = None,
    ) -> Outcome:
        """The two-pass upload (module docstring; the engine refuses it while a run is open).
        An engine error (a configuration or a run start that failed) propagates after it is
        recorded; every other end is an :class:`Outcome`, also in the run log."""
        try:
            outcome = self._two_passes(output, events, seconds, k_sigma, drive)
        except RunEnded as ended:
            outcome = Outcome(RUN_FAILED, str(ended))
        except Exception as exc:
            self._finish(Outcome(RUN_FAILED, str(exc)))
            raise
        finally:
            self.phase = "idle"
            self._cancel.clear()  # a cancel counts from its request (even before the start)
        self._finish(outcome)
        return outcome

    def _two_passes(self, output, events, seconds, k_sigma, drive) -> Outcome:
        acq = self.acq
        self.phase = "raw pass"
        # the raw pass always with the pedestal script (card equalisation off), whatever the
        # operator configured before (e.g. pedestal.txt, whose hped leaves no data path on)
        stopped = Outcome(INTERRUPTED, "interrupted before the upload: nothing sent")
        if self._cancel.is_set():  # by run control before it began
            return stopped
        acq.configure(RAW_SCRIPT)
        raw = self.measure(None, events, seconds, RAW_COMMENT, drive)
        if self._cancel.is_set():
            return stopped
        if raw is None:
            return self._no_events()
        if acq.stop_request.is_set():
            return stopped
        raw_file = acq.run.path
        self.phase = "uploading"
        acq.announce(f"pedestal upload: raw pedestals of run {acq.run.number}, uploading")
        try:
            self.drain_leftovers()
            commands = upload_commands(raw, k_sigma=k_sigma)
            t0 = time.monotonic()
            for line in commands:
                acq.link.command(line)
            upload_s = time.monotonic() - t0
        except BoardError as exc:
            return Outcome(UPLOAD_FAILED, f"upload failed: {exc}")
        expected = uploaded_rows(raw)
        acq.load_pedestals(expected)  # the equalised run records it as the table in use at start
        acq.configure(EQUALISED_SCRIPT)
        if self._cancel.is_set():
            return Outcome(
                CANCELLED,
                "stopped after the upload, before the pass with the card's equalisation on: the "
                "card has the new pedestals but the table in force is left as it was (run the "
                "pedestal upload again)",
            )
        self.phase = "equalised pass"
        rows = self.measure(output, events, seconds, EQUALISED_COMMENT, drive)
        if rows is None:
            return self._no_events()
        summary = self.summary(output, rows)
        summary.update(
            raw_file=raw_file,
            raw_mean_adc=strip_mean(raw),
            uploaded_commands=len(commands),
            upload_s=round(upload_s, 2),
            upload_check=upload_check(rows, expected),
        )
        check = summary["upload_check"]
        if check["strips_off"] > UPLOAD_OFF_FRACTION * check["strips"]:
            return Outcome(
                STRIPS_OFF,
                f"the board's baselines after the upload are not where the upload puts them "
                f"({check['strips_off']} of {check['strips']} strips more than "
                f"{UPLOAD_TOLERANCE_ADC} ADC off, up to {check['largest_adc']} ADC): the table in "
                f"force is left as it was",
                summary,
            )
        number = acq.run.number
        file = str(output) if output is not None else acq.run.path
        source = {"file": file, "run": number, "raw_file": raw_file,
                  "table": "measured after the upload (card pedestal equalisation on)"}  # fmt: skip
        path = save_in_force(acq.data_dir, rows, source)
        summary["in_force"] = str(path)
        acq.pedestals.load(rows, number, f"pedestal run {number}, uploaded, in force ({path})")
        return Outcome(
            IN_FORCE,
            f"pedestal upload: table in force {path} (run {number}, "
            f"{check['strips_off']} of {check['strips']} strips off)",
            summary,
            number,
        )

    def _no_events(self) -> Outcome:
        return Outcome(NO_EVENTS, f"no pedestal events received from {self.acq.settings.daq.bec}")

    def _finish(self, outcome: Outcome) -> None:
        self.last = outcome
        record: dict[str, Any] = {"event": "pedestal_upload", "ok": outcome.ok,
                                  "outcome": outcome.kind, "message": outcome.message,
                                  "run": outcome.run}  # fmt: skip
        for key in ("in_force", "raw_file", "upload_check"):
            if key in outcome.summary:
                record[key] = outcome.summary[key]
        self.acq.runlog.append(record)
        what = {STRIPS_OFF: "pedestal upload refused: ", RUN_FAILED: "pedestal upload failed: ",
                IN_FORCE: ""}.get(outcome.kind, "pedestal upload: ")  # fmt: skip
        if self.acq.state == "error":  # the engine's message says why
            log.error("%s%s", what, outcome.message)
        else:
            self.acq.announce(what + outcome.message, logging.INFO if outcome.ok else logging.ERROR)

    def drain_leftovers(self) -> None:
        """Empty the card before the upload: a run stopped at its event count leaves the events
        the card still held after the stop's bounded drain (tens of full-readout events when the
        link is slow), and they would come out first in the equalised pass, unequalised
        (measured: 59 of its 100 events). The triggers are off since the stop; what arrives
        outside a run is discarded."""
        acq = self.acq
        acq.link.start_data()
        acq.board.wait_quiet(DRAIN_QUIET_S, DRAIN_LIMIT_S)
        acq.link.stop_data(timeout=acq.board.timeout_s)
        acq.board.wait_quiet(0.2, 2.0)

    def summary(self, output: str | Path | None, rows: np.ndarray) -> dict[str, Any]:
        """The figures of a pedestal table (and the events it was measured over)."""
        strips = rows[rows["strip"] >= 0]
        return {
            "file": output,
            "events": self.acq.counters()["stages"]["pedestal"]["events"],
            "mean_adc": strip_mean(rows),
            "noise_adc": float(np.median(strips["sigma"])),
            "dead": [int(s) for s in strips["strip"][(strips["flags"] & 1) != 0]],
            "noisy": [int(s) for s in strips["strip"][(strips["flags"] & 2) != 0]],
        }


class RunEnded(Exception):
    """A pedestal pass did not end as asked (board lost, writer failure)."""


def strip_mean(rows: np.ndarray) -> float:
    return float(np.mean(rows["mean"][rows["strip"] >= 0]))


def upload_check(measured: np.ndarray, expected: np.ndarray) -> dict[str, Any]:
    """Strips whose mean measured after the upload is more than UPLOAD_TOLERANCE_ADC from where
    the upload puts it (rows in the same order: both tables come from the same mapping)."""
    s = (measured["strip"] >= 0) & (expected["strip"] >= 0)
    d = np.abs(measured["mean"][s] - expected["mean"][s])
    return {
        "strips": int(s.sum()),
        "strips_off": int((d > UPLOAD_TOLERANCE_ADC).sum()),
        "largest_adc": round(float(d.max()), 1) if d.size else 0.0,
    }
