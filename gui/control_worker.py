"""Run-control requests in a worker thread: the GUI thread never waits for the DAQ.

Requests are validated against ``agetdaq.readout.transport.control.SCHEMA`` before they are queued
(a bad request is answered at once with ``ok: false``); the worker sends them one by one with a
``agetdaq.readout.transport.control.ControlClient`` (which rebuilds its socket after a timeout) and,
when idle, asks for ``status`` every ``poll_s`` so the panel knows the state and whether the DAQ
answers.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time

import zmq
from PyQt6.QtCore import QThread, pyqtSignal

from agetdaq.readout.transport.control import ControlClient, RequestError, validate


class ControlWorker(QThread):
    """Owns one ControlClient; ``reply(cmd, reply_dict)`` for every request (and status poll)."""

    reply = pyqtSignal(int, str, dict)  # (slot, cmd, reply)

    def __init__(
        self,
        address: str,
        poll_s: float = 2.0,
        timeout_ms: int = 2000,
        context: zmq.Context | None = None,
    ) -> None:
        super().__init__()
        self.slot = 0  # the window's index of the stream this socket controls
        self.address = address
        self.poll_s = poll_s
        self.timeout_ms = timeout_ms
        self.context = context
        self.requests: queue.Queue[dict | None] = queue.Queue(maxsize=64)
        self._lock = threading.Lock()
        self._in_flight = 0  # operator requests queued or being sent
        self.reachable: bool | None = None
        self._stop = False

    def submit(self, cmd: str, **fields: object) -> bool:
        """Queue a request; returns False (and emits an error reply) when it is refused."""
        request = {"cmd": cmd, **fields}
        counted = cmd not in ("status", "ping")
        try:
            validate(request)
        except RequestError as exc:
            self.reply.emit(self.slot, cmd, {"ok": False, "error": str(exc)})
            return False
        with self._lock:
            self._in_flight += counted
        try:
            self.requests.put_nowait(request)
        except queue.Full:
            with self._lock:
                self._in_flight -= counted
            self.reply.emit(self.slot, cmd, {"ok": False, "error": "too many requests waiting"})
            return False
        return True

    @property
    def busy(self) -> bool:
        """An operator request is waiting or being sent."""
        with self._lock:
            return self._in_flight > 0

    def stop(self, wait_ms: int = 4000) -> None:
        self._stop = True
        with contextlib.suppress(queue.Full):
            self.requests.put_nowait(None)
        self.wait(wait_ms)

    def run(self) -> None:
        client = ControlClient(
            self.address, self.timeout_ms, self.context or zmq.Context.instance()
        )
        next_poll = 0.0
        try:
            while not self._stop:
                wait = max(0.0, next_poll - time.monotonic()) if self.poll_s > 0 else 0.5
                try:
                    request = self.requests.get(timeout=wait)
                except queue.Empty:
                    request = {"cmd": "status"} if self.poll_s > 0 else None
                if request is None or self._stop:
                    continue
                cmd = str(request.pop("cmd"))
                reply = client.request(cmd, **request)
                if not isinstance(reply, dict):
                    reply = {"ok": False, "error": f"bad reply {reply!r}"}
                reply.setdefault("ok", False)
                self.reachable = not str(reply.get("error", "")).startswith("timeout")
                if cmd == "status":
                    next_poll = time.monotonic() + self.poll_s
                elif cmd != "ping":
                    with self._lock:
                        self._in_flight -= 1
                self.reply.emit(self.slot, cmd, reply)
        finally:
            client.close()
