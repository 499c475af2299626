"""Decoder fuzzing: random and mutated datagrams never raise, numba == reference, losses counted,
and clean data after garbage decodes exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_decode import assert_numba_matches_reference, dg, events_st

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.decode_ref import ReferenceDecoder
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import EventFlag

F = EventFlag

# words that steer the decoder into every branch, plus anything at all
SPECIAL_WORDS = [
    0x0000, 0x000F, 0x00F0, 0x00F7, 0x00E0, 0x00E1, 0x0E00, 0x0FFF, 0x0FFE, 0x1000, 0x8001,
    0xC001, 0xC04E, 0xC04F, 0xC07F, 0x3000, 0x3FFF, 0x0800, 0x0400, 0x4000, 0x0005,
]  # fmt: skip
WORD_POOL = st.one_of(
    st.sampled_from(SPECIAL_WORDS), st.integers(0x3000, 0x3FFF), st.integers(0, 0xFFFF)
)


@st.composite
def data_frames(draw) -> bytes:
    """A datagram that looks like a data frame: random lead, SOF_D, a size, pool words, [EOF]."""
    body = draw(st.lists(WORD_POOL, max_size=40))
    lead = draw(st.integers(0, 0x1FF))
    size = draw(st.one_of(st.just(2 * (len(body) + 3)), st.integers(0, 0xFFFF)))
    eof = [0x000F] if draw(st.booleans()) else []
    return dg(lead, 0x0800 | draw(st.integers(0, 31)), size, *body, *eof)


datagrams = st.lists(st.one_of(data_frames(), st.binary(max_size=60)), max_size=12)


def check_tables(batch) -> None:
    """Flat-table invariants of one DecodedBatch."""
    ev, ch = batch.events_table, batch.channels_table
    n_chan = ev[:, dk.EV_N_CHAN]
    assert np.array_equal(ev[:, dk.EV_CHAN_START], np.cumsum(n_chan) - n_chan)
    assert ev[:, dk.EV_N_CHAN].sum() == len(ch)
    assert ev[:, dk.EV_N_AUX].sum() == len(batch.aux_table)
    starts = np.concatenate([[0], np.cumsum(ch[:, dk.CH_N_SAMPLES])])
    assert np.array_equal(ch[:, dk.CH_SAMPLE_START], starts[:-1])
    assert starts[-1] == len(batch.adc) == len(batch.time_bin)
    assert (ch[:, dk.CH_CHANNEL] <= 78).all()
    assert (batch.time_bin <= 511).all() and (batch.adc <= 0xFFF).all()
    assert (ev[:, dk.EV_FIRST_DGRAM] <= ev[:, dk.EV_LAST_DGRAM]).all()


def decode_checked(dgs: list[bytes], cuts=(), **kw) -> None:
    """Decode in batches checking table invariants; any damage flag must have been counted."""
    dec = StreamDecoder(reuse_buffers=True, **kw)
    buf, lengths = pack_datagrams(dgs)
    edges = [0, *sorted(c for c in cuts if c <= len(dgs)), len(dgs)]
    flags = 0
    for k in range(len(edges)):
        last = k + 1 == len(edges)
        batch = (
            dec.flush()
            if last
            else dec.decode(*(x[edges[k] : edges[k + 1]] for x in (buf, lengths)))
        )
        check_tables(batch)
        flags |= int(np.bitwise_or.reduce(batch.flags, initial=0))
    if flags & ~int(F.TRUNCATED):  # TRUNCATED alone may come from the end of input
        assert dec.errors.sum() > 0


@given(datagrams, st.booleans(), st.booleans(), st.lists(st.integers(0, 12), max_size=3))
def test_random_datagrams(dgs, has_lead, check_seq, cuts) -> None:
    assert_numba_matches_reference(dgs, cuts, has_lead=has_lead, check_seq=check_seq)
    decode_checked(dgs, cuts, has_lead=has_lead, check_seq=check_seq)


@given(
    st.integers(1, 12),
    st.integers(1, 40),
    st.data(),
)
def test_random_rows_and_lengths(rows, stride_words, data) -> None:
    words = data.draw(
        st.lists(WORD_POOL, min_size=rows * stride_words, max_size=rows * stride_words)
    )
    buf = np.array(words, np.uint16).reshape(rows, stride_words)
    lengths = data.draw(st.lists(st.integers(-4, 4 * stride_words), min_size=rows, max_size=rows))
    dec = StreamDecoder()
    check_tables(dec.decode(buf, np.array(lengths)))
    check_tables(dec.flush())
    ref = ReferenceDecoder()
    for row, n in zip(buf, lengths):
        ref.feed(row.astype("<u2").tobytes(), n)
    ref.flush()
    assert dec.error_counts() == ref.error_counts()


def _mutate(dgs: list[bytes], data) -> list[bytes]:
    out = list(dgs)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        if not out:
            break
        k = data.draw(st.integers(0, len(out) - 1), label="datagram")
        d = out[k]
        how = data.draw(
            st.sampled_from(["flip", "cut", "insert", "delete", "swap", "dup", "drop"]), label="how"
        )
        if how == "flip" and d:
            bit = data.draw(st.integers(0, 8 * len(d) - 1))
            b = bytearray(d)
            b[bit // 8] ^= 1 << (bit % 8)
            out[k] = bytes(b)
        elif how == "cut":
            out[k] = d[: data.draw(st.integers(0, len(d)))]
        elif how == "insert":
            at = 2 * data.draw(st.integers(0, len(d) // 2))
            out[k] = d[:at] + dg(*data.draw(st.lists(WORD_POOL, min_size=1, max_size=4))) + d[at:]
        elif how == "delete" and len(d) >= 2:
            at = 2 * data.draw(st.integers(0, len(d) // 2 - 1))
            out[k] = d[:at] + d[at + 2 :]
        elif how == "swap":
            j = data.draw(st.integers(0, len(out) - 1))
            out[k], out[j] = out[j], out[k]
        elif how == "dup":
            out.insert(k, d)
        elif how == "drop":
            del out[k]
    return out


streams = st.lists(events_st(max_channels=3, max_samples=10), min_size=1, max_size=5)
frame_sizes = st.sampled_from([12, 20, 40, 200])


@given(streams, streams, frame_sizes, st.booleans(), st.data())
def test_mutated_stream_then_clean_stream(evs_a, evs_b, max_bytes, eof_on_eoe, data) -> None:
    dgs_a = encode_events(evs_a, max_frame_bytes=max_bytes, eof_on_eoe=eof_on_eoe, cut="word")
    dgs_a = _mutate(dgs_a, data)
    ref = ReferenceDecoder()
    ref.feed_all(dgs_a)
    last = ref.last_lead
    first_seq = 0 if last is None else (last + 7) & 0xFF  # a sequence gap: forces a resync
    dgs_b = encode_events(
        evs_b, max_frame_bytes=max_bytes, eof_on_eoe=True, first_seq=first_seq, first_flag=False
    )
    cuts = data.draw(st.lists(st.integers(0, len(dgs_a) + len(dgs_b)), max_size=3))
    got = assert_numba_matches_reference(dgs_a + dgs_b, cuts)[0]
    decode_checked(dgs_a + dgs_b, cuts)
    tail = got[len(got) - len(evs_b) :]
    assert len(tail) == len(evs_b)
    for a, b in zip(tail, evs_b):
        assert a.same_data(b) and a.flags == F.NONE


@given(streams, frame_sizes, st.booleans(), st.data())
def test_datagram_losses_are_always_counted(evs, max_bytes, eof_on_eoe, data) -> None:
    # no first flag: a flagged datagram restarts the sequence, so its moves would go unseen
    dgs = encode_events(evs, max_frame_bytes=max_bytes, eof_on_eoe=eof_on_eoe, first_flag=False)
    out = list(dgs)
    for _ in range(data.draw(st.integers(1, 3))):
        k = data.draw(st.integers(0, len(out) - 1))
        how = data.draw(st.sampled_from(["cut", "swap", "dup", "drop", "reply"]))
        if how == "cut" and out[k]:
            out[k] = out[k][: data.draw(st.integers(0, len(out[k]) - 1))]
        elif how == "swap":
            j = data.draw(st.integers(0, len(out) - 1))
            out[k], out[j] = out[j], out[k]
        elif how == "dup":
            out.insert(data.draw(st.integers(0, len(out))), out[k])
        elif how == "drop" and 0 < k < len(out) - 1:  # losing the very start or end is undetectable
            del out[k]
        elif how == "reply":  # a CFRAME "OK" in the data stream
            out.insert(k, dg(0x0000, 0x0400, 0x0000, 0x0102, 0x4B4F, 0x0000, 0x000F))
    got, _, errors = assert_numba_matches_reference(out)
    clean = [e for e in got if e.flags == F.NONE]
    for e in clean:  # nothing damaged passes for clean
        assert any(e.same_data(o) for o in evs)
    if len(clean) != len(evs) or not all(a.same_data(b) for a, b in zip(clean, evs)):
        assert sum(errors.values()) > 0
