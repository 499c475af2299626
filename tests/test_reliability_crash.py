"""Crashes and a full disk: ``kill -9`` of ``agetdaq run`` (2 trials here, 10 in ``make soak``)
and a writer that gets ENOSPC from HDF5. The file must open every time and keep what was
flushed; the run must stop cleanly with a clear message."""

from __future__ import annotations

import errno
import sys
import time
from pathlib import Path

import h5py
import pytest

from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store import chunks
from agetdaq.readout.store.reader import RunFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import soak  # tools/soak.py: the same trials, longer

pytestmark = pytest.mark.network


def test_kill_9_at_random_moments_leaves_a_readable_file(tmp_path):
    trials = soak.kill_trials(2, tmp_path, seed=3)
    for t in trials:
        assert t["returncode"] == -9, t
        assert t["events_in_file"] >= t["events_seen_before_kill"] >= 20, t
        assert t["tail_events_readable"] == min(50, t["events_in_file"]), t  # all readable
        # flush interval 1 s: the newest event on disk is at most ~1 s older than the kill
        assert t["newest_event_age_s"] < 2.5, t
        assert t["ok"]


def test_disk_full_stops_the_run_cleanly_with_a_clear_message(tmp_path, monkeypatch):
    emu = Emulator("calibration", port=0, seed=4).start()
    settings = Settings().with_daq(bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(tmp_path))
    acq = Acquisition(settings)
    path = tmp_path / "full.h5"
    try:
        acq.configure("run")
        acq.start_run("background", "disk full", path, seconds=60)
        end = time.monotonic() + 30
        while acq.writer.events_written < 20 and time.monotonic() < end:
            acq.poll()
            time.sleep(0.05)
        written = acq.writer.events_written
        assert written >= 20

        def no_space(self, key, value):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)
        monkeypatch.setattr(chunks, "write_chunk", lambda *a: no_space(None, None, None))
        end = time.monotonic() + 30
        while acq.state == "running" and time.monotonic() < end:
            acq.poll()
            time.sleep(0.05)
        assert acq.state == "error"
        assert "No space left on device" in acq.message and str(path) in acq.message
        assert acq.run.stop_reason.startswith("writer failed")
        assert acq.losses()["writer"]["errors"] >= 1
        monkeypatch.undo()  # space is back: the next run starts normally
        acq.start_run("background", "after", tmp_path / "after.h5", events=20, seconds=30)
        end = time.monotonic() + 30
        while acq.state == "running" and time.monotonic() < end:
            acq.poll()
            time.sleep(0.05)
        assert acq.state == "configured", acq.message
    finally:
        acq.close()
        emu.stop()
    with RunFile(path) as f:  # valid, with every event flushed before the failure
        assert f.n_events >= written
        assert len(list(f.iter_events(0, 20))) == 20
    with RunFile(tmp_path / "after.h5") as f:
        assert f.n_events >= 20
    log = (tmp_path / "runlog.jsonl").read_text()
    assert "No space left on device" in log
