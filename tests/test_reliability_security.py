"""Nobody let in: loopback control by default, CURVE with listed keys otherwise, validated
requests that cannot crash the server, paths confined to the data directory, no pickle, and a
monitoring stream that cannot change anything."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import zmq
from fake_board import FakeBoard

from agetdaq.readout.acquisition.control_handler import handle
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.cli import build_parser
from agetdaq.readout.transport.control import ControlClient, ControlServer
from agetdaq.readout.transport.security import (
    client_socket_setup,
    control_socket_setup,
    create_keys,
    is_loopback,
    stop_authenticators,
)
from agetdaq.readout.transport.stream import Subscriber

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[1]


def test_control_binds_loopback_by_default():
    args = build_parser().parse_args(["serve"])
    assert is_loopback(args.control) and args.control.startswith("tcp://127.0.0.1:")
    assert is_loopback(args.publish)
    assert build_parser().parse_args(["run"]).control is None  # no control unless asked
    with pytest.raises(ValueError, match="needs CURVE keys"):
        control_socket_setup("tcp://0.0.0.0:5555", None)


def _serve(server: ControlServer, stop: threading.Event) -> None:
    while not stop.is_set():
        server.poll(20)


class Recorder:
    """A control handler that records what reached it (a start here would start a run)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: dict) -> dict:
        self.seen.append(request["cmd"])
        return {"ok": True, "state": "running" if request["cmd"] == "start" else "idle"}


@pytest.fixture
def curve_server(tmp_path):
    """A CURVE control server on 127.0.0.1 (keys forced on) with a recording handler."""
    keys = tmp_path / "keys"
    create_keys(keys, ("gui",))
    ctx = zmq.Context()
    setup = control_socket_setup("tcp://127.0.0.1:*", keys, context=ctx)
    assert setup is not None
    recorder = Recorder()
    server = ControlServer("tcp://127.0.0.1:*", recorder, context=ctx, configure_socket=setup)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, stop))
    thread.start()
    yield SimpleNamespace(address=server.address, keys=keys, ctx=ctx, recorder=recorder)
    stop.set()
    thread.join(5)
    server.close()
    stop_authenticators()
    ctx.term()


def test_unauthenticated_and_unknown_clients_cannot_start_or_stop(curve_server, tmp_path):
    s = curve_server
    plain = ControlClient(s.address, timeout_ms=700, context=s.ctx)
    assert plain.request("start", run_type="background")["ok"] is False
    assert plain.request("stop")["ok"] is False
    plain.close()
    strangers = tmp_path / "strangers"  # a well-formed key pair that is not in keys/clients
    create_keys(strangers, ("gui",))
    (strangers / "server.key").unlink()
    (strangers / "server.key").write_bytes((s.keys / "server.key").read_bytes())
    unknown = ControlClient(
        s.address, 700, s.ctx, configure_socket=client_socket_setup(strangers, "gui")
    )
    assert unknown.request("start", run_type="background")["ok"] is False
    assert unknown.request("stop")["ok"] is False
    unknown.close()
    assert s.recorder.seen == []  # nothing reached the handler
    allowed = ControlClient(
        s.address, 5000, s.ctx, configure_socket=client_socket_setup(s.keys, "gui")
    )
    assert allowed.request("start", run_type="background")["state"] == "running"
    allowed.close()
    assert s.recorder.seen == ["start"]


@pytest.fixture
def plain_server():
    ctx = zmq.Context()
    handled: list[dict] = []

    def handler(request: dict) -> dict:
        handled.append(request)
        if request["cmd"] == "stop":
            raise PermissionError("data directory not writable")
        return {"ok": True}

    server = ControlServer("tcp://127.0.0.1:*", handler, context=ctx)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(server, stop))
    thread.start()
    yield SimpleNamespace(address=server.address, ctx=ctx, handled=handled)
    stop.set()
    thread.join(5)
    server.close()
    ctx.term()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 30000 + b"]" * 30000,  # nesting deep enough to break the JSON parser
        b'{"cmd": "start", "run_type": "background", "seconds": NaN}',
        b'{"cmd": "start", "run_type": "background", "seconds": Infinity}',
        b'{"cmd": "start", "run_type": "background", "events": 1e400}',
        b'{"cmd": "mask", "strips": [1, 2.5]}',
        b'{"cmd": "configure", "script": ""}',
        b'{"cmd": "reference", "gain_adc": -1}',
        b"\x80\x81",
        b"null",
    ],
)
def test_malformed_requests_get_an_answer_and_the_server_lives(plain_server, raw):
    s = plain_server
    req = s.ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(s.address)
    req.send(raw)
    assert req.poll(5000), "no answer: the server is stuck or dead"
    assert json.loads(req.recv())["ok"] is False
    req.close()
    assert s.handled == []
    assert ControlClient(s.address, 5000, s.ctx).request("ping")["ok"] is True


