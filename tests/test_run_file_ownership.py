"""A run file is written by one process only, is never replaced, and every stop path leaves a
file the tools open: real ``agetdaq`` processes, real signals, real files.

* ``-o`` to an existing file refuses unless ``--force``; ``--force`` never replaces a file that a
  live process writes (the lock beside it survives SWMR mode).
* A writer killed with ``kill -9`` leaves a stale lock that the next writer takes over.
* ``kill -9`` during the end-of-run write (the record, the close) leaves a file that ``inspect``
  and ``dump`` read; a file left flagged "open for writing" by a writer outside SWMR mode (older
  agetdaq) is read through a flag-cleared view, with a notice.
* Processes sharing a data directory never take the same run number (two ``serve``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_tcp_port

from agetdaq.readout.acquisition.runlog import RunLog
from agetdaq.readout.cli import main
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store import h5open
from agetdaq.readout.store.lock import holder, lock_path
from agetdaq.readout.store.run import open_run
from agetdaq.readout.transport.control import ControlClient

pytestmark = pytest.mark.network
PY = [sys.executable]
AGETDAQ = [*PY, "-m", "agetdaq"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# a child that writes a run file with RunWriter, then does what the test asks at the end
WRITER = textwrap.dedent(
    """
    import sys, time, numpy as np, h5py
    from agetdaq.readout import schema as S
    from agetdaq.readout.store import writer as W
    path, mode = sys.argv[1], sys.argv[2]

    def pause(what):
        print(what, flush=True)
        time.sleep(60)

    if mode == "in_record":  # killed after the record's data was written, before its flush
        def part(self, final):
            data = np.frombuffer(b'{"stop_reason": "done"}', np.uint8)
            dset = self.file["meta_out/final"]
            dset.resize((len(data),))
            dset[:] = data
            pause("record")
        W.RunWriter._write_final = part
    if mode == "in_close":  # killed inside HDF5's close, after the record was flushed
        h5py.File.close = lambda self: pause("closing")
    w = W.RunWriter(path, S.EVENT_DTYPE, {"run_number": "7"}, overwrite=True)
    rows = np.zeros(100, S.EVENT_DTYPE)
    rows["event_id"] = np.arange(100)
    w.append_events(rows, np.zeros(0, S.CHANNEL_DTYPE), np.zeros(0, np.uint16),
                    np.zeros(0, np.uint16))
    w.flush()
    print("stale" if w.lock.stale is None else f"took over from {w.lock.stale.pid}", flush=True)
    if mode == "hold":
        pause("writing")
    w.close({"stop_reason": "done", "counters": {"events": 100}})
    print("closed", flush=True)
    """
)


def _writer(path: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([*PY, "-c", WRITER, str(path), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)  # fmt: skip


def _wait_line(proc: subprocess.Popen, want: str, limit: float = 120.0) -> list[str]:
    lines: list[str] = []
    end = time.monotonic() + limit
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.strip() == want:
            return lines
    raise AssertionError(f"no {want!r} from the child: {lines} {proc.stderr.read()[-2000:]}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def silent_board():
    """A UDP socket standing for a board: the test checks nothing reached it."""
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


def test_a_run_file_has_one_writer_and_is_never_replaced(tmp_path, silent_board):
    emu = Emulator("calibration", port=0, seed=3).start()
    out = tmp_path / "run.h5"
    common = ["--data-dir", str(tmp_path / "data"), "-o", str(out), "--json"]
    first = subprocess.Popen(
        [*AGETDAQ, "run", "--board", f"127.0.0.1:{emu.address[1]}", *common, "--seconds", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    silent = f"127.0.0.1:{silent_board.getsockname()[1]}"
    try:
        end = time.monotonic() + 120
        events = 0
        while time.monotonic() < end and events < 20:
            time.sleep(0.5)
            if out.exists():
                try:
                    with open_run(out) as run:
                        events = run.n_events
                except Exception:  # created but not yet in SWMR mode
                    events = 0
        assert events >= 20, "no data reached the file"
        assert holder(out).pid == first.pid
        # --force never replaces a file another process writes; nothing reaches the board
        second = subprocess.run([*AGETDAQ, "run", "--board", silent, *common, "--force"],
                                capture_output=True, text=True, env=ENV, timeout=120)  # fmt: skip
        assert second.returncode == 1, second.stderr
        assert f"being written by process {first.pid}" in second.stderr
        assert _nothing_sent(silent_board)
        # the lock itself (not only the command's check) refuses a second writer
        grab = subprocess.run([*PY, "-c", WRITER, str(out), "close"], capture_output=True,
                              text=True, env=ENV, timeout=120)  # fmt: skip
        assert grab.returncode != 0 and "being written by process" in grab.stderr
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
        emu.stop()
    assert first.returncode == 0, stderr[-2000:]
    assert json.loads(stdout)["file"] == str(out)
    assert not lock_path(out).exists()
    size, mtime = out.stat().st_size, out.stat().st_mtime_ns
    with open_run(out) as run:
        n = run.n_events
        assert run.info.closed and n >= events
    third = subprocess.run([*AGETDAQ, "run", "--board", silent, *common], capture_output=True,
                           text=True, env=ENV, timeout=120)  # fmt: skip
    assert third.returncode == 2 and "exists (use --force" in third.stderr, third.stderr
    assert (out.stat().st_size, out.stat().st_mtime_ns) == (size, mtime)
    assert _nothing_sent(silent_board)


def test_a_killed_writer_leaves_a_stale_lock_the_next_writer_takes_over(tmp_path, capsys):
    path = tmp_path / "killed.h5"
    proc = _writer(path, "hold")
    _wait_line(proc, "writing")
    _kill(proc)
    stale = holder(path)
    assert stale is not None and stale.pid == proc.pid and stale.alive() is False
    code, out, err = _cli(capsys, "inspect", str(path), "--json")
    assert code == 0, err
    assert "not closed by its writer" in err
    assert json.loads(out)["events"] == 100
    again = subprocess.run([*PY, "-c", WRITER, str(path), "close"], capture_output=True,
                           text=True, env=ENV, timeout=120)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"took over from {proc.pid}" in again.stdout
    assert not lock_path(path).exists()


@pytest.mark.parametrize("moment", ["in_record", "in_close"])
def test_kill_9_during_the_end_of_run_write_leaves_a_readable_file(tmp_path, capsys, moment):
    path = tmp_path / f"{moment}.h5"
    proc = _writer(path, moment)
    _wait_line(proc, "record" if moment == "in_record" else "closing")
    _kill(proc)
    for command in ("inspect", "dump"):
        code, _, err = _cli(capsys, command, str(path), "--json")
        assert code == 0, err
        assert "Traceback" not in err and "unexpected error" not in err
    with open_run(path) as run:
        assert run.n_events == 100
        if moment == "in_close":  # the record was flushed before the close began
            assert run.info.closed and run.final["stop_reason"] == "done"


def test_a_file_left_flagged_open_for_writing_is_read_with_a_notice(tmp_path, capsys):
    path = tmp_path / "flagged.h5"
    subprocess.run([*PY, "-c", WRITER, str(path), "close"], check=True, env=ENV, timeout=120)
    # an older agetdaq wrote meta_out after leaving SWMR mode: killed there, the file stays
    # flagged "open for writing" and HDF5 refuses it until h5clear -s
    code = (
        "import os, signal, h5py, hdf5plugin, sys\n"
        "f = h5py.File(sys.argv[1], 'a'); f.create_group('meta_out_v2'); f.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([*PY, "-c", code, str(path)], env=ENV, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    sb = h5open.read_superblock(path)
    assert sb.open_for_write and not sb.swmr_write
    before = path.read_bytes()[:64]
    code, out, err = _cli(capsys, "inspect", str(path), "--json")
    assert code == 0, err
    assert "flagged 'open for writing'" in err and json.loads(out)["events"] == 100
    code, out, err = _cli(capsys, "dump", str(path), "--events", "0:3", "--json")
    assert code == 0 and len(out.splitlines()) == 3, err
    assert path.read_bytes()[:64] == before  # the reader changed nothing on disk


def test_processes_sharing_a_data_dir_never_take_the_same_run_number(tmp_path):
    code = (
        "import sys\n"
        "from agetdaq.readout.acquisition.runlog import RunLog\n"
        "log = RunLog(sys.argv[1])\n"
        "print(' '.join(str(log.allocate_run_number()) for _ in range(40)))\n"
    )
    procs = [subprocess.Popen([*PY, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, env=ENV) for _ in range(4)]  # fmt: skip
    numbers = []
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        numbers += [int(n) for n in out.split()]
    assert sorted(numbers) == list(range(1, 161))
    (tmp_path / "R00500_background.h5").touch()  # a run file the log does not know
    assert RunLog(tmp_path).allocate_run_number() == 501


def test_two_serve_on_one_data_dir_never_take_the_same_run_number(tmp_path):
    emus = [Emulator("calibration", port=0, seed=s).start() for s in (1, 2)]
    controls = [f"tcp://127.0.0.1:{free_tcp_port()}" for _ in emus]
    procs = [
        subprocess.Popen(
            [
                *AGETDAQ,
                "serve",
                "-q",
                "--board",
                f"127.0.0.1:{e.address[1]}",
                "--control",
                c,
                "--publish",
                f"tcp://127.0.0.1:{free_tcp_port()}",
                "--data-dir",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for e, c in zip(emus, controls)
    ]
    clients = [ControlClient(c, timeout_ms=120000) for c in controls]
    numbers: list[int] = []

    def start(i: int, replies: list[dict]) -> None:
        replies[i] = clients[i].request("start", run_type="background", wait=True)

    try:
        for c in clients:  # both up and configured (the first start also waits for warm-up)
            assert c.request("configure", script="run", wait=True)["ok"]
        for _ in range(2):
            replies: list[dict] = [{}, {}]
            threads = [threading.Thread(target=start, args=(i, replies)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(150)
            assert all(r.get("ok") for r in replies), replies
            numbers += [r["run_number"] for r in replies]
            for c in clients:
                assert c.request("stop", wait=True)["ok"]
    finally:
        for c in clients:
            c.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for e in emus:
            e.stop()
    assert sorted(numbers) == list(range(1, 5)), numbers
    files = sorted(p.name for p in tmp_path.glob("R*.h5"))
    assert files == [f"R{n:05d}_background.h5" for n in range(1, 5)]
    log = RunLog(tmp_path).records()
    taken = [r["run"] for r in log if r["event"] == "allocate"]
    assert sorted(taken) == list(range(1, 5))
    for name in files:
        with open_run(tmp_path / name) as run:
            assert run.info.closed
            assert np.all(np.diff(run.rows()["event_id"].astype(np.int64)) > 0)
