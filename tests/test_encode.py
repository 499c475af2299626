"""Encoder against frames written by hand from PROTOCOL.md §1.2-1.4 (hex word lists)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agetdaq.protocol.encode import (
    DataFramer,
    datagram,
    encode_events,
    item_ends,
    item_ends_py,
    max_datagram_bytes_for_mtu,
    max_frame_bytes_for_mtu,
)
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.event_block import event_words, event_words_bound, write_event_kernel


def u16(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint16)


def ch(card: int, chip: int, chan: int, bins, adc) -> Channel:
    return Channel(card, chip, chan, u16(*bins), u16(*adc))


# Full readout, 2 channels x 3 samples; card 0 chip 1 channels 5 and 6; ts 0x1_0002, count 7.
FULL_EVENT = Event(
    event_type=0,
    timestamp=0x0000_0001_0002,
    event_count=7,
    channels=[
        ch(0, 1, 5, [0, 1, 2], [0x100, 0x101, 0x102]),
        ch(0, 1, 6, [0, 1, 2], [0x0FA, 0x0FB, 0xFFF]),
    ],
)
FULL_WORDS = [
    0x00F0, 0x0002, 0x0001, 0x0000, 0x0007, 0x0000,  # SOE type 0, ts lo/mid/hi, count lo/hi
    0xC085, 0x3100, 0x3101, 0x3102,  # card 0 chip 1 chan 5
    0xC086, 0x30FA, 0x30FB, 0x3FFF,  # card 0 chip 1 chan 6
    0x00E0, 0x0020,  # EOE: 16 words = 32 bytes
]  # fmt: skip

# ZS: card 2 chip 3 chan 70, bins 10-12 and 20-21; last cells; hit count 1 for that chip.
ZS_EVENT = Event(
    event_type=2,
    timestamp=0x0001_0000_0000,
    event_count=0x0001_0001,
    channels=[ch(2, 3, 70, [10, 11, 12, 20, 21], [1, 2, 3, 4, 5])],
    hit_counts=[(2, 3, 1)],
    last_cells=[(0, 1), (1, 2), (2, 0x3FF), (3, 0)],
)
ZS_WORDS = [
    0x00F2, 0x0000, 0x0000, 0x0001, 0x0001, 0x0001,
    0x1001, 0x1402, 0x1BFF, 0x1C00,  # LAST_CELL_READ chips 0..3
    0xC5C6,  # 0xC000 | 2<<9 | 3<<7 | 70
    0x0E0A, 0x3001, 0x3002, 0x3003,
    0x0E14, 0x3004, 0x3005,
    0x8581,  # HIT_CNT card 2 chip 3 count 1
    0x00E0, 0x002A,  # 21 words = 42 bytes
]  # fmt: skip


def test_full_readout_event_words() -> None:
    assert event_words(FULL_EVENT).tolist() == FULL_WORDS


def test_zero_suppressed_event_words() -> None:
    assert event_words(ZS_EVENT).tolist() == ZS_WORDS


def test_full_event_forced_zs_writes_time_bin_ix() -> None:
    words = event_words(FULL_EVENT, zero_suppressed=True).tolist()
    assert words[6:12] == [0xC085, 0x0E00, 0x3100, 0x3101, 0x3102, 0xC086]
    assert words[-2:] == [0x00E0, 0x0024]  # two more words


def test_full_readout_rejects_gappy_bins() -> None:
    with pytest.raises(ValueError, match=r"bins 0\.\.n-1"):
        event_words(ZS_EVENT, zero_suppressed=False)


@pytest.mark.parametrize(
    "event",
    [
        Event(event_type=8),
        Event(timestamp=1 << 48),
        Event(event_count=-1),
        Event(channels=[ch(0, 0, 128, [0], [0])]),
        Event(channels=[ch(0, 0, 1, [0], [0x1000])]),
        Event(channels=[ch(0, 0, 1, [512], [1])]),
        Event(channels=[ch(0, 0, 1, [0, 1], [1])]),
        Event(last_cells=[(4, 0)]),
        Event(hit_counts=[(0, 0, 128)]),
    ],
)
def test_event_words_rejects_bad_fields(event: Event) -> None:
    with pytest.raises(ValueError):
        event_words(event)


def test_eoe_size_override() -> None:
    words = event_words(FULL_EVENT, eoe_size=0x12345).tolist()
    assert words[-2:] == [0x00E1, 0x2345]


def test_hit_counts_follow_their_chip() -> None:
    ev = Event(
        channels=[ch(0, 0, 3, [0], [9]), ch(0, 1, 4, [0], [8])],
        hit_counts=[(0, 1, 1), (0, 2, 0), (0, 0, 1)],
    )
    assert event_words(ev).tolist() == [
        0x00F0, 0, 0, 0, 0, 0,
        0xC003, 0x3009, 0x8001,  # chip 0 channel, then chip 0 hit count
        0xC084, 0x3008, 0x8081,  # chip 1
        0x8100,  # chip 2 has no channel: last
        0x00E0, 0x001E,  # 15 words
    ]  # fmt: skip


def test_array_kernel_matches_and_refuses_small_buffer() -> None:
    z = np.zeros(0, np.int64)
    cards, chips, chans = np.array([0, 0]), np.array([1, 1]), np.array([5, 6])
    offsets = np.array([0, 3, 6])
    bins = np.array([0, 1, 2, 0, 1, 2])
    adc = np.array([0x100, 0x101, 0x102, 0x0FA, 0x0FB, 0xFFF])
    args = (0, 0x1_0002, 7, z, z, cards, chips, chans, offsets, bins, adc, z, z, z, False, -1)
    out = np.zeros(event_words_bound(2, 6, 0, 0), np.uint16)
    n = write_event_kernel(out, 0, *args)
    assert out[:n].tolist() == FULL_WORDS
    small = np.zeros(10, np.uint16)
    assert write_event_kernel(small, 0, *args) == -1
    assert not small.any()


# ---- frames ----------------------------------------------------------------------------------

FULL_FRAME = [0x0800, 0x0026, *FULL_WORDS, 0x000F]  # 19 words = 38 bytes


def test_single_frame_and_datagram_bytes() -> None:
    frames = DataFramer().add(event_words(FULL_EVENT))
    assert [f.tolist() for f in frames] == [FULL_FRAME]
    payload = datagram(frames[0], seq=0, first=True)
    assert payload[:8] == bytes([0x00, 0x01, 0x00, 0x08, 0x26, 0x00, 0xF0, 0x00])
    assert payload[-2:] == bytes([0x0F, 0x00])
    assert len(payload) == 40
    assert datagram(frames[0], seq=0x1FF)[:2] == bytes([0xFF, 0x00])


def test_split_event_packed_frames_cut_anywhere() -> None:
    framer = DataFramer(source_id=3, max_frame_bytes=16, eof_on_eoe=False, cut="word")
    frames = framer.add(event_words(FULL_EVENT)) + framer.flush()
    assert [f.tolist() for f in frames] == [
        [0x0803, 0x0010, 0x00F0, 0x0002, 0x0001, 0x0000, 0x0007, 0x000F],
        [0x0803, 0x0010, 0x0000, 0xC085, 0x3100, 0x3101, 0x3102, 0x000F],
        [0x0803, 0x0010, 0xC086, 0x30FA, 0x30FB, 0x3FFF, 0x00E0, 0x000F],
        [0x0803, 0x0008, 0x0020, 0x000F],  # split between EOE and its size word
    ]


def test_eof_on_eoe_ends_frame_after_each_event() -> None:
    framer = DataFramer(max_frame_bytes=30, eof_on_eoe=True, cut="word")  # 12 body words
    frames = framer.add(event_words(FULL_EVENT)) + framer.add(event_words(FULL_EVENT))
    assert framer.flush() == []
    assert [f.size for f in frames] == [15, 7, 15, 7]
    assert frames[1].tolist() == [0x0800, 0x000E, 0x30FB, 0x3FFF, 0x00E0, 0x0020, 0x000F]


def test_frames_close_at_channel_boundaries() -> None:
    framer = DataFramer(max_frame_bytes=30, eof_on_eoe=True)  # 12 body words, the card's cuts
    frames = framer.add(event_words(FULL_EVENT)) + framer.add(event_words(FULL_EVENT))
    assert (
        [f.tolist() for f in frames[:2]]
        == [
            [0x0800, 26, *FULL_WORDS[:10], 0x000F],  # header + channel 5; channel 6 would not fit
            [0x0800, 18, *FULL_WORDS[10:], 0x000F],  # channel 6 + EOE + size
        ]
    )
    assert [f.tolist() for f in frames[2:]] == [f.tolist() for f in frames[:2]]
    packed = DataFramer(source_id=3, max_frame_bytes=16, eof_on_eoe=False)  # 5 body words
    frames = packed.add(event_words(FULL_EVENT)) + packed.flush()
    assert [f.tolist() for f in frames] == [
        [0x0803, 0x0010, *FULL_WORDS[:5], 0x000F],  # the 6-word header is longer than a frame
        [0x0803, 0x0010, 0x0000, 0xC085, 0x3100, 0x3101, 0x3102, 0x000F],  # its rest + a channel
        [0x0803, 0x000E, 0xC086, 0x30FA, 0x30FB, 0x3FFF, 0x000F],
        [0x0803, 0x000A, 0x00E0, 0x0020, 0x000F],  # EOE stays with its size word
    ]


def test_a_channel_longer_than_a_frame_is_the_one_cut_inside_a_channel() -> None:
    long = ch(1, 2, 40, list(range(0, 40, 2)), list(range(20)))  # ZS: TIME_BIN_IX before each
    ev = Event(channels=[ch(1, 2, 3, [0], [7]), long, ch(1, 2, 41, [5], [8])])
    words = event_words(ev)
    frames = DataFramer(max_frame_bytes=40, eof_on_eoe=True).add(words)  # 17 body words
    bodies = [f[2:-1] for f in frames]
    assert np.array_equal(np.concatenate(bodies), words)
    starts = [int(b[0]) for b in bodies]
    assert starts[0] == 0x00F0 and starts[1] == 0xC000 | 1 << 9 | 2 << 7 | 40
    # the long channel's 41 words run over 3 frames, continued before a TIME_BIN_IX (and none
    # is left at a frame's end); its tail shares the last frame with the next channel and EOE
    assert len(frames) == 4 and all(s & 0xFE00 == 0x0E00 for s in starts[2:])
    assert all(int(b[-1]) & 0xFE00 != 0x0E00 for b in bodies)
    assert [b.size for b in bodies] == [9, 17, 16, 13]


@given(st.lists(st.integers(0, 0xFFFF), max_size=200))
def test_item_ends_kernel_matches_python(words) -> None:
    assert item_ends(u16(*words)).tolist() == item_ends_py(words)


def test_item_ends_keep_timestamps_and_sizes_with_their_words() -> None:
    # a timestamp word that looks like a channel header (0xC085) and an EOE size word that
    # looks like an SOE (0x00F4) do not open items
    words = [0x00F0, 0xC085, 0, 0, 1, 0, 0x1001, 0xC001, 0x3000, 0x8001, 0x00E0, 0x00F4]
    assert item_ends_py(words) == [7, 9, 10, 12]


def test_packed_events_share_frames() -> None:
    framer = DataFramer(max_frame_bytes=100, eof_on_eoe=False)
    frames = framer.add(event_words(FULL_EVENT)) + framer.add(event_words(ZS_EVENT))
    assert frames == []  # 37 words < 47-word body
    frames = framer.flush()
    assert [f.tolist() for f in frames] == [[0x0800, 80, *FULL_WORDS, *ZS_WORDS, 0x000F]]


def test_framer_rejects_tiny_frames() -> None:
    with pytest.raises(ValueError):
        DataFramer(max_frame_bytes=6)
    with pytest.raises(ValueError):
        DataFramer(cut="sample")


def test_datagram_sizes_for_mtu() -> None:
    # IP packet within the MTU (20 IP + 8 UDP bytes), never over the card's 8 192-byte slot
    assert max_datagram_bytes_for_mtu(1500) == 1472 and max_frame_bytes_for_mtu(1500) == 1470
    assert max_datagram_bytes_for_mtu(9000) == 8192 and max_frame_bytes_for_mtu(9000) == 8190
    with pytest.raises(ValueError):
        max_datagram_bytes_for_mtu(30)


def test_encode_events_sequence_numbers_wrap() -> None:
    dgs = encode_events([FULL_EVENT] * 3, first_seq=254, max_frame_bytes=1492)
    assert [d[:2] for d in dgs] == [b"\xfe\x01", b"\xff\x00", b"\x00\x00"]


sizes = st.sampled_from([8, 10, 16, 40, 1470, 8190])
events_words = st.lists(
    st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=300).map(lambda x: u16(*x)),
    min_size=1,
    max_size=6,
)


@given(events_words, sizes, st.booleans(), st.integers(0, 31))
def test_framing_invariants(words, max_bytes, eof_on_eoe, source) -> None:
    framer = DataFramer(source, max_bytes, eof_on_eoe, cut="word")
    frames, ends = [], []
    for w in words:
        frames += framer.add(w)
        ends.append(len(frames))
    frames += framer.flush()
    body_cap = max_bytes // 2 - 3
    for f in frames:
        assert 2 * f.size <= max_bytes
        assert f[0] == 0x0800 | source and f[1] == 2 * f.size and f[-1] == 0x000F
        assert 1 <= f.size - 3 <= body_cap
    bodies = np.concatenate([f[2:-1] for f in frames])
    assert np.array_equal(bodies, np.concatenate(words))  # nothing lost, order kept
    if eof_on_eoe:  # each event's frames hold exactly that event
        for k, w in enumerate(words):
            own = frames[(ends[k - 1] if k else 0) : ends[k]]
            assert np.array_equal(np.concatenate([f[2:-1] for f in own]), w)
            assert len(own) == -(-w.size // body_cap)
    else:
        assert all(f.size - 3 == body_cap for f in frames[:-1])


@given(events_words, sizes, st.booleans())
def test_channel_cut_invariants(words, max_bytes, eof_on_eoe) -> None:
    """Nothing lost, frames within size, each frame starts at an item unless the item it
    continues is longer than a frame, and a frame is closed early only for an item that does
    not fit in it."""
    framer = DataFramer(0, max_bytes, eof_on_eoe)
    body_cap = max_bytes // 2 - 3
    frames, starts = [], []  # (event, word) where each frame starts
    for k, w in enumerate(words):
        got = framer.add(w)
        frames += got
        starts += [k] * len(got)
    frames += framer.flush()
    assert np.array_equal(np.concatenate([f[2:-1] for f in frames]), np.concatenate(words))
    assert all(2 * f.size <= max_bytes and f.size > 3 for f in frames)
    # the items of the whole stream (per event), by absolute word position
    bounds, item_len, pos = {0}, {}, 0
    for w in words:
        prev = 0
        for e in item_ends(w).tolist():
            item_len.update({pos + i: e - prev for i in range(prev, e)})
            bounds.add(pos + e)
            prev = e
        pos += w.size
    pos = 0
    for f in frames:
        n = f.size - 3
        if pos not in bounds:
            assert item_len[pos] > body_cap  # only an item longer than a frame is continued
        end = pos + n
        if end not in bounds:
            assert item_len[end - 1] > body_cap
        pos = end
