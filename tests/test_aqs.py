"""Legacy .aqs files: header bytes, write -> read round trips, built-event markers, sub-runs."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from agetdaq.protocol.aqs import (
    AqsFormatError,
    AqsReader,
    AqsWriter,
    chunk_path,
    header_bytes,
    parse_header,
    read_aqs,
)
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event, EventFlag

START = 1_700_000_000  # 0x6553F100


def words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}H", *ws)


def make_events(n: int, seed: int = 0) -> list[Event]:
    """Full-readout and zero-suppressed channels, hit counts and last cells."""
    rng = np.random.default_rng(seed)
    events = []
    for k in range(n):
        channels = []
        for chip in range(4):
            if k % 2:
                bins = np.concatenate([np.arange(100, 120), np.arange(300, 305)]).astype(np.uint16)
            else:
                bins = np.arange(0, 64, dtype=np.uint16)
            adc = rng.integers(0, 4096, bins.size).astype(np.uint16)
            channels.append(Channel(0, chip, 3 + 5 * chip + k % 7, bins, adc))
        events.append(
            Event(
                event_type=k % 8,
                timestamp=123_456_789 + 50_000 * k,
                event_count=k + 1,
                channels=channels,
                hit_counts=[(0, chip, 1) for chip in range(4)] if k % 3 == 0 else [],
                last_cells=[(chip, 10 * k + chip) for chip in range(4)] if k % 4 == 1 else [],
            )
        )
    return events


def assert_same(got: list[Event], want: list[Event]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.same_data(b), (a, b)
        assert a.flags == EventFlag.NONE


@pytest.mark.parametrize(
    ("run_string", "hex_header"),
    [
        ("R00001_test", "0c0100f15365"),  # 11 chars + NUL = 12, even
        ("abc", "040100f15365"),  # 3 + 1 = 4
        ("abcd", "060100f15365"),  # 4 + 1 = 5, made even: 6
        ("", "020100f15365"),  # NUL alone, made even
    ],
)
def test_header_bytes_by_hand(tmp_path, run_string, hex_header):
    assert header_bytes(run_string, START) == bytes.fromhex(hex_header)
    path = tmp_path / "h.aqs"
    AqsWriter(path, run_string, START).close()
    assert path.read_bytes() == bytes.fromhex(hex_header)  # the string itself is not written
    header = parse_header(path.read_bytes())
    assert header.start_time == START and header.name_length == int(hex_header[:2], 16)


def test_header_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="at most 254"):
        header_bytes("x" * 255, START)
    bad = tmp_path / "bad.aqs"
    bad.write_bytes(words(0x0800, 0x0006) + b"\0\0")
    with pytest.raises(AqsFormatError, match=r"not an \.aqs header"):
        read_aqs(bad)
    bad.write_bytes(b"\x0c\x01")
    with pytest.raises(AqsFormatError, match="shorter"):
        read_aqs(bad)


@pytest.mark.parametrize("built", [False, True])
def test_round_trip_identical_events(tmp_path, built):
    events = make_events(12)
    path = tmp_path / "R00007_run.aqs"
    with AqsWriter(path, "R00007_run", START) as writer:
        writer.write_events(events, built=built)
    reader = AqsReader(path)
    assert_same(list(reader.events()), events)
    assert reader.counts["data_frames"] == 12
    assert reader.counts["built_event_markers"] == (24 if built else 0)
    assert reader.counts["garbage_words"] == 0
    assert not any(reader.decoder_errors.values())


def test_events_spanning_frames_from_datagrams(tmp_path):
    """Frames not aligned to events (eof_on_eoe 0), written as received minus their lead word."""
    events = make_events(6, seed=2)
    datagrams = encode_events(events, max_frame_bytes=150, eof_on_eoe=False)
    assert len(datagrams) > 10
    path = tmp_path / "split.aqs"
    with AqsWriter(path, "split", START) as writer:
        for d in datagrams:
            writer.write_datagram(d)
    assert path.stat().st_size == 6 + sum(len(d) - 2 for d in datagrams)
    assert_same(read_aqs(path), events)


def test_hand_written_body_with_markers_sobe_and_garbage(tmp_path):
    # two one-channel events, each in its own D frame (source 1), built-event markers around the
    # first, then NULL padding, a SOBE_SIZE item (0x0006 + u32) and one unknown word
    frame1 = words(
        0x0801, 0x001C,
        0x00F0, 0x0064, 0x0000, 0x0000, 0x0001, 0x0000,  # SOE type 0, ts 100, count 1
        0xC005, 0x3100, 0x3101,  # card 0 chip 0 chan 5: bins 0, 1 = 256, 257
        0x00E0, 0x0016,  # EOE size 22 bytes (SOE .. the word after EOE)
        0x000F,
    )  # fmt: skip
    frame2 = words(
        0x0801, 0x001E,
        0x00F1, 0x00C8, 0x0000, 0x0000, 0x0002, 0x0000,  # SOE type 1, ts 200, count 2
        0xC18A, 0x0E0A, 0x3ABC,  # card 0 chip 3 chan 10: bin 10 = 0xABC
        0x00E0, 0x0016,
        0x0000,  # NULL inside the frame
        0x000F,
    )  # fmt: skip
    body = (
        words(0x0009) + frame1 + words(0x0008, 0x0000, 0x0000, 0x0006, 0x0022, 0x0000, 0x7777)
    ) + frame2
    path = tmp_path / "hand.aqs"
    path.write_bytes(bytes.fromhex("0c0100f15365") + body)
    reader = AqsReader(path)
    got = list(reader.events())
    want = [
        Event(0, 100, 1, [Channel(0, 0, 5, np.array([0, 1]), np.array([256, 257]))]),
        Event(1, 200, 2, [Channel(0, 3, 10, np.array([10]), np.array([0xABC]))]),
    ]
    assert_same(got, want)
    assert [e.source_id for e in got] == [1, 1]
    c = reader.counts
    assert (c["built_event_markers"], c["null_words"], c["sobe_items"]) == (2, 2, 1)
    assert (c["garbage_words"], c["data_frames"]) == (1, 2)


def test_truncated_file_loses_only_the_cut_event(tmp_path):
    events = make_events(5, seed=4)
    path = tmp_path / "cut.aqs"
    with AqsWriter(path, "cut", START) as writer:
        writer.write_events(events)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 41])  # cut inside the last frame, at an odd byte
    reader = AqsReader(path)
    got = list(reader.events())
    assert_same(got[:4], events[:4])
    assert len(got) == 5 and got[4].flags != EventFlag.NONE
    assert reader.counts["truncated_frames"] == 1


def test_sub_run_chunks(tmp_path):
    events = make_events(20, seed=5)
    base = tmp_path / "R00009_bg-000.aqs"
    with AqsWriter(base, "R00009_bg", START, chunk_bytes=2500) as writer:
        writer.write_events(events, built=True)
    assert len(writer.paths) > 2
    assert writer.paths[1] == tmp_path / "R00009_bg-001.aqs"
    # a built event is never split, so a file may pass the limit by the event that crossed it
    largest = max(sum(len(d) for d in encode_events([e])) for e in events) + 4
    for p in writer.paths:
        assert p.read_bytes()[:6] == bytes.fromhex("0a0100f15365")  # 9 chars + NUL = 10
        assert p.stat().st_size <= 2500 + largest
    assert_same(read_aqs(base), events)
    first_only = read_aqs(base, follow_chunks=False)
    assert 0 < len(first_only) < len(events)
    assert_same(first_only, events[: len(first_only)])
    assert chunk_path(tmp_path / "x.aqs", 3) == tmp_path / "x-003.aqs"
