"""Replay of events the DAQ shed (build flags NOT_PROCESSED and SAMPLES_IN_RAW: no features, no
channel rows, samples only in the raw datagram record): they are shown as what they are. The event
display gets their samples as recorded (raw ADC decoded from the raw record, placed on strips by
the file's own mapping and rst_len), marked not processed online, without hits; the run
histograms count them as not processed, nothing of them is re-processed."""

from __future__ import annotations

import numpy as np
import pytest
from scenario_crew import replay_messages
from test_h5_samples_in_raw import _Ring

from agetdaq.gui.synthetic import pedestal_arrays
from agetdaq.protocol.decode import decode_datagrams
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout import schema as S
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.schema import EVENT_DTYPE, NOT_PROCESSED, SAMPLES_IN_RAW
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import RunWriter, WriterConfig

MAPPING = StripMapping.default()
STRIPS = (10, 11, 130, 200)
PED_MEAN = 250.0  # pedestal_arrays' table


def _address(strip: int, rst_len: int) -> tuple[int, int, int]:
    return (
        int(MAPPING.card[strip]),
        int(MAPPING.chip[strip]),
        int(MAPPING.daq_channel(rst_len)[strip]),
    )


def _events(n: int, rst_len: int, seed: int) -> list[Event]:
    """Events with pulses on STRIPS plus one channel read at an address of no strip."""
    rng = np.random.default_rng(seed)
    lut = MAPPING.lut(rst_len)
    off_strip = int(np.flatnonzero(lut[0, 0] < 0)[0])
    out = []
    for i in range(n):
        chans = []
        for s in STRIPS:
            bins = np.arange(100, 140, dtype=np.uint16) + np.uint16(i % 5)
            adc = (PED_MEAN + rng.integers(40, 900, len(bins))).astype(np.uint16)
            chans.append(Channel(*_address(s, rst_len), bins, adc))
        bins = np.arange(20, dtype=np.uint16)
        chans.append(Channel(0, 0, off_strip, bins, np.full(20, 3000, np.uint16)))
        out.append(Event(timestamp=1000 * i + 5, event_count=i, channels=chans))
    return out


def _record(path, datagrams, rst_len: int, fills: list[int] | None = None) -> None:
    """Run the data path on a full ring (every batch shed) into a run file with raw datagrams,
    store mode ``hits``, the mapping and config as metadata and a pedestal table."""
    peds = np.zeros(len(pedestal_arrays(MAPPING)["strip"]), S.PEDESTAL_DTYPE)
    for k, v in pedestal_arrays(MAPPING).items():
        peds[k] = v
    meta = {"mapping": MAPPING.to_text(), "config": f"[daq]\nrst_len = {rst_len}\n"}
    dp = DataPath(
        _Ring(datagrams, fills),
        Processor(StripLayout.from_mapping(MAPPING, rst_len)),
        MonitorFeed(None),
        batch=16,
        chunk_events=8,
        store_waveforms="hits",
        shed_fill=0.0,
        options={"shed": {"sparse_chunk_events": 8}},  # these events are zero-suppressed
    )
    writer = RunWriter(path, EVENT_DTYPE, meta, WriterConfig(raw=True, swmr=False), peds)
    dp.begin_run(writer, 1)
    dp.end_run()
    writer.close({})


@pytest.mark.parametrize("rst_len", [0, 1])
def test_a_shed_event_is_shown_as_recorded_and_not_processed(qtbot, tmp_path, rst_len):
    sent = _events(24, rst_len, seed=rst_len)
    datagrams = encode_events(sent, eof_on_eoe=False, max_frame_bytes=400)
    want, errors = decode_datagrams(datagrams)
    assert len(want) == len(sent) and not any(errors.values())
    path = tmp_path / "shed.h5"
    _record(path, datagrams, rst_len)
    with RunFile(path) as f:
        flags = f.events()["build_flags"]
        assert np.all(flags & SAMPLES_IN_RAW) and np.all(flags & NOT_PROCESSED)
        assert len(f.channels()) == 0  # the raw record is the only copy of the samples

    msgs = replay_messages(qtbot, path, 20.0)
    events = [m for m in msgs if m.topic == "event"]
    assert events, "no event message for a shed event"
    last = events[-1]
    assert last.header["event_count"] == want[-1].event_count == len(sent) - 1

    assert last.header["processed"] is False and last.header["samples"] == "recorded"
    lut = MAPPING.lut(rst_len)
    expect = np.zeros((MAPPING.n_strips, 512), np.float32)
    for c in want[-1].channels:
        strip = int(lut[c.card, c.chip, c.channel])
        if strip >= 0:
            expect[strip, c.bins] = c.adc.astype(np.float32)
    wf = last.arrays["waveforms"]
    assert wf.shape == expect.shape
    assert np.array_equal(wf, expect)  # every sample, on its strip; the off-strip channel left out
    assert set(np.flatnonzero(wf.any(axis=1))) == set(STRIPS)
    assert "hits" not in last.arrays  # no hit decision was made online: none is made up
    assert not [m for m in msgs if m.topic == "summary" and m.header["n"]]  # no features
    hist = [m for m in msgs if m.topic == "hist"][-1].header
    assert hist["not_processed"] == hist["events"] == len(sent)
    assert sum(hist["class_counts"].values()) == 0 and hist["occupancy_events"] == 0


def test_event_accessor_matches_iter_events_for_stored_and_shed_rows(tmp_path):
    """RunFile.event(row): the same Event as iter_events yields, whether its samples are in
    channel rows (processed chunk) or only in the raw record (shed chunks)."""
    sent = _events(30, 0, seed=7)
    datagrams = encode_events(sent, eof_on_eoe=False, max_frame_bytes=8000)
    want, _ = decode_datagrams(datagrams)
    path = tmp_path / "mixed.h5"
    _record(path, datagrams, 0, fills=[0])  # first chunk processed, then shed
    with RunFile(path) as f:
        flags = f.events()["build_flags"]
        assert not np.any(flags[:8] & SAMPLES_IN_RAW) and np.all(flags[8:] & SAMPLES_IN_RAW)
        every = list(f.iter_events())
        one = [f.event(r) for r in range(f.n_events)]
        with pytest.raises(IndexError):
            f.event(f.n_events)
    assert len(one) == len(every) == len(sent)
    assert all(a.same_data(b) for a, b in zip(one, every))
    assert all(a.same_data(b) for a, b in zip(one[8:], want[8:]))
    assert sum(len(e.channels) for e in one[8:]) == len(one[8:]) * (len(STRIPS) + 1)
