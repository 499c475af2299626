"""Bad input is refused before anything reaches the board: a clear message and a non-zero exit.

(tests/test_cli_daq.py covers a bad script line, a missing settings file, a bad address and an
unreachable board.) The commands run in-process through the ``agetdaq`` dispatcher; the board is
a UDP socket that records anything sent to it.
"""

from __future__ import annotations

import socket

import pytest
import zmq
from conftest import free_tcp_port

from agetdaq.readout.cli import main

pytestmark = pytest.mark.network


@pytest.fixture
def board():
    """A silent board: a bound UDP socket; the test checks that nothing arrived."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        yield s


def _nothing_sent(board: socket.socket) -> bool:
    try:
        board.recv(2048)
    except BlockingIOError:
        return True
    return False


def _agetdaq(capsys, board, *argv: str, command: str = "run") -> tuple[int, str]:
    bec = f"127.0.0.1:{board.getsockname()[1]}"
    code = main([command, "--board", bec, *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[daq]\nnosuch = 1\n", "bad.toml: daq.nosuch: unknown key"),
        ("[daq]\nbatch = 'many'\n", "bad.toml: daq.batch: expected an integer"),
        ("[daq]\nbec = 1122\n", "bad.toml: daq.bec: expected a string"),
        ("[daq]\nbec = 'host:port'\n", "bad.toml: daq.bec: bad board address"),
        ("[writer]\nswmr = 1\n", "bad.toml: writer.swmr: expected true or false"),
        ("[credit]\nwindow = 0\n", "bad.toml: credit.window: 0 is below the minimum 1"),
        ("[daq]\nstore_waveforms = 'some'\n", "bad.toml: daq.store_waveforms: 'some' is not one"),
        ("[dqa]\nbec = '127.0.0.1:1122'\n", "bad.toml: dqa: unknown key"),
        ("[daq\nbec = 1\n", "bad.toml: not valid TOML"),
        ("[daq]\nheartbeat_s = 0.0\n", "bad.toml: daq.heartbeat_s: must be > 0.0 s, got 0.0 s"),
        ("[daq]\nboard_timeout_s = inf\n", "bad.toml: daq.board_timeout_s: expected a finite"),
        ("[daq]\nstatus_interval_s = nan\n", "bad.toml: daq.status_interval_s: expected a finite"),
        ("[daq]\nbatch = 0\n", "bad.toml: daq.batch: 0 is below the minimum 1"),
        ("[writer]\nchunk_bytes = 1099511627776\n", "bad.toml: writer.chunk_bytes: 1099511627776"),
        ("[writer]\nflush_interval_s = -1.0\n", "bad.toml: writer.flush_interval_s: must be > 0"),
        ("[processing]\nk_hit = -5\n", "bad.toml: processing.k_hit: must be > 0.0"),
        ("[processing.trigger]\nenergy_min = nan\n", "bad.toml: processing.trigger.energy_min"),
        ("[processing.trigger]\nclasses = [9]\n", "bad.toml: processing.trigger.classes[0]"),
    ],
)
def test_bad_settings_content(tmp_path, capsys, board, toml, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    code, err = _agetdaq(capsys, board, "--data-dir", str(tmp_path), "--config", str(cfg))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert _nothing_sent(board)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (
            "card,chip,aget_channel,axis,strip,position_mm\n0,0,1,X,0,0.0\n0,0,1,X,1,0.5\n",
            "already mapped",
        ),
        ("card,chip,channel\n0,0,1\n", "bad.csv"),
        ("card,chip,aget_channel,axis,strip,position_mm\n0,0,99,X,0,0.0\n", "bad.csv:2"),
    ],
)
def test_bad_mapping_file(tmp_path, capsys, board, csv, message):
    mapping = tmp_path / "bad.csv"
    mapping.write_text(csv)
    code, err = _agetdaq(capsys, board, "--data-dir", str(tmp_path), "--mapping", str(mapping))
    assert code != 0
    assert message in err
    assert _nothing_sent(board)


def test_missing_mapping_file(tmp_path, capsys, board):
    code, err = _agetdaq(capsys, board, "--data-dir", str(tmp_path), "--mapping", "NOPE.csv")
    assert code != 0 and "NOPE.csv" in err
    assert _nothing_sent(board)


@pytest.fixture
def taken():
    """A TCP port already bound by another ZeroMQ socket."""
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUB)
    port = free_tcp_port()
    s.bind(f"tcp://127.0.0.1:{port}")
    yield f"tcp://127.0.0.1:{port}"
    s.close(linger=0)
    ctx.term()


def test_publish_port_in_use(tmp_path, capsys, board, taken):
    code, err = _agetdaq(capsys, board, "--data-dir", str(tmp_path), "--publish", taken)
    assert code != 0
    assert "Address already in use" in err and taken in err
    assert _nothing_sent(board)


@pytest.mark.parametrize("command", ["run", "serve"])
def test_control_port_in_use(tmp_path, capsys, board, taken, command):
    code, err = _agetdaq(
        capsys, board, "--data-dir", str(tmp_path), "--control", taken, command=command
    )
    assert code != 0
    assert "Address already in use" in err and taken in err
    assert _nothing_sent(board)


def test_metrics_port_in_use(tmp_path, capsys, board):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code, err = _agetdaq(
            capsys, board, "--data-dir", str(tmp_path), "--metrics-port", str(port)
        )
    assert code != 0
    assert "in use" in err
    assert _nothing_sent(board)


@pytest.mark.parametrize("command", ["run", "serve"])
def test_control_beyond_loopback_needs_keys(tmp_path, capsys, board, command):
    code, err = _agetdaq(
        capsys,
        board,
        "--data-dir",
        str(tmp_path),
        "--control",
        f"tcp://0.0.0.0:{free_tcp_port()}",
        command=command,
    )
    assert code != 0
    assert "needs CURVE keys" in err
    assert _nothing_sent(board)
