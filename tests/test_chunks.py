"""Chunks compressed outside the GIL and written with HDF5's direct chunk write (store/chunks.py):
the file reads back the same through plain h5py + hdf5plugin as one written through h5py's own
filters, partial chunks are completed, failures reach the writer, and the compression lets other
Python threads run."""

from __future__ import annotations

import threading

import h5py
import hdf5plugin  # the Blosc filter for plain h5py
import numpy as np
import pytest

from agetdaq.readout import schema as S
from agetdaq.readout.store import chunks
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.writer import RunWriter, WriterConfig, WriterError


def _write(path, compression: str, n_batches: int = 7) -> dict[str, np.ndarray]:
    """A run with raw datagrams, events, channels and samples; flushed mid-chunk twice."""
    rng = np.random.default_rng(1)
    cfg = WriterConfig(compression=compression, chunk_bytes=8192, swmr=True)
    sent: dict[str, list] = {"raw": [], "events": [], "adc": []}
    with RunWriter(path, S.EVENT_DTYPE, {"run_number": "1"}, cfg) as w:
        for b in range(n_batches):
            lengths = rng.integers(8, 600, 37) * 2
            buf = rng.integers(0, 4096, (37, 600), dtype=np.uint16).view(np.uint8)
            w.append_raw(buf, lengths, np.arange(37, dtype=np.int64))
            sent["raw"].extend(bytes(buf[i, : lengths[i]]) for i in range(37))
            ev = np.zeros(50, S.EVENT_DTYPE)
            ev["event_id"] = np.arange(50 * b, 50 * b + 50)
            ch = np.zeros(50, S.CHANNEL_DTYPE)
            ch["event_row"] = np.arange(50)
            ch["sample_start"] = np.arange(50) * 40
            ch["n_samples"] = 40
            adc = rng.integers(200, 300, 2000).astype(np.uint16)
            w.append_events(ev, ch, np.tile(np.arange(40, dtype=np.uint16), 50), adc)
            sent["events"].append(ev["event_id"])
            sent["adc"].append(adc)
            if b in (2, 4):
                w.flush()  # an open chunk goes to the file, to be written again when full
    return {"events": np.concatenate(sent["events"]), "adc": np.concatenate(sent["adc"]),
            "raw": sent["raw"]}  # fmt: skip


def _read(path) -> dict:
    with h5py.File(path, "r") as f:
        words = f[L.RAW_WORDS][...].view(np.uint8)
        index = f[L.RAW_INDEX][...]
        raw = [bytes(words[2 * o : 2 * o + n]) for o, n in zip(index["offset"], index["nbytes"])]
        return {"events": f[L.EVENTS]["event_id"], "adc": f[L.SAMPLE_ADC][...], "raw": raw,
                "filters": f[L.RAW_WORDS]._filters}  # fmt: skip


@pytest.mark.parametrize("compression", ["blosc-lz4", "blosc-zstd", "none"])
def test_direct_chunks_read_back_like_h5py_writes(tmp_path, compression) -> None:
    assert chunks.codec(compression, 5, np.uint16) is not None
    sent = _write(tmp_path / "direct.h5", compression)
    got = _read(tmp_path / "direct.h5")
    np.testing.assert_array_equal(got["events"], sent["events"])
    np.testing.assert_array_equal(got["adc"], sent["adc"])
    assert got["raw"] == sent["raw"]
    if compression != "none":
        assert str(hdf5plugin.BLOSC_ID) in got["filters"]  # HDF5's own filter decodes them


def test_a_compression_without_codec_goes_through_h5py(tmp_path) -> None:
    assert chunks.codec("gzip", 5, np.uint16) is None
    sent = _write(tmp_path / "gzip.h5", "gzip")
    got = _read(tmp_path / "gzip.h5")
    np.testing.assert_array_equal(got["adc"], sent["adc"])
    assert got["raw"] == sent["raw"]


def test_a_failed_chunk_write_reaches_the_writer(tmp_path, monkeypatch) -> None:
    w = RunWriter(tmp_path / "fail.h5", S.EVENT_DTYPE, {}, WriterConfig(chunk_bytes=4096))

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(chunks, "write_chunk", no_space)
    ev = np.zeros(1000, S.EVENT_DTYPE)
    with pytest.raises(WriterError, match="No space left on device"):
        for _ in range(20):
            w.append_events(ev, np.zeros(0, S.CHANNEL_DTYPE), np.zeros(0, np.uint16),
                            np.zeros(0, np.uint16))  # fmt: skip
            w.flush()
    monkeypatch.undo()
    w.close()  # the failure was reported once; the file is closed valid with what was stored
    assert w.failed and w.closed
    with h5py.File(tmp_path / "fail.h5", "r") as f:
        assert f[L.EVENTS].shape[0] < 20 * 1000


def test_compression_lets_other_python_threads_run() -> None:
    """While a chunk compresses on its thread, this thread keeps running Python: with the GIL
    held for the whole call it could not count at all until the call returned."""
    encode = chunks.codec("blosc-zstd", 9, np.uint16)
    data = np.random.default_rng(2).integers(0, 4096, 2 << 20, dtype=np.uint16).view(np.uint8)
    started, done = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        encode(data)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    started.wait()
    count = 0
    while not done.is_set():
        count += 1
    t.join()
    assert count > 1000
