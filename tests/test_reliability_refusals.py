"""Refused before anything is sent, and never a window on other files: run and pedestal
arguments out of range, a script ``sleep`` too long, ``exec`` leaving the scripts' directory at
any depth (named over run control or not), secret keys readable by others."""

from __future__ import annotations

import signal
import socket
import stat

import pytest
from fake_board import FakeBoard

from agetdaq.protocol.script import ScriptError, parse_script
from agetdaq.readout.acquisition.control_handler import handle
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.cli import main
from agetdaq.readout.transport.security import create_keys

SECRET = "a-line-that-must-never-be-echoed"


@pytest.fixture
def silent_board():
    """A bound UDP socket: the test checks that nothing arrived."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        yield s


@pytest.fixture
def keep_signals():
    """The commands install their own signal handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def _nothing_sent(board: socket.socket) -> bool:
    try:
        board.recv(2048)
    except BlockingIOError:
        return True
    return False


@pytest.mark.network
@pytest.mark.parametrize(
    ("command", "argv", "message"),
    [
        ("run", ["--events", "0"], "--events must be a whole number"),
        ("run", ["--events", "-5"], "--events must be a whole number"),
        ("run", ["--seconds", "nan"], "--seconds must be finite, above 0"),
        ("run", ["--seconds", "inf"], "--seconds must be finite, above 0"),
        ("run", ["--seconds", "-1"], "--seconds must be finite, above 0"),
        ("run", ["--seconds", "0"], "--seconds must be finite, above 0"),
        ("pedestal", ["-o", "p.h5", "--events", "0"], "--events must be a whole number"),
        ("pedestal", ["-o", "p.h5", "--seconds", "nan"], "--seconds must be finite"),
        ("pedestal", ["-o", "p.h5", "--k-sigma", "nan"], "--k-sigma must be finite"),
        ("pedestal", ["-o", "p.h5", "--k-sigma", "-3"], "--k-sigma must be finite"),
        ("run", ["--metrics-port", "99999"], "--metrics-port must be 1..65535"),
        ("serve", ["--metrics-port", "0"], "--metrics-port must be 1..65535"),
    ],
)
def test_arguments_out_of_range_are_refused_before_anything_is_sent(
    silent_board, capsys, keep_signals, tmp_path, command, argv, message
):
    bec = f"127.0.0.1:{silent_board.getsockname()[1]}"
    code = main([command, "--board", bec, "--data-dir", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert _nothing_sent(silent_board)


@pytest.mark.network
def test_a_huge_sleep_is_refused_before_anything_is_sent(
    silent_board, capsys, keep_signals, tmp_path
):
    script = tmp_path / "huge.txt"
    script.write_text("sca enable 0\nsleep 100000\nsca enable 1\n")
    bec = f"127.0.0.1:{silent_board.getsockname()[1]}"
    code = main(["run", "--board", bec, "--data-dir", str(tmp_path), "--script", str(script)])
    err = capsys.readouterr().err
    assert code == 2 and "huge.txt:2: sleep must be 0..3600 s: 'sleep 100000'" in err, err
    assert "OverflowError" not in err and "Traceback" not in err
    assert _nothing_sent(silent_board)


@pytest.mark.parametrize(
    ("line", "ok"),
    [("sleep 3600", True), ("sleep 0.25", True), ("sleep 3600.5", False),
     ("sleep 1e300", False), ("sleep 99999999999999999999", False)],
)  # fmt: skip
def test_sleep_is_range_checked(line, ok):
    if ok:
        assert parse_script(f"{line}\n")[0].kind == "sleep"
    else:
        with pytest.raises(ScriptError, match="sleep"):
            parse_script(f"{line}\n")


def _tree(tmp_path):
    """data/a.txt execs ../outside (one level); data/b.txt execs sub/c.txt, which execs
    ../../outside (two levels); data/sub/link.txt is a link to the outside file."""
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{SECRET}\n")
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("version\nexec ../outside.txt\n")
    (data / "b.txt").write_text("version\nexec sub/c.txt\n")
    (data / "sub" / "c.txt").write_text("version\nexec ../../outside.txt\n")
    (data / "d.txt").write_text("exec sub/link.txt\n")
    (data / "sub" / "link.txt").symlink_to(outside)
    (data / "ok.txt").write_text("exec sub/fine.txt\n")
    (data / "sub" / "fine.txt").write_text("version\n")
    return data


@pytest.mark.parametrize("name", ["a.txt", "b.txt", "d.txt"])
def test_exec_is_confined_at_every_depth(tmp_path, name):
    data = _tree(tmp_path)
    with pytest.raises(ScriptError, match="exec leaves the scripts' directory") as err:
        parse_script(data / name, root=data)
    assert SECRET not in str(err.value)
    with pytest.raises(ScriptError, match=SECRET):  # unconfined (a local user's own files)
        parse_script(data / name)  # the file is read, and its first line shows in the error
    assert parse_script(data / "ok.txt", root=data).board_lines() == ["version"]


@pytest.mark.network
def test_run_control_cannot_make_the_daq_read_or_echo_a_file_outside(tmp_path):
    data = _tree(tmp_path)
    with FakeBoard(total_frames=0) as board:
        settings = Settings().with_daq(bec=f"127.0.0.1:{board.address[1]}", data_dir=str(data))
        acq = Acquisition(settings)
        try:
            for name in (
                "a.txt",
                "b.txt",
                "d.txt",
                "../outside.txt",
                str(tmp_path / "outside.txt"),
            ):
                reply = handle(acq, {"cmd": "configure", "script": name})
                assert reply["ok"] is False, name
                assert SECRET not in reply["error"] and "leave" in reply["error"], reply
            assert board.received == []  # refused before anything was sent
            assert handle(acq, {"cmd": "configure", "script": "ok.txt"})["ok"] is True
            assert b"version" in board.received
        finally:
            acq.close()


def test_secret_keys_are_private(tmp_path):
    keys = tmp_path / "keys"
    create_keys(keys, ("gui", "shifter"))
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    secrets = sorted(keys.glob("*.key_secret"))
    assert [p.name for p in secrets] == [
        "gui.key_secret",
        "server.key_secret",
        "shifter.key_secret",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets)
    (keys / "gui.key_secret").chmod(0o644)  # left readable by an older version: mended
    create_keys(keys, ("gui",))
    assert stat.S_IMODE((keys / "gui.key_secret").stat().st_mode) == 0o600
