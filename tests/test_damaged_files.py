"""A damaged file never hangs or crashes a reader: every file command answers with what it could
read and what is damaged, with its documented exit code (0 ok, 1 unreadable, 3 damaged, 4 newer
format version).

The files: a run file as the DAQ writes it (SWMR, raw datagrams, small chunks) cut at 10 % and
50 %, cut by 2 KB, with zeroed and random blocks, a foreign HDF5 file, a future format version,
random bytes, an empty file. Reading a cut SWMR file used to retry each damaged metadata block
100 times with doubling sleeps (minutes); the retries are bounded now (store/h5open.py). A hang
would fail the test (pytest-timeout); the commands run in-process, and as real processes for the
GUI's replay and one cut file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from damaged_files import damaged, write_run_file
from emulated_fe55 import EmulatedDaq, write_run

from agetdaq.readout.cli import main
from agetdaq.readout.store import h5open

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "QT_QPA_PLATFORM": "offscreen"}
AGETDAQ = [sys.executable, "-m", "agetdaq"]

# exit codes a command may give for each file (0 ok, 1 unreadable, 3 damaged, 4 newer format):
# a cut is always seen; a zeroed or random block only where the command reads it
EXPECTED = {
    "good": {0},
    "cut10": {3},
    "cut50": {3},
    "cut2k": {3},
    "zero_head": {1, 3},
    "zero_mid": {0, 3},
    "zero_tail": {0, 3},
    "random_block0": {0, 3},
    "random_block1": {0, 3},
    "foreign": {1},
    "future": {4},
    "random": {1},
    "empty": {1},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("damaged")
    good = write_run_file(tmp / "good.h5")
    return {"good": good, **damaged(good, tmp)}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: usage
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "unexpected error" not in err, err
    return code, out, err


def test_the_reader_bounds_hdf5_s_metadata_retries() -> None:
    assert h5open.retries_bounded()  # libhdf5 found: a damaged block costs ~17 ms, not minutes


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_file_command_answers_with_its_exit_code(files, name, capsys, tmp_path) -> None:
    path = str(files[name])
    for argv in (
        ["inspect", path, "--json"],
        ["dump", path, "--json"],
        ["convert", path, "-o", str(tmp_path / "out.aqs"), "--force"],
    ):
        code, out, err = _run(capsys, *argv)
        assert code in EXPECTED[name], (argv, code, err)
        if code == 3:
            assert "damaged:" in err
        if code in (1, 4):
            assert Path(path).name in err and not out
        if code == 4:
            assert "upgrade agetdaq" in err
    # --check reads every block: damage never goes unseen
    code, out, err = _run(capsys, "inspect", path, "--check", "--json")
    if name == "good":
        assert code == 0 and json.loads(out)["damage"] == []
    else:
        assert code in EXPECTED[name] - {0}, (code, err)


def test_a_cut_file_is_read_up_to_the_cut(files, capsys) -> None:
    code, out, err = _run(capsys, "dump", str(files["good"]), "--json")
    complete = [json.loads(line) for line in out.splitlines()]
    code, out, err = _run(capsys, "dump", str(files["cut50"]), "--json")
    assert code == 3 and "cut short" in err
    part = [json.loads(line) for line in out.splitlines()]
    assert part == complete[: len(part)]  # what is printed is exact
    summary = json.loads(err.splitlines()[-1 - err.count("damaged:")])["summary"]
    assert summary["damage"] and summary["events"] == len(part)


def test_calibrate_on_damaged_runs(tmp_path, files, capsys) -> None:
    daq = EmulatedDaq("gain-drift", seed=21, energy_min_adc=200.0)
    rows, _ = daq.calibration_run(600, 0.0, duration_s=0.5)
    good = write_run(tmp_path / "fe55.h5", rows, 1, "calibration", 200.0)
    cut = tmp_path / "fe55_cut.h5"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = str(tmp_path / "cal")
    assert _run(capsys, "calibrate", str(good), "-o", out, "--no-plots")[0] == 0
    code, _, err = _run(capsys, "calibrate", str(cut), "-o", out, "--no-plots", "--force")
    assert code == 3 and "cut short" in err
    assert _run(capsys, "calibrate", str(files["future"]), "-o", out, "--force")[0] == 4
    assert _run(capsys, "calibrate", str(files["random"]), "-o", out, "--force")[0] == 1


def test_real_processes_answer_on_a_cut_file_and_the_gui_replay_says_so(files) -> None:
    proc = subprocess.run([*AGETDAQ, "dump", str(files["cut10"])], capture_output=True, text=True,
                          env=ENV, timeout=100)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "cut short" in proc.stderr and "Traceback" not in proc.stderr
    gui = [*AGETDAQ, "gui", "--quit-after", "1", "--replay"]
    proc = subprocess.run([*gui, str(files["random"])], capture_output=True, text=True, env=ENV,
                          timeout=100)  # fmt: skip
    assert proc.returncode == 1 and "no HDF5 signature" in proc.stderr, proc.stderr
    proc = subprocess.run([*gui, str(files["cut50"])], capture_output=True, text=True, env=ENV,
                          timeout=100)  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "cut short" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["missing", "good", "cut50", "random", "empty", "future"])
def test_run_and_serve_refuse_a_pedestal_file_they_cannot_use(files, name, capsys, tmp_path):
    """``--pedestals`` with a file that holds no pedestal table (a missing, damaged or foreign
    file, a plain run file) is one line and exit 1 (4: newer format) before any socket exists:
    nothing reaches the board, no run file, no run log (it was a ValueError traceback)."""
    path = str(files.get(name, tmp_path / "missing.h5"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as board:
        board.bind(("127.0.0.1", 0))
        board.setblocking(False)
        address = "{}:{}".format(*board.getsockname())
        for command in ("run", "serve"):
            data = tmp_path / command
            argv = ["--board", address, "--data-dir", str(data), "--pedestals", path]
            code, out, err = _run(capsys, command, *argv, "--control", "tcp://127.0.0.1:0")
            assert code == (4 if name == "future" else 1), err
            assert err.startswith(f"agetdaq {command}: ") and Path(path).name in err, err
            assert err.count("\n") == 1 and not out
            assert not data.exists()
        with pytest.raises(BlockingIOError):
            board.recv(2048)
