"""agetdaq convert: .aqs <-> run file (events identical both ways), pcap -> run file, CLI."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from agetdaq.protocol.aqs import AqsReader, AqsWriter, read_aqs
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.pcap import write_pcap
from agetdaq.readout.cli import main
from agetdaq.readout.cli.convert import convert
from agetdaq.readout.datapath.offline import to_h5
from agetdaq.readout.schema import NOT_PROCESSED
from agetdaq.readout.store.convert import (
    ConvertError,
    compare_events,
    ends_event,
    h5_to_aqs,
    record_events,
)
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.store.writer import WriterConfig

START = 1_700_000_000


def make_events(n: int, seed: int = 1) -> list[Event]:
    """Zero-suppressed and full-readout channels on all chips, hit counts, last cells."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        channels = []
        for chip in range(4):
            if k % 3 == 0:
                bins = np.arange(512, dtype=np.uint16)
            else:
                bins = np.concatenate([np.arange(90, 130), np.arange(400, 410)]).astype(np.uint16)
            adc = rng.integers(200, 4096, bins.size).astype(np.uint16)
            channels.append(Channel(0, chip, 3 + 4 * chip + k % 5, bins, adc))
        out.append(
            Event(
                event_type=1,
                timestamp=10_000 + 2_500 * k,
                event_count=k,
                channels=channels,
                hit_counts=[(0, chip, 1) for chip in range(4)] if k % 2 else [],
                last_cells=[(chip, 7 * k + chip) for chip in range(4)] if k % 4 == 1 else [],
            )
        )
    return out


def assert_same(got: list[Event], want: list[Event]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.same_data(b)


@pytest.fixture
def aqs_run(tmp_path):
    events = make_events(12)
    path = tmp_path / "R00042_calib.aqs"
    with AqsWriter(path, "R00042_calib", START) as w:
        w.write_events(events, built=True)
    return path, events


def test_aqs_to_h5_keeps_every_event_and_the_frames(tmp_path, aqs_run):
    path, events = aqs_run
    report = to_h5(path, tmp_path / "r.h5")
    assert report.events == 12 and report.datagrams == len(list(AqsReader(path).frames()))
    with RunFile(tmp_path / "r.h5") as f:
        assert_same(list(f.iter_events()), events)
        rows = f.events()
        assert np.array_equal(rows["event_count"], np.arange(12))
        assert np.all(rows["build_flags"] & NOT_PROCESSED)
        meta = f.metadata()
        assert meta["run_number"] == "42" and meta["source_format"] == "aqs"
        raw = list(f.datagrams())
        assert [d[2:] for d in raw] == list(AqsReader(path).frames())  # frames kept verbatim
        assert raw[0][:2] == b"\x00\x01" and raw[1][:2] == b"\x01\x00"  # first flag, then seq
        assert f.final()["stop_reason"] == "converted"
    assert report.counters["aqs"]["built_event_markers"] == 24


def test_h5_to_aqs_round_trip_is_identical_both_ways(tmp_path, aqs_run):
    path, events = aqs_run
    to_h5(path, tmp_path / "r.h5")
    report = h5_to_aqs(tmp_path / "r.h5", tmp_path / "back.aqs", built=True)
    assert report.datagrams == len(list(AqsReader(path).frames()))
    assert report.events == 12
    assert (tmp_path / "back.aqs").read_bytes() == path.read_bytes()  # header, markers, frames
    assert_same(read_aqs(tmp_path / "back.aqs"), events)
    h5_to_aqs(tmp_path / "r.h5", tmp_path / "plain.aqs")
    reader = AqsReader(tmp_path / "plain.aqs")
    assert_same(list(reader.events()), events)
    assert reader.counts["built_event_markers"] == 0


def test_h5_to_aqs_splits_sub_runs(tmp_path, aqs_run):
    path, events = aqs_run
    to_h5(path, tmp_path / "r.h5")
    report = h5_to_aqs(tmp_path / "r.h5", tmp_path / "s.aqs", chunk_bytes=8_000)
    assert len(report.counters["files"]) > 2
    assert_same(read_aqs(tmp_path / "s.aqs"), events)  # the reader follows s-001.aqs ...


def test_run_file_without_raw_datagrams_is_re_encoded(tmp_path, aqs_run):
    path, events = aqs_run
    to_h5(path, tmp_path / "noraw.h5", writer_config=WriterConfig(raw=False, swmr=False))
    report = h5_to_aqs(tmp_path / "noraw.h5", tmp_path / "x.aqs", built=True)
    assert report.events == 12 and "re-encoded" in report.notes[0]
    assert_same(read_aqs(tmp_path / "x.aqs"), events)


def test_built_event_rule_is_feminos_daq_s():
    # SOF_D 0x0800, size 12, ..., EOE 0x00E0 + size 0x0020, EOF: ends an event
    ends = struct.pack("<7H", 0x0000, 0x0800, 12, 0x3123, 0x00E0, 0x0020, 0x000F)
    # ... channel data last: the event goes on in the next frame
    goes_on = struct.pack("<7H", 0x0001, 0x0800, 12, 0xC003, 0x3123, 0x3124, 0x000F)
    assert ends_event(ends) and not ends_event(goes_on) and not ends_event(ends[:6])


def test_pcap_to_h5_takes_the_board_datagrams(tmp_path):
    events = make_events(5)
    data = encode_events(events)
    board, pc = ("10.0.0.2", 1122), ("10.0.0.1", 5000)
    recs = [(1.0, pc, board, b"daq 0x000010 F")]
    recs += [(1.0 + 0.01 * i, board, pc, d) for i, d in enumerate(data)]
    write_pcap(tmp_path / "c.pcap", recs)
    report = convert(tmp_path / "c.pcap", tmp_path / "c.h5")
    assert report.datagrams == len(data)
    with RunFile(tmp_path / "c.h5") as f:
        assert list(f.datagrams()) == data  # captured lead words kept
        assert_same(list(f.iter_events()), events)
    assert compare_events(record_events(tmp_path / "c.pcap"), record_events(tmp_path / "c.h5")) == {
        "events_a": 5,
        "events_b": 5,
        "differ": 0,
    }


def test_convert_refuses_what_it_cannot_do(tmp_path, aqs_run):
    path, _ = aqs_run
    with pytest.raises(ConvertError, match="no conversion"):
        convert(path, tmp_path / "x.aqs")
    with pytest.raises(ConvertError, match="unknown output format"):
        convert(path, tmp_path / "x.txt")
    with pytest.raises(ConvertError, match="same file"):
        convert(path, path)
    (tmp_path / "junk.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(ConvertError):
        convert(tmp_path / "junk.bin", tmp_path / "y.h5")


def test_compare_events_counts_differences():
    a, b = make_events(4), make_events(5)
    b[2].channels[0].adc[0] ^= 1
    assert compare_events(a, b) == {"events_a": 4, "events_b": 5, "differ": 1}


def test_cli_convert_and_verify(tmp_path, aqs_run, capsys):
    path, _ = aqs_run
    out = tmp_path / "r.h5"
    assert main(["convert", str(path), str(out), "--verify", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verify"] == {"events_a": 12, "events_b": 12, "differ": 0}
    assert main(["convert", str(path), str(out)]) == 2  # exists
    assert "--force" in capsys.readouterr().err
    assert (
        main(["convert", str(out), "-o", str(tmp_path / "b.aqs"), "--built", "--verify", "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["verify"]["differ"] == 0
    assert main(["dump", str(tmp_path / "b.aqs"), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 12 and json.loads(lines[0])["event_count"] == 0
