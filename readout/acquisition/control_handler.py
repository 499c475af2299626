"""Maps validated run-control requests (transport/control.py) onto the acquisition engine."""

from __future__ import annotations

import logging

from agetdaq.readout.acquisition.engine import Acquisition, EngineError
from agetdaq.readout.acquisition.pedestal_upload import (
    DEFAULT_EVENTS,
    DEFAULT_K_SIGMA,
    DEFAULT_SECONDS,
)
from agetdaq.readout.acquisition.scripts import confined_script
from agetdaq.readout.link.errors import BoardError

log = logging.getLogger(__name__)


def handle(acq: Acquisition, request: dict) -> dict:
    """Carry out one request; never raises for an expected refusal."""
    cmd = request["cmd"]
    try:
        if cmd in ("status", "ping"):
            pass
        elif cmd == "configure":
            script, root = confined_script(acq.data_dir, request.get("script", "run"))
            acq.configure(script, root=root)
        elif cmd == "start":
            acq.start_run(
                request["run_type"],
                request.get("comment", ""),
                events=request.get("events"),
                seconds=request.get("seconds"),
            )
        elif cmd == "stop":
            acq.stop_run("stop requested by run control")
        elif cmd == "pedestal":
            return _pedestal(acq, request)
        elif cmd == "mask":
            acq.set_masked(request["strips"], request.get("masked", True))
        elif cmd == "reference":
            acq.gain_reference = float(request["gain_adc"])
            acq.calib.set_reference(acq.gain_reference)
    except (EngineError, BoardError, ValueError) as exc:
        log.warning("control %s refused: %s", cmd, exc)
        return {"ok": False, "error": str(exc), "state": acq.state}
    return {"ok": True, **acq.status()}


def _pedestal(acq: Acquisition, request: dict) -> dict:
    """A pedestal run (limits: the request's, else the CLI's defaults); with ``upload`` the
    two-pass upload, replied when it is done (its outcome also in the status and the run log)."""
    events = request.get("events", DEFAULT_EVENTS)
    seconds = request.get("seconds", DEFAULT_SECONDS)
    if not request.get("upload", False):
        acq.start_run("pedestal", request.get("comment", ""), events=events, seconds=seconds)
        return {"ok": True, **acq.status()}
    outcome = acq.upload_pedestals(None, events, seconds, request.get("k_sigma", DEFAULT_K_SIGMA))
    if not outcome.ok:
        return {"ok": False, "error": outcome.message, "state": acq.state,
                "pedestal_upload": acq.uploads.report()}  # fmt: skip
    return {"ok": True, **acq.status()}
