"""Run control over ZeroMQ: validated JSON requests, the servers that answer them, and a client.

Requests are JSON objects ``{"cmd": NAME, ...}``; replies are ``{"ok": bool, ...}`` with ``error``
when ``ok`` is false. Every request is checked against ``SCHEMA`` (names, types, ranges) before the
handler sees it; nothing is ever unpickled. The servers bind 127.0.0.1 unless told otherwise.

Two serving models. :class:`ControlServer` (REP) answers one request per ``poll()`` of its owner's
loop. :class:`ControlService` (ROUTER) runs in a thread of its own that does nothing but ZeroMQ,
validation and the handler's quick answer, so data-path work cannot hold it up (ZeroMQ releases
the GIL while it waits; the data path's kernels release it while they run). Its handler answers at
once, or returns a :class:`~concurrent.futures.Future` whose reply is sent when it is done while
the service goes on answering other clients (the request's ``wait`` field asks for that; without
it a long command is acknowledged with ``pending``: see acquisition/commands.py).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import zmq

log = logging.getLogger(__name__)

RUN_TYPES = ("pedestal", "calibration", "background")
# the shipped command script each run type starts with unless one is named (calibration runs keep
# the card's zero suppression with the FPN channels whole, ~17 kB per event: docs/CALIBRATION.md)
RUN_TYPE_SCRIPT = {
    "pedestal": "pedestal_data",
    "calibration": "calibration-zs",
    "background": "run",
}
MAX_REQUEST_BYTES = 64 * 1024

# cmd -> {field: (type, required, check)}
_Field = tuple[type | tuple[type, ...], bool, Callable[[Any], bool] | None]
SCHEMA: dict[str, dict[str, _Field]] = {
    "status": {},
    "configure": {
        "script": (str, False, lambda s: 0 < len(s) <= 256),
        "scenario": (str, False, lambda s: 0 < len(s) <= 256),
        "wait": (bool, False, None),  # reply when done (default: acknowledge a long command)
    },
    "start": {
        "run_type": (str, True, lambda s: s in RUN_TYPES),
        "comment": (str, False, lambda s: len(s) <= 2000),
        "events": (int, False, lambda n: 0 < n <= 10**12),
        "seconds": ((int, float), False, lambda t: 0 < t <= 10**8),
        "wait": (bool, False, None),
    },
    "stop": {"wait": (bool, False, None)},
    # a pedestal run; ``upload``: raw run, ped/thr to the card, run with its equalisation on
    # (its table then in force; acquisition/pedestal_upload.py). Limits per pass.
    "pedestal": {
        "upload": (bool, False, None),
        "events": (int, False, lambda n: 0 < n <= 10**7),
        "seconds": ((int, float), False, lambda t: 0 < t <= 10**5),
        "k_sigma": ((int, float), False, lambda k: 0 < k <= 100),
        "comment": (str, False, lambda s: len(s) <= 2000),
        "wait": (bool, False, None),
    },
    "mask": {
        "strips": (list, True, lambda v: len(v) <= 4096 and all(type(i) is int for i in v)),
        "masked": (bool, False, None),
        "wait": (bool, False, None),
    },
    "reference": {
        "gain_adc": ((int, float), True, lambda g: 0 < g < 1e6),
        "wait": (bool, False, None),
    },
    "ping": {},
}


class RequestError(ValueError):
    """A control request that does not match the schema."""


def validate(request: object) -> dict:
    """Check a decoded request against SCHEMA; returns it or raises RequestError."""
    if not isinstance(request, dict):
        raise RequestError("request must be a JSON object")
    cmd = request.get("cmd")
    if not isinstance(cmd, str) or cmd not in SCHEMA:
        raise RequestError(f"unknown command {cmd!r}; known: {', '.join(sorted(SCHEMA))}")
    fields = SCHEMA[cmd]
    for key in request:
        if key != "cmd" and key not in fields:
            raise RequestError(f"{cmd}: unexpected field {key!r}")
    for key, (types, required, check) in fields.items():
        if key not in request:
            if required:
                raise RequestError(f"{cmd}: missing field {key!r}")
            continue
        value = request[key]
        if isinstance(value, bool) and types is not bool:
            raise RequestError(f"{cmd}: field {key!r} has the wrong type")
        if not isinstance(value, types):
            raise RequestError(f"{cmd}: field {key!r} has the wrong type")
        if check is not None and not check(value):
            raise RequestError(f"{cmd}: field {key!r} out of range: {value!r}")
    return request


class ControlServer:
    """REP socket; ``poll()`` answers at most one request with ``handler(request) -> dict``."""

    def __init__(
        self,
        address: str,
        handler: Callable[[dict], dict],
        context: zmq.Context | None = None,
        configure_socket: Callable[[zmq.Socket], None] | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        if configure_socket is not None:
            configure_socket(self.socket)
        self.socket.bind(address)
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.handler = handler
        self.rejected = 0

    def poll(self, timeout_ms: int = 0) -> bool:
        if not self.socket.poll(timeout_ms):
            return False
        request, reply = _decode(self.socket.recv())
        if request is None:
            self.rejected += 1
        else:
            try:
                reply = self.handler(request)
            except Exception as exc:  # a REP socket must answer, or it is stuck for good
                log.exception("control request %r failed", request.get("cmd"))
                reply = {"ok": False, "error": f"{request['cmd']} failed: {exc}"}
        self.socket.send(json.dumps(reply, default=str).encode())
        return True

    def close(self) -> None:
        self.socket.close(linger=0)


def _decode(raw: bytes) -> tuple[dict | None, dict | None]:
    """(valid request, None) or (None, the refusal to send back)."""
    try:
        return validate(json.loads(raw)), None
    except (RequestError, ValueError, RecursionError) as exc:  # incl. JSON, UTF-8 errors
        return None, {"ok": False, "error": f"bad request: {str(exc)[:200]}"}


def _failed(request: dict, exc: BaseException) -> dict:
    log.error("control request %r failed: %s", request.get("cmd"), exc)
    return {"ok": False, "error": f"{request['cmd']} failed: {exc}"}


class ControlService:
    """ROUTER socket served by a thread of its own (module docstring). ``handler(request)``
    returns the reply, or a Future of it; it runs in the service thread and must be quick."""

    def __init__(
        self,
        address: str,
        handler: Callable[[dict], dict | Future],
        context: zmq.Context | None = None,
        configure_socket: Callable[[zmq.Socket], None] | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        if configure_socket is not None:
            configure_socket(self.socket)
        self.socket.bind(address)  # here: a port in use is refused before anything starts
        self.address = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.handler = handler
        self.rejected = 0
        self.answered = 0
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # (envelope, reply) of futures
        self._parked = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlService:
        self._thread = threading.Thread(target=self._run, name="run-control", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self.socket.close(linger=0)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self.socket.poll(10 if self._parked else 50):
                    self._answer(self.socket.recv_multipart())
                while not self._done.empty():
                    envelope, reply = self._done.get()
                    self._parked -= 1
                    self._send(envelope, reply)
        finally:
            self.socket.close(linger=0)

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) < 3 or frames[-2] != b"":
            return  # not a REQ envelope: nothing to answer
        envelope, raw = frames[:-1], frames[-1]
        request, reply = _decode(raw)
        if request is None:
            self.rejected += 1
            self._send(envelope, reply)
            return
        try:
            reply = self.handler(request)
        except Exception as exc:  # every request gets an answer
            reply = _failed(request, exc)
        if isinstance(reply, Future):
            self._parked += 1
            reply.add_done_callback(lambda f: self._done.put((envelope, _outcome(request, f))))
            return
        self._send(envelope, reply)

    def _send(self, envelope: list[bytes], reply: dict) -> None:
        try:
            self.socket.send_multipart([*envelope, json.dumps(reply, default=str).encode()])
            self.answered += 1
        except zmq.ZMQError as exc:  # the client went away: nothing to do
            log.debug("control reply not sent: %s", exc)


def _outcome(request: dict, fut: Future) -> dict:
    exc = fut.exception()
    return _failed(request, exc) if exc is not None else fut.result()


class ControlClient:
    """REQ client that survives a dead server: on timeout the socket is rebuilt (lazy pirate)."""

    def __init__(
        self,
        address: str,
        timeout_ms: int = 2000,
        context: zmq.Context | None = None,
        configure_socket: Callable[[zmq.Socket], None] | None = None,
    ) -> None:
        self.context = context or zmq.Context.instance()
        self.address = address
        self.timeout_ms = timeout_ms
        self.configure_socket = configure_socket
        self.socket: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        if self.configure_socket is not None:
            self.configure_socket(sock)
        sock.connect(self.address)
        return sock

    def request(self, cmd: str, **fields: object) -> dict:
        """Send one request; returns the reply, or ``{"ok": False, "error": "timeout"}``."""
        if self.socket is None:
            self.socket = self._connect()
        self.socket.send(json.dumps({"cmd": cmd, **fields}).encode())
        if not self.socket.poll(self.timeout_ms):
            self.socket.close(linger=0)
            self.socket = None
            return {"ok": False, "error": f"timeout: no answer from {self.address}"}
        try:
            return json.loads(self.socket.recv())
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"bad reply: {exc}"}

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
