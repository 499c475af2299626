"""A detector's real life, with real processes, real signals and a real board on 127.0.0.1:
a run after a DAQ killed mid-run holds only its own events; a board that falls silent ends the
run (board lost: its own exit code) in ``run`` and in ``serve``; a full disk in ``serve`` is an
error state the next start leaves; SIGHUP stops a run like SIGTERM; a signal during configure
creates no run; an event limit is exact."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_tcp_port

from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.cli.daq_common import run_result
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.control import ControlClient

pytestmark = pytest.mark.network
AGETDAQ = [sys.executable, "-m", "agetdaq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
FAST = "[daq]\nheartbeat_s = 0.5\nboard_timeout_s = 2.0\n"  # board lost after 2 s of silence
SILENCE_S = 6.0
# `serve` with a disk that is full while FLAG exists (h5py's writes fail with ENOSPC)
ENOSPC_SERVE = """
import errno, os, sys
import h5py
flag = sys.argv.pop(1)
setitem = h5py.Dataset.__setitem__
def maybe_full(self, key, value):
    if os.path.exists(flag):
        raise OSError(errno.ENOSPC, "No space left on device")
    return setitem(self, key, value)
h5py.Dataset.__setitem__ = maybe_full
from agetdaq.readout.store import chunks  # Blosc tables: chunks written directly by a thread
write_chunk = chunks.write_chunk
def chunk_maybe_full(*args):
    if os.path.exists(flag):
        raise OSError(errno.ENOSPC, "No space left on device")
    return write_chunk(*args)
chunks.write_chunk = chunk_maybe_full
from agetdaq.readout.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def emu():
    e = Emulator("calibration", port=0, seed=21).start()
    yield e
    e.stop()


def bec(emu: Emulator) -> str:
    return f"127.0.0.1:{emu.address[1]}"


