"""Run control over ZeroMQ: a REP server with validated JSON requests, and its client.

Requests are JSON objects ``{"cmd": NAME, ...}``; replies are ``{"ok": bool, ...}`` with ``error``
when ``ok`` is false. Every request is checked against ``SCHEMA`` (names, types, ranges) before the
handler sees it; nothing is ever unpickled. The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import zmq

log = logging.getLogger(__name__)

RUN_TYPES = ("pedestal", "calibration", "background")
MAX_REQUEST_BYTES = 64 * 1024

# cmd -> {field: (type, required, check)}
_Field = tuple[type | tuple[type, ...], bool, Callable[[Any], bool] | None]
SCHEMA: dict[str, dict[str, _Field]] = {
    "status": {},
    "configure": {
        "script": (str, False, lambda s: 0 < len(s) <= 256),
        "scenario": (str, False, lambda s: 0 < len(s) <= 256),
    },
    "start": {
        "run_type": (str, True, lambda s: s in RUN_TYPES),
        "comment": (str, False, lambda s: len(s) <= 2000),
        "events": (int, False, lambda n: 0 < n <= 10**12),
        "seconds": ((int, float), False, lambda t: 0 < t <= 10**8),
    },
    "stop": {},
    "mask": {
        "strips": (list, True, lambda v: len(v) <= 4096 and all(type(i) is int for i in v)),
        "masked": (bool, False, None),
    },
    "reference": {"gain_adc": ((int, float), True, lambda g: 0 < g < 1e6)},
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
        raw = self.socket.recv()
        try:
            request = validate(json.loads(raw))
        except (RequestError, ValueError, RecursionError) as exc:  # incl. JSON, UTF-8 errors
            self.rejected += 1
            reply = {"ok": False, "error": f"bad request: {str(exc)[:200]}"}
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