def test_a_failing_handler_still_answers(plain_server):
    client = ControlClient(plain_server.address, 5000, plain_server.ctx)
    reply = client.request("stop")
    assert reply["ok"] is False and "not writable" in reply["error"]
    assert client.request("status")["ok"] is True  # the REP socket is not stuck
    client.close()


def test_oversized_request_is_refused_without_harm(plain_server):
    s = plain_server
    big = s.ctx.socket(zmq.REQ)
    big.setsockopt(zmq.LINGER, 0)
    big.connect(s.address)
    big.send(json.dumps({"cmd": "start", "comment": "x" * 200_000}).encode())
    assert not big.poll(500)  # ZeroMQ drops the peer (MAXMSGSIZE)
    big.close()
    assert ControlClient(s.address, 5000, s.ctx).request("ping")["ok"] is True
    assert s.handled == [{"cmd": "ping"}]


def test_script_paths_from_control_stay_in_the_data_directory(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "quiet.txt").write_text("eof_on_eoe 1\n")
    configured: list[str] = []
    acq = SimpleNamespace(
        data_dir=tmp_path,
        state="idle",
        configure=lambda script, root=None: configured.append(script),
        status=lambda: {"state": "configured"},
    )
    for bad in ("/etc/passwd", "../../etc/passwd", "mine/../../x.txt", "../run"):
        reply = handle(acq, {"cmd": "configure", "script": bad})
        assert reply["ok"] is False and "leaves the data directory" in reply["error"], bad
    assert configured == []
    assert handle(acq, {"cmd": "configure", "script": "run"})["ok"]
    assert handle(acq, {"cmd": "configure", "script": "mine/quiet.txt"})["ok"]
    assert configured == ["run", str(tmp_path / "mine" / "quiet.txt")]


FORBIDDEN = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|dill|shelve|marshal|joblib)\b"
    r"|pickle\.loads?\(|allow_pickle\s*=\s*True|recv_pyobj|send_pyobj|yaml\.load\("
    r"|(?<![\w.])eval\(|(?<![\w.])exec\(",
    re.MULTILINE,
)


def test_no_pickle_anywhere():
    files = [
        p
        for d in ("protocol", "readout", "gui", "tools", "benchmarks", "tests")
        for p in (ROOT / d).rglob("*.py")
        if p.name != Path(__file__).name
    ]
    assert len(files) > 50
    hits = [f"{p}: {m.group(0)!r}" for p in files for m in FORBIDDEN.finditer(p.read_text())]
    assert hits == []


def test_a_stream_subscriber_cannot_change_anything(tmp_path):
    script = tmp_path / "tiny.txt"
    script.write_text("eof_on_eoe 1\n")
    with FakeBoard(total_frames=0) as board:
        settings = Settings().with_daq(bec=f"127.0.0.1:{board.address[1]}", data_dir=str(tmp_path))
        acq = Acquisition(settings, publish="tcp://127.0.0.1:*")
        try:
            acq.configure(str(script))
            sent = acq.link.commands_sent
            address = acq.publisher.address
            ctx = zmq.Context.instance()
            attacker = ctx.socket(zmq.SUB)  # subscriptions are the only thing a SUB can send
            attacker.setsockopt(zmq.LINGER, 0)
            for topic in (b"", b"start", b'{"cmd": "start", "run_type": "background"}'):
                attacker.setsockopt(zmq.SUBSCRIBE, topic)
            attacker.connect(address)
            req = ctx.socket(zmq.REQ)  # a control client pointed at the stream by mistake
            req.setsockopt(zmq.LINGER, 0)
            req.connect(address)
            req.send(json.dumps({"cmd": "start", "run_type": "background"}).encode())
            host, port = address[len("tcp://") :].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=5) as raw:
                raw.sendall(b'{"cmd": "start", "run_type": "background"}\n' + bytes(range(256)))
            viewer = Subscriber(address, topics=("status",))
            got = None
            end = time.monotonic() + 10
            while time.monotonic() < end and got is None:
                acq.poll()
                got = viewer.recv(100)
            assert got is not None  # the stream still serves its readers
            assert not req.poll(200)  # nobody answers a request on the stream
            assert acq.state == "configured" and acq.run.number == 0
            assert acq.link.commands_sent == sent  # nothing went to the board
            assert not (tmp_path / "runlog.jsonl").exists()
            attacker.close(linger=0)
            req.close(linger=0)
            viewer.close()
        finally:
            acq.close()
