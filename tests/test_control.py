"""Run-control requests: schema validation and the REQ/REP round trip, with a dead server."""

from __future__ import annotations

import json
import threading

import pytest
import zmq

from agetdaq.readout.transport.control import (
    ControlClient,
    ControlServer,
    ControlService,
    RequestError,
    validate,
)


@pytest.mark.parametrize(
    "request_",
    [
        {"cmd": "start", "run_type": "background", "comment": "night"},
        {"cmd": "start", "run_type": "pedestal", "events": 100},
        {"cmd": "stop"},
        {"cmd": "mask", "strips": [1, 2, 130], "masked": True},
    ],
)
def test_valid_requests_pass(request_):
    assert validate(request_) is request_


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ([1, 2], "JSON object"),
        ({"cmd": "reboot"}, "unknown command"),
        ({"cmd": "start"}, "missing field 'run_type'"),
        ({"cmd": "start", "run_type": "physics"}, "out of range"),
        ({"cmd": "start", "run_type": "pedestal", "events": "10"}, "wrong type"),
        ({"cmd": "start", "run_type": "pedestal", "events": True}, "wrong type"),
        ({"cmd": "start", "run_type": "pedestal", "path": "/etc/passwd"}, "unexpected field"),
        ({"cmd": "mask", "strips": [1, "x"]}, "out of range"),
    ],
)
def test_invalid_requests_rejected(request_, message):
    with pytest.raises(RequestError, match=message):
        validate(request_)


def test_round_trip_and_rejection_over_zmq():
    ctx = zmq.Context()
    seen: list[dict] = []

    def handler(req: dict) -> dict:
        seen.append(req)
        return {"ok": True, "state": "running" if req["cmd"] == "start" else "idle"}

    server = ControlServer("tcp://127.0.0.1:*", handler, context=ctx)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            server.poll(20)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    client = ControlClient(server.address, timeout_ms=2000, context=ctx)
    assert client.request("start", run_type="calibration")["state"] == "running"
    bad = client.request("start", run_type="nope")
    assert bad["ok"] is False and "out of range" in bad["error"]
    assert [r["cmd"] for r in seen] == ["start"]
    raw = ctx.socket(zmq.REQ)
    raw.connect(server.address)
    raw.send(b"\xff garbage")
    assert raw.poll(2000)
    assert json.loads(raw.recv())["ok"] is False
    raw.close(linger=0)
    stop.set()
    t.join(2)
    server.close()
    dead = client.request("status")  # nobody answers any more
    assert dead["ok"] is False and "timeout" in dead["error"]
    client.close()
    ctx.term()


def test_service_answers_from_its_own_thread_while_a_command_runs():
    """ControlService: a command whose reply is a Future (a long one the caller waits for) does
    not hold up the other clients; a quick reply comes at once; a failing handler still answers."""
    from concurrent.futures import Future

    ctx = zmq.Context()
    slow: Future = Future()

    def handler(req: dict) -> dict | Future:
        if req["cmd"] == "stop":
            return slow  # done by someone else, later
        if req["cmd"] == "mask":
            raise RuntimeError("boom")
        return {"ok": True, "state": "running"}

    service = ControlService("tcp://127.0.0.1:*", handler, context=ctx).start()
    waiting = ControlClient(service.address, timeout_ms=5000, context=ctx)
    other = ControlClient(service.address, timeout_ms=5000, context=ctx)
    result: dict = {}
    t = threading.Thread(target=lambda: result.update(waiting.request("stop", wait=True)))
    t.start()
    try:
        for _ in range(5):  # answered while the stop is still in progress
            assert other.request("status") == {"ok": True, "state": "running"}
        assert not result
        failed = other.request("mask", strips=[1])
        assert failed["ok"] is False and "boom" in failed["error"]
        assert other.request("start", run_type="physics")["ok"] is False  # refused by the schema
        slow.set_result({"ok": True, "state": "configured"})
        t.join(5)
        assert result == {"ok": True, "state": "configured"}
    finally:
        waiting.close()
        other.close()
        service.close()
        ctx.term()
