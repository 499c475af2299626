"""Run control served beside the engine: requests answered at once, long commands run by the
engine's own thread.

The control service (transport/control.py ``ControlService``) runs in a thread of its own and
calls :meth:`EngineCommands.handle` for every valid request: ``status`` and ``ping`` are answered
from the engine's status right away; a refusal the state alone decides (``start`` during a run,
``stop`` with none) is answered at once too; ``configure``, ``start``, ``stop``, ``pedestal``,
``mask`` and ``reference`` are queued for the engine thread (the owner's loop calls
:meth:`run_pending`). Their reply comes when they are done if that takes less than ``ack_s`` (a
mask: at once); otherwise the command is acknowledged ``{"ok": true, "pending": "<cmd>",
"state": ...}`` with the state it is heading through (``configuring``, ``stopping``), and its
outcome shows in the status (state, message) when it ends. ``"wait": true`` in the request makes
the reply wait for the end (the service meanwhile answers everyone else). A ``pedestal`` upload
keeps the engine thread for its two runs (tens of seconds): a ``stop`` meanwhile is not queued
behind it but cancels it (pedestal_upload.py: before the upload nothing is sent).
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from agetdaq.readout.acquisition.control_handler import handle
from agetdaq.readout.acquisition.engine import Acquisition

log = logging.getLogger(__name__)

QUICK = ("status", "ping")
ACK_S = 0.05  # a long command is acknowledged after this long
# the state a command goes through, shown from the moment it is accepted
TRANSIT = {"configure": "configuring", "start": "configuring", "stop": "stopping"}
SETTLED = ("idle", "configured", "running", "error")


class EngineCommands:
    """The control handler of ``agetdaq serve`` (module docstring)."""

    def __init__(self, acq: Acquisition, ack_s: float = ACK_S) -> None:
        self.acq = acq
        self.ack_s = ack_s
        self._queue: queue.Queue[tuple[dict, Future]] = queue.Queue()
        self._lock = threading.Lock()
        self._busy: list[str] = []  # commands accepted and not done, in order
        self._uploads = 0  # pedestal uploads accepted and not done

    # ---- the control service's thread --------------------------------------------------------

    def handle(self, request: dict) -> dict | Future:
        cmd = request["cmd"]
        if cmd in QUICK:
            return self.status()
        upload = cmd == "pedestal" and bool(request.get("upload"))
        with self._lock:
            cancel = cmd == "stop" and self._uploads > 0
            self._uploads += upload
        if cancel:  # the engine thread is in the upload (or about to be): not behind it
            self.acq.uploads.cancel()
            return {**self.status(), "ok": True, "pending": "stop"}
        refusal = self._refusal(cmd)
        if refusal is not None:
            log.warning("control %s refused: %s", cmd, refusal)
            return {"ok": False, "error": refusal, "state": self.acq.state}
        fut: Future = Future()
        with self._lock:
            self._busy.append(cmd)
        self._queue.put((request, fut))
        if request.get("wait"):
            return fut
        try:
            return fut.result(timeout=self.ack_s)
        except FutureTimeout:
            return {**self.status(), "ok": True, "pending": cmd}

    def _refusal(self, cmd: str) -> str | None:
        """A refusal certain from the state alone, answered at once however busy the engine is:
        ``start`` while a run is running, ``stop`` with no run, and nothing queued that could
        change that (the engine refuses the same way; this only spares the client the wait)."""
        with self._lock:
            if self._busy:
                return None
        state = self.acq.state
        if cmd == "start" and state == "running":
            return "a run is already running"
        if cmd == "stop" and state in ("idle", "configured", "error"):
            return f"no run to stop (state {state})"
        return None

    def status(self) -> dict:
        """The engine's status, with the state a queued or running command goes through."""
        st = self.acq.status()
        with self._lock:
            busy = self._busy[0] if self._busy else None
        if busy in TRANSIT and st.get("state") in SETTLED:
            st["state"] = TRANSIT[busy]
        elif busy == "pedestal" and st.get("state") in ("idle", "configured"):
            st["state"] = "configuring"  # between the passes of an upload (or before its run)
        return {"ok": True, **st}

    # ---- the engine's thread -----------------------------------------------------------------

    def run_pending(self, timeout: float = 0.0) -> int:
        """Carry out the queued commands (waiting up to ``timeout`` for one); returns how many."""
        done = 0
        while True:
            try:
                request, fut = self._queue.get(timeout=timeout if not done else 0.0)
            except queue.Empty:
                return done
            try:
                reply = handle(self.acq, request)
            except Exception as exc:  # never leaves a client without an answer
                log.exception("control %s failed", request["cmd"])
                reply = {"ok": False, "error": f"{request['cmd']} failed: {exc}"}
            with self._lock:
                self._busy.remove(request["cmd"])
                self._uploads -= request["cmd"] == "pedestal" and bool(request.get("upload"))
            fut.set_result(reply)
            done += 1