def emu_command(emu: Emulator, line: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.sendto(line.encode(), emu.address)
        return s.recv(2048)[6:].decode("ascii", "replace")


def wait_answering(emu: Emulator, limit_s: float = 30.0) -> None:
    """Until the board answers again (after an injected silence)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            emu_command(emu, "version")
            return
        except TimeoutError:
            continue
    raise AssertionError("the emulator never answered again")


def events_in(path: Path) -> int:
    try:
        with RunFile(path) as f:
            return f.n_events
    except Exception:  # not there yet, or caught between creation and SWMR mode
        return 0


def wait_events(path: Path, n: int, proc: subprocess.Popen, limit_s: float = 120.0) -> None:
    end = time.monotonic() + limit_s
    while events_in(path) < n:
        assert proc.poll() is None, f"the DAQ ended early (rc {proc.returncode})"
        assert time.monotonic() < end, f"no data reached {path}"
        time.sleep(0.2)


def run_cmd(emu: Emulator, tmp: Path, out: Path, *extra: str) -> list[str]:
    return [
        *AGETDAQ,
        "run",
        "--board",
        bec(emu),
        "--data-dir",
        str(tmp),
        "-o",
        str(out),
        "--json",
        *extra,
    ]


def runlog(tmp: Path) -> list[dict]:
    path = tmp / "runlog.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_after_a_killed_one_holds_only_its_own_events_and_sighup_stops_it(emu, tmp_path):
    killed = tmp_path / "killed.h5"
    proc = subprocess.Popen(
        run_cmd(emu, tmp_path, killed, "--seconds", "600"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    try:
        wait_events(killed, 20, proc)
    finally:
        proc.kill()  # SIGKILL: the card goes on triggering into its memory
        proc.wait(30)
    with RunFile(killed) as f:
        killed_counts = f.events()["event_count"]
    time.sleep(1.0)
    nxt = tmp_path / "next.h5"
    t_start = time.monotonic()
    proc = subprocess.Popen(
        run_cmd(emu, tmp_path, nxt, "--seconds", "600"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        wait_events(nxt, 50, proc)
        proc.send_signal(signal.SIGHUP)  # a closed terminal: a clean stop, as SIGTERM
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    elapsed = time.monotonic() - t_start
    text = err.decode()
    assert proc.returncode == 0, text[-3000:]
    summary = json.loads(out)
    assert summary["stop_reason"] == "interrupted (signal)" and summary["state"] == "configured"
    assert "still held" in text  # the card held the killed run's events: drained, discarded
    assert "restarted" not in text and summary["counters"]["builder"]["restarts"] == 0
    with RunFile(nxt) as f:
        ev = f.events()
        assert f.final()["stop_reason"] == "interrupted (signal)"
    counts = ev["event_count"].astype(np.int64)
    assert counts[0] == 0 and (np.diff(counts) > 0).all()  # its own counter, from 0
    assert ev["timestamp"].max() * 20e-9 < elapsed  # its own clock, cleared at configure
    assert len(ev) == summary["events_in_file"] >= 50
    assert killed_counts.max() > 0
    end = [r for r in runlog(tmp_path) if r["event"] == "end"]
    assert end and end[-1]["reason"] == "interrupted (signal)"


def test_a_silent_board_ends_the_run_as_board_lost(emu, tmp_path):
    cfg = tmp_path / "fast.toml"
    cfg.write_text(FAST)
    out = tmp_path / "silent.h5"
    proc = subprocess.Popen(
        run_cmd(emu, tmp_path, out, "--config", str(cfg), "--events", "1000000000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        wait_events(out, 20, proc)
        t_silent, wall_silent = time.monotonic(), time.time()
        emu_command(emu, f"emu silence {SILENCE_S}")
        stdout, stderr = proc.communicate(timeout=60)  # --events never comes: it must end
        t_end = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
        wait_answering(emu)
    assert proc.returncode == 5, stderr.decode()[-3000:]
    summary = json.loads(stdout)
    assert summary["board_lost"] is True and summary["state"] == "error"
    assert summary["stop_reason"].startswith("board lost")
    with RunFile(out) as f:
        assert f.final()["stop_reason"].startswith("board lost")
        assert f.n_events == summary["events_in_file"] > 0
    end = runlog(tmp_path)[-1]
    assert end["reason"].startswith("board lost")
    print(
        f"silence -> run ended {end['time'] - wall_silent:.1f} s, process exited "
        f"{t_end - t_silent:.1f} s (board_timeout_s 2, heartbeat_s 0.5)"
    )


def _fds_to(pid: int, path: Path) -> list[str]:
    fd_dir = Path(f"/proc/{pid}/fd")
    links = []
    for fd in fd_dir.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return [p for p in links if p == str(path)]


def _until(client: ControlClient, want, limit_s: float = 30.0) -> dict:
    end = time.monotonic() + limit_s
    while True:
        st = client.request("status")
        if want(st):
            return st
        assert time.monotonic() < end, st
        time.sleep(0.2)


def test_serve_full_disk_and_lost_board_are_error_states_it_leaves(emu, tmp_path):
    cfg = tmp_path / "fast.toml"
    cfg.write_text(FAST)
    wrapper = tmp_path / "enospc_serve.py"
    wrapper.write_text(ENOSPC_SERVE)
    full = tmp_path / "DISK_FULL"
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    data = tmp_path / "data"
    cmd = [sys.executable, str(wrapper), str(full), "serve", "--board", bec(emu), "--config",
           str(cfg), "--control", control, "--publish", f"tcp://127.0.0.1:{free_tcp_port()}",
           "--data-dir", str(data)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    client = ControlClient(control, timeout_ms=30000)
    try:
        assert client.request("start", run_type="background", wait=True)["state"] == "running"
        _until(client, lambda st: st["events"] >= 20)
        failed = Path(runlog(data)[-1]["file"])
        full.touch()  # the disk fills up
        st = _until(client, lambda st: st["state"] == "error")
        assert "No space left on device" in st["message"], st
        assert _fds_to(proc.pid, failed) == []  # the failed file is released
        full.unlink()  # space is back: the next start works
        again = client.request("start", run_type="background", wait=True)
        assert again["ok"] and again["state"] == "running", again
        _until(client, lambda st: st["events"] >= 20)
        emu_command(emu, f"emu silence {SILENCE_S}")  # the board falls silent
        st = _until(client, lambda st: st["state"] == "error")
        assert st["message"].startswith("board lost"), st
        wait_answering(emu)
        assert client.request("start", run_type="background", wait=True)["state"] == "running"
        _until(client, lambda st: st["events"] >= 20)
        full.touch()
        _until(client, lambda st: st["state"] == "error")
        proc.send_signal(signal.SIGTERM)  # in the error state of a full disk
        _, stderr = proc.communicate(timeout=60)
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = stderr.decode()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text and "Segmentation" not in text
    ends = [r["reason"] for r in runlog(data) if r["event"] == "end"]
    assert len(ends) == 3 and "No space left on device" in ends[0]
    assert ends[1].startswith("board lost")


def test_a_signal_during_configure_creates_no_run(emu, tmp_path):
    script = tmp_path / "slow.txt"
    script.write_text("sca enable 0\nsleep 600\nsca enable 1\n")
    out = tmp_path / "never.h5"
    err_path = tmp_path / "err.log"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            run_cmd(emu, tmp_path, out, "--script", str(script), "--seconds", "60"),
            stdout=subprocess.PIPE,
            stderr=err,
            env=ENV,
        )
        try:
            end = time.monotonic() + 120
            while "'sca enable 0'" not in err_path.read_text(errors="replace"):
                assert proc.poll() is None and time.monotonic() < end, "configure never began"
                time.sleep(0.1)
            time.sleep(0.3)  # inside `sleep 600` now
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err_path.read_text()
    assert proc.returncode == 6, text[-3000:]
    assert "interrupted; no run started" in text
    assert not out.exists()
    assert [r for r in runlog(tmp_path) if r["event"] == "start"] == []


def test_an_event_limit_is_exact_whatever_arrives_after(emu, tmp_path):
    settings = Settings().with_daq(bec=bec(emu), data_dir=str(tmp_path))
    acq = Acquisition(settings)
    emu_command(emu, "emu burst 1")  # events as fast as the DAQ takes them
    try:
        acq.configure("run")
        time.sleep(1.0)  # a backlog in the card's memory
        acq.start_run("background", "exact", tmp_path / "exact.h5", events=50, seconds=60)
        end = time.monotonic() + 60
        while acq.state == "running" and time.monotonic() < end:
            acq.poll()
            time.sleep(0.02)
        summary = run_result(acq)[0]
    finally:
        emu_command(emu, "emu burst 0")
        acq.close()
    assert summary["stop_reason"] == "50 events reached", summary["stop_reason"]
    assert summary["events_in_file"] == 50 and summary["events_over_limit"] > 0
    with RunFile(tmp_path / "exact.h5") as f:
        assert f.n_events == 50
    print(f"--events 50: 50 in the file, {summary['events_over_limit']} discarded after")
