"""Decoder: hand-written golden frames and damage cases; helpers shared by the decode tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import strategies as st

from agetdaq.protocol.decode import StreamDecoder, decode_datagrams, pack_datagrams
from agetdaq.protocol.decode_ref import ReferenceDecoder
from agetdaq.protocol.event import Channel, DecodeError, Event, EventFlag

E = DecodeError
F = EventFlag


def dg(*words: int) -> bytes:
    """Little-endian bytes of hand-written words."""
    return np.array(words, dtype="<u2").tobytes()


def nonzero(errors: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in errors.items() if v}


# ---- shared helpers (also used by test_decode_fuzz/_roundtrip.py) -----------------------------


def decode_numba(
    datagrams: Sequence[bytes],
    cuts: Sequence[int] = (),
    stride: int | None = None,
    reuse: bool = False,
    **kw,
):
    """Decode in batches split at ``cuts``; return (events, meta tuples, error dict)."""
    dec = StreamDecoder(reuse_buffers=reuse, **kw)
    buf, lengths = pack_datagrams(datagrams, stride)
    edges = [0, *sorted(c for c in cuts if 0 <= c <= len(datagrams)), len(datagrams)]
    events, meta = [], []
    for k in range(len(edges)):  # reused buffers: read each batch before the next call
        a, b = edges[k : k + 2] if k + 1 < len(edges) else (0, 0)
        batch = dec.decode(buf[a:b], lengths[a:b]) if k + 1 < len(edges) else dec.flush()
        events += batch.events()
        meta += list(
            zip(
                batch.events_table[:, 9].tolist(),  # first datagram
                batch.events_table[:, 10].tolist(),  # last datagram
                batch.size_declared.tolist(),
                batch.size_counted.tolist(),
            )
        )
    return events, meta, dec.error_counts()


def decode_reference(datagrams: Sequence[bytes], stride: int | None = None, **kw):
    ref = ReferenceDecoder(**kw)
    buf, lengths = pack_datagrams(datagrams, stride)
    for row, length in zip(buf, lengths):
        ref.feed(row.tobytes(), int(length))
    ref.flush()
    meta = [(m.first_datagram, m.last_datagram, m.size_declared, m.size_counted) for m in ref.meta]
    return ref.events, meta, ref.error_counts()


def same_list(a: list[Event], b: list[Event]) -> bool:
    return len(a) == len(b) and all(x.same_data(y) for x, y in zip(a, b))


def same_event(a: Event, b: Event) -> bool:
    return a.same_data(b) and a.flags == b.flags and a.source_id == b.source_id


def assert_numba_matches_reference(datagrams, cuts=(), stride=None, reuse=False, **kw):
    got = decode_numba(datagrams, cuts, stride, reuse, **kw)
    want = decode_reference(datagrams, stride, **kw)
    assert got[2] == want[2]
    assert len(got[0]) == len(want[0])
    for a, b in zip(got[0], want[0]):
        assert same_event(a, b), (a, b)
    assert got[1] == want[1]
    return got


@st.composite
def events_st(draw, max_channels: int = 5, max_samples: int = 24) -> Event:
    zs = draw(st.booleans())
    keys = sorted(
        draw(
            st.lists(
                st.tuples(st.sampled_from([0, 1, 15, 31]), st.integers(0, 3), st.integers(0, 78)),
                max_size=max_channels,
            )
        )
    )
    channels = []
    for card, chip, chan in keys:
        if zs:
            b = sorted(draw(st.sets(st.integers(0, 511), max_size=max_samples)))
        else:
            b = list(range(draw(st.integers(0, max_samples))))
        adc = draw(st.lists(st.integers(0, 4095), min_size=len(b), max_size=len(b)))
        channels.append(Channel(card, chip, chan, np.array(b, np.uint16), np.array(adc, np.uint16)))
    groups = list(dict.fromkeys((c.card, c.chip) for c in channels))
    hits = [(c, k, draw(st.integers(0, 127))) for c, k in groups if draw(st.booleans())]
    cells = []
    if draw(st.booleans()):
        cells = [(chip, draw(st.integers(0, 1023))) for chip in range(4)]
    return Event(
        event_type=draw(st.integers(0, 7)),
        timestamp=draw(st.integers(0, (1 << 48) - 1)),
        event_count=draw(st.integers(0, (1 << 32) - 1)),
        channels=channels,
        hit_counts=hits,
        last_cells=cells,
    )


frame_sizes = st.sampled_from([8, 12, 16, 40, 200, 1492])


# ---- golden frames -------------------------------------------------------------------------

# lead (first, seq 0) | SOF_D id 1 | size | 2 events | EOF. Event 1: type 1, ts 0x0003_0002_0001,
# count 0x0005_0004, card 1 chip 0 chan 3 (full, 3 samples). Event 2: ZS card 1 chip 2 chan 70.
GOLDEN = dg(
    0x0100, 0x0801, 0x003C,  # 30 words = 60 bytes
    0x00F1, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005,
    0xC203, 0x3010, 0x3020, 0x3FFF,
    0x00E0, 0x0018,  # 12 words
    0x00F0, 0x0000, 0x0000, 0x0000, 0x0009, 0x0000,
    0xC346, 0x0E05, 0x3001, 0x3002, 0x0E1F, 0x3003,  # 0xC000|1<<9|2<<7|70; bins 5,6 and 31
    0x8341,  # hit count card 1 chip 2 = 65
    0x00E0, 0x001E,  # 15 words
    0x000F,
)  # fmt: skip


def test_golden_frame_two_events() -> None:
    assert len(GOLDEN) == 0x3C + 2
    events, errors = decode_datagrams([GOLDEN])
    assert nonzero(errors) == {}
    assert len(events) == 2
    a, b = events
    assert (a.event_type, a.timestamp, a.event_count, a.source_id) == (
        1,
        0x3_0002_0001,
        0x5_0004,
        1,
    )
    assert [c.key() for c in a.channels] == [(1, 0, 3)]
    assert a.channels[0].bins.tolist() == [0, 1, 2]
    assert a.channels[0].adc.tolist() == [0x010, 0x020, 0xFFF]
    assert (b.event_type, b.timestamp, b.event_count, b.flags) == (0, 0, 9, F.NONE)
    assert [c.key() for c in b.channels] == [(1, 2, 70)]
    assert b.channels[0].bins.tolist() == [5, 6, 31]
    assert b.channels[0].adc.tolist() == [1, 2, 3]
    assert b.hit_counts == [(1, 2, 65)]


def test_golden_flat_tables() -> None:
    buf, lengths = pack_datagrams([GOLDEN])
    batch = StreamDecoder().decode(buf, lengths)
    assert len(batch) == 2
    assert batch.timestamp.tolist() == [0x3_0002_0001, 0]
    assert batch.n_channels.tolist() == [1, 1]
    assert batch.signal_ids.tolist() == [288 + 3, 288 + 2 * 72 + 70]
    assert batch.sample_start.tolist() == [0, 3]
    assert batch.time_bin.tolist() == [0, 1, 2, 5, 6, 31]
    assert batch.adc.tolist() == [0x10, 0x20, 0xFFF, 1, 2, 3]
    assert batch.size_declared.tolist() == batch.size_counted.tolist() == [24, 30]
    assert batch.aux_table.tolist() == [[0, 1, 2, 65]]


# An event split over 4 datagrams at awkward places: inside the SOE words (ts_mid = 0x000F looks
# like EOF), inside a channel, between EOE and its size word. Event: 12 words = 24 bytes.
SPLIT = [
    dg(0x0001, 0x0800, 0x000C, 0x00F3, 0x0011, 0x000F, 0x000F),
    dg(0x0002, 0x0800, 0x0012, 0x0033, 0x00F0, 0x0000, 0xC001, 0x3005, 0x3006, 0x000F),
    dg(0x0003, 0x0800, 0x000A, 0x3007, 0x00E0, 0x000F),
    dg(0x0004, 0x0800, 0x0008, 0x0018, 0x000F),
]


def test_golden_split_event() -> None:
    events, errors = decode_datagrams(SPLIT)
    assert nonzero(errors) == {}
    (ev,) = events
    assert (ev.event_type, ev.timestamp, ev.event_count) == (3, 0x0033_000F_0011, 0x0000_00F0)
    assert ev.channels[0].bins.tolist() == [0, 1, 2]
    assert ev.channels[0].adc.tolist() == [5, 6, 7]


@pytest.mark.parametrize("reuse", [False, True])
def test_split_event_one_datagram_per_batch(reuse: bool) -> None:
    dec = StreamDecoder(reuse_buffers=reuse)
    sizes = []
    for d in SPLIT:
        buf, lengths = pack_datagrams([d])
        sizes.append(len(dec.decode(buf, lengths)))
    assert sizes == [0, 0, 0, 1]
    assert dec.flush().events() == []


def test_missing_eoe_closes_event_truncated() -> None:
    d = dg(
        0x0100, 0x0800, 0x002A,
        0x00F0, 1, 0, 0, 1, 0, 0xC001, 0x3001,
        0x00F0, 2, 0, 0, 2, 0, 0xC002, 0x3002, 0x00E0, 0x0014,  # 10 words
        0x000F,
    )  # fmt: skip
    events, errors = decode_datagrams([d], validate=False)
    assert nonzero(errors) == {"MISSING_EOE": 1}
    assert [e.flags for e in events] == [F.TRUNCATED, F.NONE]
    assert [e.channels[0].adc.tolist() for e in events] == [[1], [2]]


def test_out_of_range_channel_and_time_bin() -> None:
    d = dg(
        0x0100, 0x0800, 0x0026,
        0x00F0, 0, 0, 0, 0, 0,
        0xC04F, 0x3001, 0x3002,  # DAQ channel 79: dropped with its samples
        0xC04E, 0x0FFE, 0x3003, 0x3004, 0x3005,  # channel 78, bins 510, 511, 512 (dropped)
        0x00E0, 0x0020,
        0x000F,
    )  # fmt: skip
    (ev,), errors = decode_datagrams([d], validate=False)
    assert nonzero(errors) == {"CHANNEL_OUT_OF_RANGE": 1, "TIME_BIN_OUT_OF_RANGE": 1}
    assert ev.flags == F.OUT_OF_RANGE
    assert [c.channel for c in ev.channels] == [78]
    assert ev.channels[0].bins.tolist() == [510, 511]


def test_eoe_size_mismatch_keeps_data() -> None:
    d = dg(0x0100, 0x0800, 0x001A, 0x00F0, 0, 0, 0, 0, 0, 0xC001, 0x3001, 0x00E0, 0x0100, 0x000F)
    (ev,), errors = decode_datagrams([d])
    assert nonzero(errors) == {"EOE_SIZE_MISMATCH": 1}
    assert ev.flags == F.SIZE_MISMATCH
    assert ev.channels[0].adc.tolist() == [1]


def test_orphans_reply_frames_and_padding() -> None:
    stream = [
        dg(0x0100, 0x0800, 0x000E, 0xC001, 0x3001, 0x3002, 0x00E0, 0x000F),  # orphans + EOE
        dg(0x0000, 0x0400, 0x0000, 0x0102, 0x4B4F, 0x0000, 0x000F),  # CFRAME reply "OK"
        # the orphan EOE takes the first word (NULL) as its size; then an empty event, count 5
        dg(0x0001, 0x0800, 0x0018, 0x0000, 0x00F0, 0, 0, 0, 5, 0, 0x00E0, 0x0010, 0x000F),
    ]
    (ev,), errors = decode_datagrams(stream)
    assert nonzero(errors) == {"ORPHAN_DATA": 4, "NOT_DATA_FRAME": 1}
    assert ev.event_count == 5 and ev.flags == F.NONE


def test_frame_size_word_and_trailing_words() -> None:
    body = [0x00F0, 0, 0, 0, 1, 0, 0x00E0, 0x0010]  # empty event, count 1: 8 words
    wrong_size = dg(0x0100, 0x0800, 0x0040, *body, 0x000F)
    trailing = dg(0x0001, 0x0800, 0x0016, *body, 0x000F, 0x1234, 0x0000)
    events, errors = decode_datagrams([wrong_size, trailing], validate=False)
    assert nonzero(errors) == {"FRAME_SIZE_MISMATCH": 2, "TRAILING_WORDS": 1}
    assert [e.event_count for e in events] == [1, 1]
    assert all(e.flags == F.NONE for e in events)
    # validated: the first frame comes before the stream is in step (no event closed yet);
    # the second, once it is, is dropped whole
    events, errors = decode_datagrams([wrong_size, trailing])
    assert nonzero(errors) == {
        "FRAME_SIZE_MISMATCH": 2,
        "TRAILING_WORDS": 1,
        "REJECTED_DATAGRAM": 1,
    }
    assert [e.event_count for e in events] == [1]


def test_malformed_rows_never_crash() -> None:
    good = dg(0x0100, 0x0800, 0x0016, 0x00F0, 0, 0, 0, 3, 0, 0x00E0, 0x0010, 0x000F)
    buf = np.zeros((5, 8), np.uint16)
    buf[4, :] = np.frombuffer(good[:16], "<u2")
    lengths = np.array([0, 3, -7, 1000, len(good)])  # empty, odd, negative, > stride, cut
    dec = StreamDecoder(validate=False)
    batch = dec.decode(buf, lengths)
    assert len(batch) == 0
    errs = nonzero(dec.error_counts())
    assert errs["SHORT_DATAGRAM"] == 3
    assert errs["NOT_DATA_FRAME"] == 1
    assert errs["FRAME_TRUNCATED"] == 1
    (ev,) = dec.flush().events()
    assert ev.flags == F.TRUNCATED | F.FRAME_TRUNCATED
    assert batch.errors.sum() == sum(errs.values())


def test_uint8_and_uint16_buffers_agree() -> None:
    buf8, lengths = pack_datagrams(SPLIT, stride=21)  # odd stride is padded to 22
    assert buf8.shape == (4, 22)
    a = StreamDecoder().decode(buf8, lengths)
    b = StreamDecoder().decode(buf8.view("<u2"), lengths)
    assert a.events()[0].same_data(b.events()[0])
    with pytest.raises(ValueError):
        StreamDecoder().decode(buf8, lengths[:2])
    with pytest.raises(ValueError):
        StreamDecoder().decode(buf8.astype(np.int32), lengths)


def test_aqs_frames_without_lead_and_unchecked_sequence() -> None:
    no_lead = [d[2:] for d in SPLIT]
    events, errors = decode_datagrams(no_lead, has_lead=False)
    assert nonzero(errors) == {} and len(events) == 1
    shuffled_leads = [dg(0x0050) + d[2:] for d in SPLIT]
    events, errors = decode_datagrams(shuffled_leads, check_seq=False)
    assert nonzero(errors) == {} and events[0].channels[0].adc.tolist() == [5, 6, 7]


def test_pack_datagrams_cuts_long_rows_but_keeps_length() -> None:
    buf, lengths = pack_datagrams([b"\x01\x02\x03", b"\x04" * 10], stride=4)
    assert buf.tolist() == [[1, 2, 3, 0], [4, 4, 4, 4]]
    assert lengths.tolist() == [3, 10]
