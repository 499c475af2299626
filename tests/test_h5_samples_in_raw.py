"""Shed events keep their samples in the raw record only (build flag SAMPLES_IN_RAW); the reader
decodes them back from the raw datagrams, identical to what the card sent."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.protocol.decode import decode_datagrams, pack_datagrams
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.link.receiver import Batch
from agetdaq.readout.schema import EVENT_DTYPE, NOT_PROCESSED, SAMPLES_IN_RAW
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterConfig


class _Ring:
    """Stands in for the receiver: hands out prepared datagrams, always reports a full ring (so
    the data path sheds every batch)."""

    n_slots = 64

    def __init__(self, datagrams: list[bytes], fills: list[int] | None = None) -> None:
        self.buf, self.lengths = pack_datagrams(datagrams, 9216)
        self.lengths = self.lengths.astype(np.int32)
        self.pos = 0
        self.fills = list(fills or [])  # fill() answers, then a full ring

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> Batch:
        z = min(len(self.lengths), self.pos + max_n)
        a = self.pos
        return Batch(self.buf[a:z], self.lengths[a:z], np.arange(a, z, dtype=np.int64))

    def release(self, n: int) -> None:
        self.pos += n

    def fill(self) -> int:
        return self.fills.pop(0) if self.fills else self.n_slots


def _events(n: int, n_ch: int, n_samples: int, seed: int) -> list[Event]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        chans = []
        for k in range(n_ch):
            bins = np.arange(n_samples, dtype=np.uint16) + np.uint16(i % 7)
            adc = rng.integers(0, 4096, n_samples).astype(np.uint16)
            chans.append(Channel(0, k % 4, 3 + k // 4, bins, adc))
        out.append(Event(timestamp=1000 * i + 5, event_count=i, channels=chans))
    return out


def _record(tmp_path, datagrams, *, store="hits", raw=True, shed=True, fills=None, batch=16):
    layout = StripLayout.from_mapping(StripMapping.default(), 0)
    dp = DataPath(
        _Ring(datagrams, fills),
        Processor(layout),
        MonitorFeed(None),
        batch=batch,
        chunk_events=8,
        store_waveforms=store,
        shed_fill=0.0 if shed else 1.0,
        options={"shed": {"sparse_chunk_events": 8}},  # the zero-suppressed cases too
    )
    path = tmp_path / f"run-{store}-{raw}.h5"
    writer = RunWriter(path, EVENT_DTYPE, {}, WriterConfig(raw=raw, swmr=False))
    dp.begin_run(writer, 1)
    dp.end_run()
    writer.close({})
    return path


# ZS-like: several events per datagram (no EOF at the end of an event); full-like: one event in
# many datagrams
CASES = {
    "many-per-datagram": dict(events=(60, 3, 6), eof_on_eoe=False, max_frame_bytes=400),
    "many-datagrams-each": dict(events=(5, 40, 200), eof_on_eoe=True, max_frame_bytes=1400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_shed_events_are_read_back_from_the_raw_record(tmp_path, case):
    spec = CASES[case]
    sent = _events(*spec["events"], seed=len(case))
    datagrams = encode_events(
        sent, eof_on_eoe=spec["eof_on_eoe"], max_frame_bytes=spec["max_frame_bytes"]
    )
    assert len(datagrams) > 3
    want, _ = decode_datagrams(datagrams)
    assert len(want) == len(sent)

    path = _record(tmp_path, datagrams)
    with RunFile(path) as f:
        rows = f.events()
        assert len(rows) == len(sent)
        flags = rows["build_flags"]
        assert np.all(flags & NOT_PROCESSED) and np.all(flags & SAMPLES_IN_RAW)
        assert len(f.channels()) == 0  # no decoded copy of the samples in the file
        assert int(f.file["samples/adc"].shape[0]) == 0
        got = list(f.iter_events())
        # a window that starts mid-file decodes from that event's own first datagram
        tail = list(f.iter_events(len(sent) - 2))
    assert [e.event_count for e in got] == list(range(len(sent)))
    for g, w in zip(got, want):
        assert g.same_data(w)
        assert sum(len(c.adc) for c in g.channels) == sum(len(c.adc) for c in w.channels) > 0
    assert [e.event_count for e in tail] == [len(sent) - 2, len(sent) - 1]
    assert all(g.same_data(w) for g, w in zip(tail, want[-2:]))


@pytest.mark.parametrize(("store", "raw"), [("all", True), ("hits", False)])
def test_shed_events_store_samples_when_raw_is_not_enough(tmp_path, store, raw):
    """Store mode ``all`` asks for the decoded copy; without raw datagrams it is the only one."""
    sent = _events(12, 3, 6, seed=3)
    datagrams = encode_events(sent, eof_on_eoe=False, max_frame_bytes=400)
    want, _ = decode_datagrams(datagrams)
    path = _record(tmp_path, datagrams, store=store, raw=raw)
    with RunFile(path) as f:
        flags = f.events()["build_flags"]
        assert np.all(flags & NOT_PROCESSED) and not np.any(flags & SAMPLES_IN_RAW)
        assert len(f.channels()) == 3 * len(sent)
        assert f.n_datagrams == (len(datagrams) if raw else 0)
        got = list(f.iter_events())
    assert len(got) == len(want) and all(g.same_data(w) for g, w in zip(got, want))


def test_event_rows_locate_their_datagrams(tmp_path):
    """raw_first / raw_count name the datagrams an event came in (processed or not)."""
    sent = _events(4, 40, 200, seed=9)
    datagrams = encode_events(sent, eof_on_eoe=True, max_frame_bytes=1400)
    path = _record(tmp_path, datagrams, shed=False)
    with RunFile(path) as f:
        rows = f.events()
        assert not np.any(rows["build_flags"] & (NOT_PROCESSED | SAMPLES_IN_RAW))
        first, count = rows["raw_first"].astype(int), rows["raw_count"].astype(int)
        assert first[0] == 0 and np.all(count >= 2)
        assert np.array_equal(first[1:], first[:-1] + count[:-1])  # back to back (EOF on EOE)
        assert first[-1] + count[-1] == f.n_datagrams == len(datagrams)


def test_the_ring_filling_mid_batch_sheds_the_rest_of_it(tmp_path):
    """The shed decision is taken again before every processed chunk: a ring that filled while
    the first chunk was processed gets the rest of the batch recorded unprocessed."""
    sent = _events(30, 3, 6, seed=5)
    datagrams = encode_events(sent, eof_on_eoe=False, max_frame_bytes=8000)
    assert len(datagrams) < 16  # one batch
    want, _ = decode_datagrams(datagrams)
    path = _record(tmp_path, datagrams, fills=[0], batch=16)  # empty ring, then full
    with RunFile(path) as f:
        flags = f.events()["build_flags"]
        got = list(f.iter_events())
    shed = (flags & NOT_PROCESSED) != 0
    assert not shed[:8].any() and shed[8:].all()  # one chunk of 8 processed, then shed
    assert np.array_equal(shed, (flags & SAMPLES_IN_RAW) != 0)
    assert [e.event_count for e in got] == list(range(len(sent)))
    assert all(g.same_data(w) for g, w in zip(got[8:], want[8:]))  # processed: hits mode
