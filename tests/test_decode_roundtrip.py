"""Decoder: encode -> decode round trips (numba == reference), damage across datagrams,
ADC-run scans, time-bin limit, buffer reuse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_decode import (
    F,
    assert_numba_matches_reference,
    dg,
    events_st,
    frame_sizes,
    nonzero,
    same_list,
)

from agetdaq.protocol.decode import StreamDecoder, decode_datagrams, pack_datagrams
from agetdaq.protocol.encode import CUTS, DataFramer, datagram, encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.event_block import event_words

# ---- round trips ----------------------------------------------------------------------------


@given(
    st.lists(events_st(), max_size=6),
    frame_sizes,
    st.booleans(),
    st.integers(0, 31),
    st.lists(st.integers(0, 40), max_size=4),
    st.booleans(),
    st.sampled_from(CUTS),
)
def test_round_trip_matches_reference(evs, max_bytes, eof_on_eoe, source, cuts, reuse, cut) -> None:
    # cut="word" frames end inside channels, which no card sends: the decoder copes all the same
    dgs = encode_events(
        evs, source_id=source, max_frame_bytes=max_bytes, eof_on_eoe=eof_on_eoe, cut=cut
    )
    events, meta, errors = assert_numba_matches_reference(dgs, cuts, reuse=reuse)
    assert nonzero(errors) == {}
    assert len(events) == len(evs)
    for got, want in zip(events, evs):
        assert got.same_data(want)
        assert got.flags == F.NONE and got.source_id == source
    assert all(m[2] == m[3] for m in meta)


def _frame_spans(evs: list[Event], max_bytes: int) -> list[tuple[int, int]]:
    """(first, last) datagram of each event when packed back to back (eof_on_eoe off, frames
    cut at any word)."""
    cap = DataFramer(max_frame_bytes=max_bytes).body_capacity
    spans, pos = [], 0
    for ev in evs:
        n = event_words(ev).size
        spans.append((pos // cap, (pos + n - 1) // cap))
        pos += n
    return spans


many_events = st.lists(events_st(max_channels=3, max_samples=8), min_size=3, max_size=8)


@given(many_events, st.sampled_from([16, 24, 40, 64]), st.data())
def test_sequence_gap_flags_exactly_the_cut_event(evs, max_bytes, data) -> None:
    dgs = encode_events(evs, max_frame_bytes=max_bytes, eof_on_eoe=False, cut="word")
    if len(dgs) < 3:
        return
    g = data.draw(st.integers(1, len(dgs) - 2), label="dropped datagram")
    got, _, errors = assert_numba_matches_reference(dgs[:g] + dgs[g + 1 :])
    spans = list(zip(evs, _frame_spans(evs, max_bytes)))
    before = [ev for ev, (_, last) in spans if last < g]
    spanning = [ev for ev, (first, last) in spans if first < g <= last]
    after = [ev for ev, (first, _) in spans if first > g]
    assert errors["SEQ_GAP"] == 1
    clean = [ev for ev in got if ev.flags == F.NONE]  # fragments of orphan words are never clean
    assert same_list(clean[: len(before)], before)
    # an orphan raw word (an SOE's ts/count) may pass for an SOE: that phantom event (flagged)
    # may swallow the next real SOE
    tail = clean[len(before) :]
    assert same_list(tail, after) or same_list(tail, after[1:])
    gapped = [(ev.flags, ev.event_type) for ev in got if ev.flags & F.SEQ_GAP]
    assert gapped == [(F.TRUNCATED | F.SEQ_GAP, ev.event_type) for ev in spanning]


@given(many_events, st.sampled_from([16, 40]), st.booleans(), st.data())
def test_duplicate_datagram_is_skipped(evs, max_bytes, eof_on_eoe, data) -> None:
    dgs = encode_events(evs, max_frame_bytes=max_bytes, eof_on_eoe=eof_on_eoe)
    g = data.draw(st.integers(0, len(dgs) - 1))
    got, _, errors = assert_numba_matches_reference(dgs[: g + 1] + dgs[g:])
    assert nonzero(errors) == {"DUPLICATE_DATAGRAM": 1}
    assert len(got) == len(evs)
    assert all(a.same_data(b) and a.flags == F.NONE for a, b in zip(got, evs))


@given(many_events, st.sampled_from([16, 24, 40, 1492]), st.data())
def test_truncated_frame_flags_only_its_event(evs, max_bytes, data) -> None:
    framer = DataFramer(max_frame_bytes=max_bytes, eof_on_eoe=True, cut="word")
    owner, dgs = [], []
    for k, ev in enumerate(evs):
        for f in framer.add(event_words(ev)):
            owner.append(k)
            dgs.append(dg(len(dgs) & 0xFF) + f.astype("<u2").tobytes())
    g = data.draw(st.integers(0, len(dgs) - 1), label="cut datagram")
    cut = min(3, len(dgs[g]) // 2 - 3)  # words removed; SOF and size stay
    dgs[g] = dgs[g][: -2 * cut]
    while dgs[g][-2:] == b"\x0f\x00" and len(dgs[g]) > 6:  # a raw 0x000F would pass for EOF
        dgs[g] = dgs[g][:-2]
    got, _, errors = assert_numba_matches_reference(dgs, validate=False)
    assert errors["FRAME_TRUNCATED"] == 1 and errors["FRAME_SIZE_MISMATCH"] == 1
    clean = [ev for ev in got if ev.flags == F.NONE]
    before = [ev for k, ev in enumerate(evs) if k < owner[g]]
    after = [ev for k, ev in enumerate(evs) if k > owner[g]]
    assert sum(1 for ev in got if ev.flags & F.FRAME_TRUNCATED) == 1
    assert same_list(clean[: len(before)], before)
    # Pending SOE words are dropped at a cut; if the next frame held the rest of them, one of
    # them may pass for an SOE and the phantom event (flagged) may swallow the next real SOE.
    tail = clean[len(before) :]
    assert same_list(tail, after) or same_list(tail, after[1:])


@given(st.lists(events_st(), min_size=1, max_size=3), frame_sizes, st.lists(st.integers(0, 20)))
def test_flush_returns_the_open_event_truncated(evs, max_bytes, cuts) -> None:
    framer = DataFramer(max_frame_bytes=max_bytes, eof_on_eoe=False)
    frames = [f for ev in evs[:-1] for f in framer.add(event_words(ev))]
    frames += framer.add(event_words(evs[-1])[:-2]) + framer.flush()  # the stream stops before EOE
    dgs = [datagram(f, k, k == 0) for k, f in enumerate(frames)]
    got, meta, errors = assert_numba_matches_reference(dgs, cuts)
    assert nonzero(errors) == {}
    assert len(got) == len(evs)
    assert all(a.same_data(b) for a, b in zip(got, evs))
    assert [e.flags for e in got] == [F.NONE] * (len(evs) - 1) + [F.TRUNCATED]
    assert meta[-1][2] == -1  # no size word seen


@pytest.mark.parametrize("reuse", [False, True])
def test_full_events_carried_over_many_batches(reuse: bool) -> None:
    rng = np.random.default_rng(7)
    evs = [
        Event(
            timestamp=k,
            event_count=k,
            channels=[
                Channel(0, chip, chan, np.arange(512, dtype=np.uint16), adc)
                for chip in range(2)
                for chan in range(3, 13)
                for adc in [rng.integers(0, 4096, 512).astype(np.uint16)]
            ],
        )
        for k in range(3)
    ]
    dgs = encode_events(evs, max_frame_bytes=1492, eof_on_eoe=False)
    dec = StreamDecoder(reuse_buffers=reuse)
    got = []
    buf, lengths = pack_datagrams(dgs)
    k = 0
    while k < len(dgs):  # batches of 1, 2, 3, ... datagrams
        n = 1 + len(got) + k % 3
        got += dec.decode(buf[k : k + n], lengths[k : k + n]).events()
        k += n
    got += dec.flush().events()
    assert nonzero(dec.error_counts()) == {}
    assert len(got) == 3
    assert all(a.same_data(b) and a.flags == F.NONE for a, b in zip(got, evs))


@given(st.lists(events_st(), min_size=1, max_size=4), frame_sizes, st.integers(0, 3))
def test_word_and_quad_scans_agree(evs, max_bytes, shift) -> None:
    """The kernel scans ADC runs 4 words at a time on aligned buffers, word by word otherwise."""
    buf8, lengths = pack_datagrams(encode_events(evs, max_frame_bytes=max_bytes))
    rows = buf8.view("<u2")
    store = np.zeros(rows.size + 4, np.uint16)
    shifted = store[shift : shift + rows.size].reshape(rows.shape)  # 8-byte aligned iff shift == 0
    shifted[:] = rows
    got = StreamDecoder().decode(shifted, lengths).events()
    assert len(got) == len(evs)
    assert all(a.same_data(b) for a, b in zip(got, evs))


def test_adc_run_end_matches_a_plain_scan() -> None:
    from agetdaq.protocol.decode_kernel import _adc_run_end, quad_view

    rng = np.random.default_rng(3)
    for trial in range(6):
        words = (0x3000 | rng.integers(0, 0x1000, 80)).astype(np.uint16)
        for at in rng.choice(80, size=trial * 3, replace=False):
            words[at] = rng.choice([0x2FFF, 0x4000, 0xC001, 0x0E05, 0x000F, 0x0000])
        store = np.zeros(96, np.uint16)
        for shift in range(4):  # row[0] at flat index ``shift`` of the quads
            store[shift : shift + 80] = words
            row = store[shift : shift + 80]
            for quads in (quad_view(store.reshape(1, -1)), np.zeros(0, np.uint64)):
                for j in range(0, 30):
                    for lim in range(j, 80, 3):
                        want = j
                        while want < lim and words[want] >> 12 == 3:
                            want += 1
                        assert _adc_run_end(row, quads, shift, j, lim) == want, (shift, j, lim)


@pytest.mark.parametrize("first_bin", [0, 500])
def test_samples_past_bin_511_are_dropped(first_bin: int) -> None:
    n = 520 - first_bin
    body = [0x00F0, 0, 0, 0, 0, 0, 0xC001, 0x0E00 | first_bin, *([0x3ABC] * n)]
    size = 2 * (len(body) + 2)
    d = dg(0x0100, 0x0800, 2 * (len(body) + 5), *body, 0x00E0, size, 0x000F)
    (ev,), errors = decode_datagrams([d])
    assert nonzero(errors) == {"TIME_BIN_OUT_OF_RANGE": 8}
    assert ev.flags == F.OUT_OF_RANGE
    assert ev.channels[0].bins.tolist() == list(range(first_bin, 512))
    assert set(ev.channels[0].adc.tolist()) == {0xABC}


def test_output_buffers_are_recycled_only_when_unreferenced() -> None:
    buf, lengths = pack_datagrams(encode_events([Event(event_count=k) for k in range(6)]))
    dec = StreamDecoder()
    first = dec.decode(buf[:3], lengths[:3])
    kept = first.event_count  # a view outliving its batch keeps the memory from reuse
    del first
    second = dec.decode(buf[3:], lengths[3:])
    assert kept.tolist() == [0, 1, 2] and second.event_count.tolist() == [3, 4, 5]
    assert len(dec.buffers.sets) == 2  # the first set was still in use: a second one was made
    del second, kept
    third = dec.decode(buf[:3], lengths[:3])
    assert third.event_count.tolist() == [0, 1, 2]
    assert len(dec.buffers.sets) == 2
    assert any(third.events_table.base is b[0] for b in dec.buffers.sets)
