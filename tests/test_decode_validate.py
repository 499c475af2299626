"""The decoder judges a data frame as a whole: a bad one is dropped whole and the event it fell
into stays exact; frames outside the board's sequence window never become events (numba ==
reference on every case, verdicts included)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_decode import assert_numba_matches_reference, dg, events_st
from test_decode_fuzz import data_frames

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import StreamDecoder, decode_datagrams, pack_datagrams
from agetdaq.protocol.decode_ref import ReferenceDecoder
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import EventFlag

F = EventFlag
W = 16  # the board's sequence window in these tests
VERDICT = {
    dk.V_DECODED: "decoded",
    dk.V_SKIPPED: "skipped",
    dk.V_DUPLICATE: "duplicate",
    dk.V_OUT_OF_WINDOW: "window",
    dk.V_REJECTED: "rejected",
}
BAD_WORDS = (0x0005, 0xC04F, 0x4123, 0x2000)  # unknown, channel 79, histogram, latency bin


def verdicts(datagrams, cuts=(), **kw) -> tuple[list[str], list[str]]:
    """What the kernel and the reference decided for every datagram."""
    dec = StreamDecoder(**kw)
    buf, lengths = pack_datagrams(datagrams)
    edges = [0, *sorted(c for c in cuts if 0 <= c <= len(datagrams)), len(datagrams)]
    got: list[str] = []
    for a, b in itertools.pairwise(edges):
        got += [VERDICT[int(v)] for v in dec.decode(buf[a:b], lengths[a:b]).verdict]
    ref = ReferenceDecoder(**kw)
    for row, n in zip(buf, lengths):
        ref.feed(row.tobytes(), int(n))
    return got, ref.verdicts


def frame(lead: int, body: list[int], card: int = 0) -> bytes:
    words = [lead, 0x0800 | card, 2 * (len(body) + 3), *body, 0x000F]
    return dg(*words)


def stream(evs, prologue, max_bytes: int) -> list[bytes]:
    """The prologue event in a frame of its own (the stream is in step after it), then
    ``evs`` packed back to back in small frames (events span frames)."""
    head = encode_events([prologue], eof_on_eoe=True, first_flag=False)
    return head + encode_events(
        evs, max_frame_bytes=max_bytes, eof_on_eoe=False, first_seq=len(head), first_flag=False
    )


def _card0(e) -> bool:
    return all(c.card == 0 for c in e.channels) and all(h[0] == 0 for h in e.hit_counts)


card0_event = events_st(max_channels=3, max_samples=12).filter(_card0)
card0_events = st.lists(card0_event, min_size=1, max_size=5)


@st.composite
def garbage(draw, lead_of_next: int) -> tuple[bytes, str]:
    """A bad frame and the verdict it must get, with a sequence number of one of the kinds a
    forged or mangled frame may carry (the next one, a first reply, stale, far ahead, a repeat)."""
    how = draw(st.sampled_from(["next", "first", "stale", "ahead", "repeat"]))
    prev = (lead_of_next - 1) & 0xFF
    if how == "next":
        lead, want = lead_of_next, "rejected"
    elif how == "first":
        lead, want = 0x100 | draw(st.integers(0, 255)), "rejected"
    elif how == "stale":
        lead, want = (prev - W - draw(st.integers(0, 255 - 2 * W))) & 0xFF, "window"
    elif how == "ahead":
        lead, want = (prev + W + 1 + draw(st.integers(0, 255 - 2 * W))) & 0xFF, "window"
    else:
        lead, want = prev, "duplicate"
    # enough bad words that one is read as a word, whatever raw words are pending
    bad = [draw(st.sampled_from(BAD_WORDS))] * 6
    body = draw(st.lists(st.integers(0, 0xFFFF), max_size=20))
    at = draw(st.integers(0, len(body)))
    return frame(lead, body[:at] + bad + body[at:]), want


@settings(max_examples=30)
@given(card0_events, card0_event, st.sampled_from([16, 24, 40]), st.data())
def test_bad_frames_inside_an_event_are_dropped_whole(evs, prologue, max_bytes, data) -> None:
    good = stream(evs, prologue, max_bytes)
    out, wanted = [], []
    for k, d in enumerate(good):
        out.append(d)
        wanted.append("decoded")
        if k + 1 < len(good) and data.draw(st.booleans(), label=f"garbage after {k}"):
            g, want = data.draw(garbage(good[k + 1][0]), label="garbage")
            out.append(g)
            wanted.append(want)
    cuts = data.draw(st.lists(st.integers(0, len(out)), max_size=3), label="cuts")
    kw = {"card_id": data.draw(st.sampled_from([-1, 0])), "seq_window": W}
    got, _, errors = assert_numba_matches_reference(out, cuts, **kw)
    assert len(got) == len(evs) + 1
    for a, b in zip(got, [prologue, *evs]):
        assert a.same_data(b) and a.flags == F.NONE
    assert errors["REJECTED_DATAGRAM"] == wanted.count("rejected")
    assert errors["OUT_OF_WINDOW"] == wanted.count("window")
    assert errors["DUPLICATE_DATAGRAM"] == wanted.count("duplicate")
    assert errors["SEQ_GAP"] == 0
    assert verdicts(out, cuts, **kw) == (wanted, wanted)


@settings(max_examples=20)
@given(st.integers(W, 255 - W), st.integers(1, 10), st.data())
def test_replayed_frames_behind_the_window_never_become_events(age, n, data) -> None:
    evs = _two_events(0)
    reps = age // 2 + 2
    dgs = encode_events(evs * reps, first_flag=False)  # one event per frame
    out = list(dgs)
    picks = data.draw(st.lists(st.integers(age, len(dgs) - 1), min_size=n, max_size=n))
    for k in sorted(picks, reverse=True):  # a copy of the frame ``age`` numbers back, resent
        out.insert(k + 1, dgs[k - age])
    got, _, errors = assert_numba_matches_reference(out, seq_window=W)
    assert len(got) == len(evs) * reps
    assert all(a.same_data(b) and a.flags == F.NONE for a, b in zip(got, evs * reps))
    assert errors["OUT_OF_WINDOW"] == n and errors["SEQ_GAP"] == 0


def test_frames_of_another_card_are_refused() -> None:
    ev = encode_events(_two_events(card=0))  # leads 0 and 1; in step after the first
    other_sof = frame(0x02, [0x00F0, 0, 0, 0, 9, 0, 0x00E0, 0x0010], card=5)
    other_channel = frame(0x02, [0x00F0, 0, 0, 0, 9, 0, 0xC000 | 5 << 9 | 3, 0x3001,
                                 0x00E0, 0x0014])  # fmt: skip
    for bad in (other_sof, other_channel):
        events, errors = decode_datagrams([*ev, bad], card_id=0)
        assert [e.event_count for e in events] == [1, 2]
        assert errors["FOREIGN_CARD"] == 1 and errors["REJECTED_DATAGRAM"] == 1
        events, errors = decode_datagrams([*ev, bad])  # any card: decoded
        assert [e.event_count for e in events] == [1, 2, 9]


def _two_events(card: int):
    from agetdaq.protocol.event import Channel, Event

    chans = [Channel(card, 1, 5, np.arange(3, dtype=np.uint16), np.array([7, 8, 9], np.uint16))]
    return [Event(1, 100, 1, chans), Event(1, 200, 2, chans)]


def test_a_cut_frame_in_step_is_dropped_whole_and_its_event_flagged() -> None:
    evs = _two_events(0) * 3
    dgs = encode_events(evs, max_frame_bytes=16, eof_on_eoe=False)
    good, _, _ = assert_numba_matches_reference(dgs)
    assert len(good) == 6
    g = len(dgs) // 2
    dgs[g] = dgs[g][:-4]  # two words short of its size word: the receiver would drop it too
    got, _, errors = assert_numba_matches_reference(dgs)
    assert errors["REJECTED_DATAGRAM"] == 1 and errors["SEQ_GAP"] == 1
    clean = [e for e in got if e.flags == F.NONE]
    assert len(clean) >= 4 and all(any(c.same_data(e) for e in evs) for c in clean)
    assert all(e.flags & F.SEQ_GAP for e in got if e.flags != F.NONE)


@given(
    st.lists(st.one_of(data_frames(), st.binary(max_size=60)), max_size=12),
    st.booleans(),
    st.sampled_from([-1, 0, 3]),
    st.integers(1, 128),
    st.lists(st.integers(0, 12), max_size=3),
)
def test_random_frames_numba_matches_reference(dgs, validate, card, window, cuts) -> None:
    kw = {"validate": validate, "card_id": card, "seq_window": window}
    assert_numba_matches_reference(dgs, cuts, **kw)
    got, want = verdicts(dgs, cuts, **kw)
    assert got == want


def test_a_reboot_restarts_the_sequence_and_cuts_the_open_event() -> None:
    before = encode_events(_two_events(0), max_frame_bytes=16, eof_on_eoe=False, first_flag=False)
    cut = before[:-1]  # the card reboots before the end of the second event
    after = encode_events(_two_events(0), first_seq=0, first_flag=True)  # its first reply
    got, _, errors = assert_numba_matches_reference(cut + after, seq_window=W)
    assert [(e.event_count, e.flags) for e in got] == [
        (1, F.NONE), (2, F.TRUNCATED), (1, F.NONE), (2, F.NONE),
    ]  # fmt: skip
    assert errors["MISSING_EOE"] == 1 and errors["REJECTED_DATAGRAM"] == 0


def test_the_board_is_followed_when_its_first_reply_was_lost() -> None:
    old = encode_events(_two_events(0) * 4, first_flag=False, first_seq=100)
    new = encode_events(_two_events(0) * 3, first_flag=True, first_seq=0)
    got, _, errors = assert_numba_matches_reference(old + new[1:], seq_window=W)
    # numbers 1 and 2 are out of the window of 107; the third in a row (3) is followed
    assert errors["OUT_OF_WINDOW"] == 2 and errors["SEQ_GAP"] == 1
    assert [e.event_count for e in got] == [1, 2] * 4 + [2, 1, 2]
    assert all(e.flags == F.NONE for e in got)
