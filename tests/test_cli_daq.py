"""The DAQ commands as a user runs them: `agetdaq run` stopped by SIGINT, `agetdaq serve` driven
by run control, and refusals before anything reaches the board."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import free_tcp_port

from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.control import ControlClient
from agetdaq.readout.transport.stream import Subscriber

pytestmark = pytest.mark.network
AGETDAQ = [sys.executable, "-m", "agetdaq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def emulator():
    emu = Emulator("calibration", port=0, seed=11).start()
    yield emu
    emu.stop()


def test_sigint_mid_run_exits_zero_with_a_valid_file(emulator, tmp_path):
    out = tmp_path / "run.h5"
    cmd = [
        *AGETDAQ,
        "run",
        "--board",
        f"127.0.0.1:{emulator.address[1]}",
        "--data-dir",
        str(tmp_path),
        "--output",
        str(out),
        "--seconds",
        "60",
        "--json",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    try:
        end = time.monotonic() + 60
        events = 0
        while time.monotonic() < end and events < 50:
            time.sleep(0.5)
            if out.exists():
                try:
                    with RunFile(out) as f:
                        events = f.n_events
                except Exception:
                    events = 0
        assert events >= 50, "no data reached the file"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr.decode()[-2000:]
    summary = json.loads(stdout)
    assert summary["stop_reason"].startswith("interrupted")
    with RunFile(out) as f:
        assert f.n_events >= events
        assert f.final()["stop_reason"].startswith("interrupted")


def test_serve_follows_run_control(emulator, tmp_path):
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    stream = f"tcp://127.0.0.1:{free_tcp_port()}"
    cmd = [
        *AGETDAQ,
        "serve",
        "--board",
        f"127.0.0.1:{emulator.address[1]}",
        "--control",
        control,
        "--publish",
        stream,
        "--data-dir",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    client = ControlClient(control, timeout_ms=30000)
    sub = Subscriber(stream, topics=("status",))
    try:
        assert client.request("status")["state"] == "idle"
        bad = client.request("start", run_type="physics")
        assert bad["ok"] is False and "out of range" in bad["error"]
        started = client.request("start", run_type="calibration", comment="ctl test", wait=True)
        assert started["ok"] and started["state"] == "running", started
        time.sleep(2.0)
        status = client.request("status")
        assert status["events"] > 0 and status["run_type"] == "calibration"
        stopped = client.request("stop", wait=True)
        assert stopped["ok"] and stopped["state"] == "configured"
        assert client.request("stop")["ok"] is False  # nothing to stop
        states = set()
        end = time.monotonic() + 5
        while time.monotonic() < end and "configured" not in states:
            msg = sub.recv(200)
            if msg is not None:
                states.add(msg.header["state"])
        assert "configured" in states
        run_file = tmp_path / "R00001_calibration.h5"
        with RunFile(run_file) as f:
            assert f.n_events > 0
            assert f.metadata()["comment"] == "ctl test"
        log = [json.loads(line) for line in (tmp_path / "runlog.jsonl").read_text().splitlines()]
        assert [r["event"] for r in log] == ["allocate", "start", "end"]
    finally:
        client.close()
        sub.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--script", "BADSCRIPT"], "no such command script"),
        (["--config", "MISSING.toml"], "cannot read settings"),
        (["--board", "127.0.0.1:notaport"], "port is not a number"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(tmp_path, extra, message):
    cmd = [*AGETDAQ, "run", "--board", "127.0.0.1:9", "--data-dir", str(tmp_path), *extra]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, env=ENV)
    assert proc.returncode != 0
    assert message in proc.stderr.decode()


def test_bad_script_line_named_and_nothing_sent(tmp_path, udp_port):
    import socket

    script = tmp_path / "bad.txt"
    script.write_text("sca cnt 0x200\naget * gain * 0x9\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as board:
        board.bind(("127.0.0.1", udp_port))
        board.settimeout(0.5)
        cmd = [
            *AGETDAQ,
            "run",
            "--board",
            f"127.0.0.1:{udp_port}",
            "--data-dir",
            str(tmp_path),
            "--script",
            str(script),
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=60, env=ENV)
        with pytest.raises(TimeoutError):
            board.recvfrom(2048)
    assert proc.returncode != 0
    assert "bad.txt:2" in proc.stderr.decode()


def test_unreachable_board_times_out_naming_the_address(tmp_path, udp_port):
    cmd = [*AGETDAQ, "run", "--board", f"127.0.0.1:{udp_port}", "--data-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, timeout=60, env=ENV)
    assert proc.returncode == 5  # board lost (docs/RELIABILITY.md, exit codes)
    assert f"127.0.0.1:{udp_port}" in proc.stderr.decode()
    assert "does not answer" in proc.stderr.decode()


def test_pedestal_command_measures_and_uploads(tmp_path):
    with Emulator("pedestal", port=0, seed=2) as emu:
        cmd = [
            *AGETDAQ,
            "pedestal",
            "--board",
            f"127.0.0.1:{emu.address[1]}",
            "--data-dir",
            str(tmp_path),
            "-o",
            str(tmp_path / "ped.h5"),
            "--events",
            "100",
            "--upload",
            "--json",
        ]
        proc = subprocess.run(cmd, capture_output=True, timeout=120, env=ENV)
        board = emu.card.board
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        summary = json.loads(proc.stdout)
        assert summary["events"] >= 100
        assert 200 < summary["mean_adc"] < 300 and 1 < summary["noise_adc"] < 10
        assert summary["uploaded_commands"] == 2 * 240
        # the equalised pass holds its own events only: none left in the card by the raw pass
        assert summary["upload_check"]["strips_off"] == 0, summary["upload_check"]
        with RunFile(tmp_path / "ped.h5") as f:
            assert next(iter(f.iter_events())).event_count == 0
        physics_ped = emu.card.physics.pedestal
    # the board now equalises each strip's baseline at 250: ped = 250 - round(mean)
    from agetdaq.protocol.mapping import StripMapping

    m = StripMapping.default()
    idx = m.daq_channel()
    got = np.asarray(board.settings.ped)[m.chip, idx]
    want = 250 - np.round(physics_ped[m.chip, m.aget_channel - 1])
    assert np.mean(np.abs(got - want) <= 1) > 0.95
