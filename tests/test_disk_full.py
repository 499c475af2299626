"""A really full disk: a small tmpfs mounted for the test (root only; where a mount is not
possible the in-process injected ENOSPC of test_reliability_crash.py covers the writer).

``agetdaq run`` and ``agetdaq serve`` as real processes write into a 16 MB tmpfs at the
emulator's full rate (burst mode) until the disk is full. Each must stop the run cleanly with a
short "disk full" message, leave the file valid and closed (end-of-run record written), exit 1 /
go to state error without a segfault, release the file (deleting it frees the space: no
descriptor left open) and, for ``serve``, start the next run once space is back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_tcp_port

from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.run import open_run
from agetdaq.readout.transport.control import ControlClient

pytestmark = pytest.mark.network
AGETDAQ = [sys.executable, "-m", "agetdaq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
DISK_MB = 16


@pytest.fixture
def small_disk(tmp_path):
    """A DISK_MB tmpfs, or skip (not root, or no mount in this container)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root (the injected-ENOSPC test covers the writer)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.fixture
def emulator():
    emu = Emulator("calibration", port=0, seed=7, faults={"burst": True}).start()
    yield emu
    emu.stop()


@pytest.fixture
def settings(tmp_path) -> Path:
    """The disk guard off (disk_stop_gb = 0): the writer meets the real ENOSPC."""
    path = tmp_path / "nodisk.toml"
    path.write_text("[daq]\ndisk_stop_gb = 0.0\n")
    return path


def _free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e6


def _open_descriptors(pid: int, target: Path) -> list[str]:
    """The descriptors of process ``pid`` that point at ``target`` (also once deleted)."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith(str(target)):
            out.append(link)
    return out


def _closed_and_valid(path: Path) -> dict:
    with open_run(path) as run:
        assert run.info.closed, "no end-of-run record"
        assert not run.damage, run.damage
        assert run.n_events > 0
        assert len(list(run.events(0, 5))) == 5
        return run.final


def test_run_on_a_full_disk_exits_1_with_a_valid_closed_file(
    small_disk, emulator, settings, tmp_path
):
    out = small_disk / "run.h5"
    cmd = [*AGETDAQ, "run", "--board", f"127.0.0.1:{emulator.address[1]}", "--json"]
    cmd += ["--config", str(settings), "--data-dir", str(tmp_path / "data"), "-o", str(out)]
    proc = subprocess.run([*cmd, "--seconds", "120"], capture_output=True, text=True, env=ENV,
                          timeout=180)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]  # not 139: no segfault
    errors = [line for line in proc.stderr.splitlines() if line.startswith("agetdaq run:")]
    assert len(errors) == 1 and "disk full" in errors[0] and len(errors[0]) < 250, errors
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["state"] == "error" and "disk full" in summary["stop_reason"]
    assert summary["stop_reason"].count("No space left") == 1  # said once
    final = _closed_and_valid(out)
    assert "disk full" in final["stop_reason"]
    assert not (small_disk / "run.h5.lock").exists()
    inspect = subprocess.run([*AGETDAQ, "inspect", str(out), "--json"], capture_output=True,
                             text=True, env=ENV, timeout=120)  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    assert "disk full" in json.loads(inspect.stdout)["stop_reason"]


def test_serve_releases_the_failed_file_and_runs_again_once_space_is_back(
    small_disk, emulator, settings, tmp_path
):
    control = f"tcp://127.0.0.1:{free_tcp_port()}"
    cmd = [*AGETDAQ, "serve", "--board", f"127.0.0.1:{emulator.address[1]}", "-q"]
    cmd += ["--config", str(settings), "--data-dir", str(small_disk), "--control", control]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV)  # fmt: skip
    client = ControlClient(control, timeout_ms=60000)
    try:
        started = client.request("start", run_type="background", comment="fill the disk", wait=True)
        assert started["ok"], started
        end = time.monotonic() + 120
        status = started
        while time.monotonic() < end and status.get("state") in ("running", "stopping"):
            time.sleep(0.5)
            status = client.request("status")
        assert status["state"] == "error", status
        assert status["message"].startswith("disk full") and len(status["message"]) < 250
        failed = small_disk / "R00001_background.h5"
        assert "disk full" in _closed_and_valid(failed)["stop_reason"]
        assert _open_descriptors(proc.pid, failed) == []  # the file is released
        before, size_mb = _free_mb(small_disk), failed.stat().st_size / 1e6
        assert size_mb > 1.0
        failed.unlink()  # deleting it frees its space at once (no process holds it)
        assert _free_mb(small_disk) > before + 0.9 * size_mb
        emulator.card.faults.set_burst(False)  # the normal rate: the next run fits
        again = client.request("start", run_type="background", comment="space is back", wait=True)
        assert again["ok"] and again["state"] == "running", again
        time.sleep(1.0)
        stopped = client.request("stop", wait=True)
        assert stopped["ok"] and stopped["state"] == "configured", stopped
        assert _closed_and_valid(small_disk / "R00002_background.h5")["stop_reason"]
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]  # SIGTERM after a full disk: no segfault
    assert "Traceback" not in err


def test_the_disk_guard_watches_the_filesystem_of_the_run_file(small_disk, emulator, tmp_path):
    """-o on a small disk while the data directory is on a big one: the guard stops the run
    cleanly when the small disk has less than disk_stop_gb (6 MB) free; it measured data_dir
    before, and the run went on until the disk was full."""
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings

    emulator.card.faults.set_burst(False)
    bec = f"127.0.0.1:{emulator.address[1]}"
    settings = Settings().with_daq(bec=bec, data_dir=str(tmp_path / "data"), disk_stop_gb=0.006)
    acq = Acquisition(settings)
    out = small_disk / "guarded.h5"
    try:
        acq.configure("run")
        acq.start_run("background", "guard", out, seconds=120)
        assert acq.status()["disk_free_gb"] < 0.017  # the run file's disk, not data_dir's
        end = time.monotonic() + 120
        while acq.state == "running" and time.monotonic() < end:
            acq.poll()
            time.sleep(0.05)
        assert acq.state == "configured", acq.message  # a clean stop, not an error
        assert acq.run.stop_reason.startswith("disk almost full")
        assert str(small_disk) in acq.run.stop_reason
    finally:
        acq.close()
    assert "disk almost full" in _closed_and_valid(out)["stop_reason"]
