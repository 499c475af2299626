"""Run file writer and reader: round trip, SWMR live read, raw datagrams, metadata in/out."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.readout import schema as S
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.reader import RunFile, RunFileError
from agetdaq.readout.store.writer import RunWriter, WriterConfig, WriterError

EVENT_DTYPE = np.dtype(
    [
        ("event_id", "<u8"),
        ("event_count", "<u4"),
        ("timestamp", "<u8"),
        ("type", "u1"),
        ("flags", "<u2"),
    ]
)


def _batch(first_id: int, n: int, rng: np.random.Generator):
    ev = np.zeros(n, EVENT_DTYPE)
    ev["event_id"] = np.arange(first_id, first_id + n)
    ev["event_count"] = ev["event_id"] + 7
    ev["timestamp"] = ev["event_id"] * 1000
    ch = np.zeros(2 * n, S.CHANNEL_DTYPE)
    ch["event_row"] = np.repeat(np.arange(n), 2)
    ch["chip"] = np.tile([0, 3], n)
    ch["channel"] = np.tile([5, 60], n)
    ch["n_samples"] = 4
    ch["sample_start"] = np.arange(2 * n) * 4
    bins = np.tile(np.array([10, 11, 12, 40], np.uint16), 2 * n)
    adc = rng.integers(0, 4096, 8 * n).astype(np.uint16)
    aux = np.zeros(n, S.AUX_DTYPE)
    aux["event_row"] = np.arange(n)
    aux["kind"] = S.AUX_LAST_CELL
    aux["chip"] = 1
    aux["value"] = np.arange(n) + 100
    return ev, ch, bins, adc, aux


def test_round_trip_events_channels_and_metadata(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "run.h5"
    with RunWriter(path, EVENT_DTYPE, metadata={"script": "sca cnt 0x200\n", "cfg": {"a": 1}}) as w:
        for k in range(3):
            w.append_events(*_batch(10 * k, 10, rng))
    with RunFile(path) as f:
        assert f.n_events == 30
        assert list(f.events()["event_id"][:3]) == [0, 1, 2]
        events = list(f.iter_events(10, 13))
        assert [e.event_count for e in events] == [17, 18, 19]
        assert [c.key() for c in events[0].channels] == [(0, 0, 5), (0, 3, 60)]
        assert list(events[0].channels[1].bins) == [10, 11, 12, 40]
        assert events[2].last_cells == [(1, 102)]
        assert f.metadata()["script"] == "sca cnt 0x200\n"
        assert f.metadata()["cfg"] == '{"a": 1}'


def test_samples_survive_exactly(tmp_path):
    rng = np.random.default_rng(2)
    ev, ch, bins, adc, aux = _batch(0, 5, rng)
    with RunWriter(tmp_path / "r.h5", EVENT_DTYPE) as w:
        w.append_events(ev, ch, bins, adc, aux)
    with RunFile(tmp_path / "r.h5") as f:
        got = np.concatenate([c.adc for e in f.iter_events() for c in e.channels])
    np.testing.assert_array_equal(got, adc)


def test_raw_datagrams_kept_as_received(tmp_path):
    grams = [bytes([i % 256]) * n for i, n in enumerate([6, 9, 1024, 2])]
    buf = np.zeros((4, 2048), np.uint8)
    for i, g in enumerate(grams):
        buf[i, : len(g)] = np.frombuffer(g, np.uint8)
    with RunWriter(tmp_path / "raw.h5", EVENT_DTYPE) as w:
        w.append_raw(buf, np.array([len(g) for g in grams]), np.arange(4, dtype=np.uint64))
    with RunFile(tmp_path / "raw.h5") as f:
        assert list(f.datagrams()) == grams
        assert f.n_datagrams == 4


def test_swmr_reader_sees_rows_while_writing(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "live.h5"
    w = RunWriter(path, EVENT_DTYPE, config=WriterConfig(flush_interval_s=0.0))
    w.append_events(*_batch(0, 4, rng))
    w.flush()
    reader = RunFile(path)
    assert reader.n_events == 4
    w.append_events(*_batch(4, 6, rng))
    w.flush()
    reader.refresh()
    assert reader.n_events == 10
    reader.close()
    w.close(final={"stop_reason": "test", "counters": {"events": 10}})
    with RunFile(path) as f:
        assert f.final()["stop_reason"] == "test"


def test_unflushed_writer_file_still_opens(tmp_path):
    """A writer that never closes (killed) leaves a file that opens with what was flushed."""
    rng = np.random.default_rng(4)
    path = tmp_path / "killed.h5"
    w = RunWriter(path, EVENT_DTYPE)
    w.append_events(*_batch(0, 3, rng))
    w.flush()
    w.append_events(*_batch(3, 3, rng))  # pending, never flushed
    with RunFile(path) as f:
        assert f.n_events == 3
        assert f.final() == {}
    w.close()


def test_errors_are_clear(tmp_path):
    with pytest.raises(WriterError, match="cannot create"):
        RunWriter(tmp_path / "missing" / "x.h5", EVENT_DTYPE)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(RunFileError, match="no HDF5 signature"):
        RunFile(tmp_path / "junk.h5")
    with pytest.raises(ValueError, match="unknown compression"):
        L.compression_kwargs("zip")
