"""The writer's own rules, in one process: one writer per file (the lock), never over an existing
file, the end-of-run record written in SWMR mode, a failed write closed valid with what was
written, and a file HDF5 cannot close released anyway (tests/test_disk_full.py and
tests/test_run_file_ownership.py do the same with real processes, signals and a full disk)."""

from __future__ import annotations

import errno
import os

import h5py
import numpy as np
import pytest

from agetdaq.readout import schema as S
from agetdaq.readout.store import chunks, h5open
from agetdaq.readout.store.lock import lock_path
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterError


def _rows(n: int, first: int = 0) -> tuple:
    rows = np.zeros(n, S.EVENT_DTYPE)
    rows["event_id"] = np.arange(first, first + n)
    empty = np.zeros(0, np.uint16)
    return rows, np.zeros(0, S.CHANNEL_DTYPE), empty, empty


def test_one_writer_never_over_an_existing_file(tmp_path) -> None:
    path = tmp_path / "run.h5"
    w = RunWriter(path, S.EVENT_DTYPE)
    with pytest.raises(WriterError, match=f"being written by process {os.getpid()}"):
        RunWriter(path, S.EVENT_DTYPE, overwrite=True)
    w.close({"stop_reason": "done"})
    assert not lock_path(path).exists()
    with pytest.raises(WriterError, match="exists"):
        RunWriter(path, S.EVENT_DTYPE)
    RunWriter(path, S.EVENT_DTYPE, overwrite=True).close()


def test_the_end_of_run_record_is_written_in_swmr_mode(tmp_path) -> None:
    path = tmp_path / "run.h5"
    w = RunWriter(path, S.EVENT_DTYPE)
    w.append_events(*_rows(10))
    peds = np.zeros(3, S.PEDESTAL_DTYPE)
    peds["mean"] = [250, 251, 252]
    w.close({"stop_reason": "done", "counters": {"x": 1}, "pedestals": peds})
    assert h5open.read_superblock(path).flags == 0  # closed cleanly
    with RunFile(path) as f:
        assert f.closed and f.final() == {"stop_reason": "done", "counters": '{"x": 1}'}
        assert f.pedestals_out()["mean"].tolist() == [250, 251, 252]
    with h5py.File(path, "r") as f:  # the layout: one JSON record, written in SWMR mode
        assert f["meta_out/final"].maxshape == (None,)


def test_a_failed_write_closes_the_file_valid_with_what_was_written(tmp_path, monkeypatch) -> None:
    path = tmp_path / "run.h5"
    w = RunWriter(path, S.EVENT_DTYPE)
    w.append_events(*_rows(10))
    w.flush()
    reserved = w.lock.reserved
    real = h5py.Dataset.__setitem__

    def no_space(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", no_space)  # HDF5-compressed tables
    real_chunk = chunks.write_chunk
    monkeypatch.setattr(chunks, "write_chunk", lambda *a: no_space(None, None, None))  # Blosc
    w.append_events(*_rows(5, 10))
    with pytest.raises(WriterError, match=r"^disk full: cannot write .*run\.h5 \(No space") as e:
        w.flush()
    assert e.value.disk_full and w.failed
    with pytest.raises(WriterError):  # it stays failed: no more writes
        w.append_events(*_rows(1, 15))
    monkeypatch.setattr(h5py.Dataset, "__setitem__", real)
    monkeypatch.setattr(chunks, "write_chunk", real_chunk)
    w.close({"stop_reason": "disk full"})
    assert reserved > 0 and w.lock.reserved == 0 and w.dropped_rows > 0
    with RunFile(path) as f:
        assert f.n_events == 10 and f.closed and f.final()["stop_reason"] == "disk full"


def test_a_file_hdf5_cannot_close_is_released_anyway(tmp_path, monkeypatch) -> None:
    path = tmp_path / "run.h5"
    w = RunWriter(path, S.EVENT_DTYPE)
    w.append_events(*_rows(10))
    w.flush()
    fd = w._fd
    assert os.path.samefile(f"/proc/self/fd/{fd}", path)

    def failing_close(self):  # HDF5 cannot write what closing needs, every time
        raise RuntimeError("Unable to close file (file write failed)")

    monkeypatch.setattr(h5py.File, "close", failing_close)
    with pytest.raises(WriterError, match="cannot close"):
        w.close()
    held = []
    for name in os.listdir("/proc/self/fd"):
        try:
            held.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            continue
    assert str(path) not in held  # no descriptor keeps the file: deleting it frees the space
    assert os.readlink(f"/proc/self/fd/{fd}") == os.devnull  # HDF5's writes go nowhere
    assert not lock_path(path).exists()


def test_the_writer_stops_before_the_disk_is_full_and_keeps_every_staged_row(
    tmp_path, monkeypatch
) -> None:
    path = tmp_path / "run.h5"
    w = RunWriter(path, S.EVENT_DTYPE)
    real = os.statvfs

    class Almost:  # what statvfs says of a disk with 1 MB left
        f_bavail, f_frsize = 256, 4096

    w.append_events(*_rows(10))
    w.flush()
    monkeypatch.setattr(os, "statvfs", lambda p: Almost if str(p) == str(tmp_path) else real(p))
    rows = w.events.chunk_rows
    with pytest.raises(WriterError, match=r"^disk full"):
        for k in range(3):  # whole chunks: the writer checks the room before each one
            w.append_events(*_rows(rows, 10 + k * rows))
    assert w.out_of_room
    monkeypatch.setattr(os, "statvfs", real)
    w.close({"stop_reason": "disk full"})
    with RunFile(path) as f:  # nothing failed: every row handed to the writer is in the file
        assert f.n_events == 10 + rows and f.final()["stop_reason"] == "disk full"
    assert w.dropped_rows == 0
