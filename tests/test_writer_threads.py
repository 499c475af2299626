"""The run file writer is fed by two threads: the data path (events, raw datagrams, its flush
ticks) and the engine (a status snapshot now and then). Neither may corrupt the other's rows."""

from __future__ import annotations

import threading
import time

import numpy as np
from test_h5writer import EVENT_DTYPE, _batch

from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterConfig


def test_status_from_another_thread_beside_the_data_path(tmp_path):
    """Before the fix the engine's status rows and the data path's flushes shared the status
    appenders: a chunk offset off its boundary ended the run ('offset doesn't fall on chunk's
    boundary') after a few hundred flushes."""
    path = tmp_path / "run.h5"
    # small chunks and a flush at every tick: many chunk boundaries and partial chunks per second
    cfg = WriterConfig(chunk_bytes=4096, flush_interval_s=1e-4)
    rng = np.random.default_rng(5)
    stop = threading.Event()
    errors: list[BaseException] = []
    n_status = 0
    grams = np.full((8, 64), 7, np.uint8)

    def engine(w: RunWriter) -> None:
        nonlocal n_status
        try:
            while not stop.is_set():
                w.append_status({"n": n_status, "text": "x" * (n_status % 700)})
                n_status += 1
                time.sleep(0.0005)  # the engine publishes once a second; here 2 000 times
        except BaseException as exc:
            errors.append(exc)

    w = RunWriter(path, EVENT_DTYPE, config=cfg)
    t = threading.Thread(target=engine, args=(w,))
    t.start()
    n_events = 0
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not errors:
            w.append_events(*_batch(n_events, 5, rng))
            w.append_raw(grams, np.full(8, 61), np.zeros(8, np.int64))
            w.tick()
            n_events += 5
    finally:
        stop.set()
        t.join(10)
        w.close({"stop_reason": "test"})
    assert not errors
    assert n_status > 100
    with RunFile(path) as f:
        assert f.n_events == n_events
        np.testing.assert_array_equal(f.events()["event_id"], np.arange(n_events))
        status = f.status()
    assert [s["n"] for s in status] == list(range(n_status))
    assert all(s["text"] == "x" * (s["n"] % 700) for s in status)
