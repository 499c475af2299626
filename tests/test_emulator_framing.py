"""The emulator cuts datagrams as the card does (PROTOCOL.md §1.1, §8), checked on its UDP traffic.

Every data datagram is at most 8 192 bytes and its IP packet fits the MTU (payload <= MTU - 28);
every frame starts and ends between items (channel blocks, hit counts, event header, EOE + size),
so the C++ clients that restart their channel state at each frame (feminos-daq's ``Frame_Print``
and ``ReadFrame``, rawlib, restDAQ) read every channel whole. The one exception is a channel
block longer than a whole frame. The decoder reads the same events from the traffic.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_emulator_dataflow import Client

from agetdaq.protocol.decode import decode_datagrams
from agetdaq.protocol.encode import (
    FRAME_OVERHEAD_WORDS,
    MAX_DATAGRAM_BYTES,
    item_ends,
    max_datagram_bytes_for_mtu,
)
from agetdaq.protocol.words import (
    ADC_SAMPLE,
    CHAN_HIT_IX,
    END_OF_EVENT,
    END_OF_FRAME,
    N_SOE_WORDS,
    START_OF_EVENT,
    TIME_BIN_IX,
)
from agetdaq.readout.simulation.emulator.server import Emulator

pytestmark = pytest.mark.network

COMMON = ["emit_hit_cnt 1", "trig_rate 1 20", "trig_enable 0x1", "serve_target 1"]
FULL = ["aget * mode 0x1", "zero_suppress 0", *COMMON]
ZS = ["aget * mode 0x0", "subtract_ped 1", "zero_suppress 1", "zs_pre_post 8 4", "thr * * 280"]
ZS = [*ZS, *COMMON]
RESET = ["sca enable 0", "daq 0xffffff F", "rbf reset", "clr evcnt", "zero_suppress 0"]


@pytest.fixture(scope="module", params=[1500, 9000], ids=["mtu1500", "mtu9000"])
def emu(request):
    with Emulator(scenario="calibration", port=0, seed=11, bank=0, mtu=request.param) as e:
        yield e, request.param


def _take(emu: Emulator, setup: list[str], eof_on_eoe: int) -> list[bytes]:
    """The datagrams of 10 events (``event_limit 2``)."""
    c = Client(emu.address)
    for line in [*RESET, f"eof_on_eoe {eof_on_eoe}", *setup, "event_limit 0x2"]:
        assert c.cmd(line).error == 0, line
    c.collect(quiet=0.05)
    assert c.cmd("sca enable 1").error == 0
    time.sleep(0.4)
    c.sock.sendto(b"daq 0x0fffff F", emu.address)
    got = c.collect(quiet=0.5, limit=20.0)
    c.cmd("sca enable 0")
    c.cmd("daq 0xffffff F")
    return got


def check_datagrams(datagrams: list[bytes], mtu: int) -> dict[str, int]:
    """Assert the card's cutting rule on captured data datagrams; return what was seen."""
    limit = max_datagram_bytes_for_mtu(mtu)
    assert limit <= min(MAX_DATAGRAM_BYTES, mtu - 28)
    frames = [np.frombuffer(d, dtype="<u2")[1:] for d in datagrams]
    assert all(len(d) <= limit for d in datagrams), max(map(len, datagrams))
    cap = (limit - 2) // 2 - FRAME_OVERHEAD_WORDS  # body words of a full frame
    bodies = [f[2:-1] for f in frames]
    stream = np.concatenate(bodies)
    ends = item_ends(stream)
    starts = np.concatenate([[0], ends[:-1]])
    long_items = {(int(s), int(e)) for s, e in zip(starts, ends) if e - s > cap}
    cuts = np.cumsum([b.size for b in bodies])[:-1]
    seen = {"frames": len(frames), "cut_inside_long_channel": 0}
    for cut in cuts.tolist():
        if cut in set(ends.tolist()):
            continue
        # inside an item: only an item longer than a frame may be continued
        assert any(s < cut < e for s, e in long_items), f"frame cut inside an item at {cut}"
        seen["cut_inside_long_channel"] += 1
    # what a C++ client sees at a frame start: a sample (or its time bin) without its channel
    # header only where a channel longer than a frame goes on
    orphans = sum(
        1 for b in bodies if int(b[0]) & 0xF000 == ADC_SAMPLE or int(b[0]) & 0xFE00 == TIME_BIN_IX
    )
    assert orphans <= seen["cut_inside_long_channel"]
    return seen


CLIENT_RECV_BYTES = 8192  # what feminos-daq's and restDAQ's recvfrom read of a datagram


def per_frame_client(datagrams: list[bytes]) -> list[tuple[int | None, tuple[int, ...]]]:
    """The signals a C++ client that reads each data frame on its own gets, in stream order.

    A model, written from PROTOCOL.md, of how feminos-daq's ROOT output reads frames (and, for
    the channel state, its ``Frame_Print``, rawlib and restDAQ): at most 8 192 bytes of a
    datagram are read; each frame starts with no open channel; a channel header opens a signal
    (id card*288 + chip*72 + channel, computed here independently); ADC samples append to the
    open signal in order, their time bins ignored; the next channel header or the frame's end
    closes it, an empty one is dropped. Samples before any header in a frame make a signal of
    id None (feminos-daq files them under signal id 0). A frame cut short (no END_OF_FRAME)
    gives a (None, ()) marker.
    """
    signals: list[tuple[int | None, tuple[int, ...]]] = []
    for d in datagrams:
        read = d[: CLIENT_RECV_BYTES & ~1]
        words = np.frombuffer(read, dtype="<u2")[3:].tolist()  # lead, SOF_D, size
        current: int | None = None
        samples: list[int] = []
        i, closed = 0, False
        while i < len(words):
            w = words[i]
            if w & 0xC000 == CHAN_HIT_IX or w == END_OF_FRAME:
                if samples:
                    signals.append((current, tuple(samples)))
                if w == END_OF_FRAME:
                    closed = True
                    break
                current = (w >> 9 & 0x1F) * 288 + (w >> 7 & 0x3) * 72 + (w & 0x7F)
                samples = []
                i += 1
            elif w & 0xF000 == ADC_SAMPLE:
                samples.append(w & 0x0FFF)
                i += 1
            elif w & 0xFFF0 == START_OF_EVENT:
                i += 1 + N_SOE_WORDS  # timestamp and event count
            elif w & 0xFFF0 == END_OF_EVENT:
                i += 2  # with its size word
            else:
                i += 1  # hit counts, last cells, time bins: no channel state
        if not closed:
            signals.append((None, ()))
    return signals


def check_client_reads_whole_channels(datagrams: list[bytes], events, long_cuts: int) -> None:
    """The per-frame client reads every channel our decoder reads, with the same samples; only
    a channel longer than a frame arrives in pieces (``long_cuts`` continuations)."""
    got = per_frame_client(datagrams)
    want = [(c.signal_id, tuple(c.adc.tolist())) for e in events for c in e.channels if c.adc.size]
    orphans = [k for k, (sid, _) in enumerate(got) if sid is None]
    assert len(orphans) == long_cuts, f"{len(orphans)} signals without their channel header"
    merged: list[tuple[int | None, tuple[int, ...]]] = []
    for sid, samples in got:  # a continuation belongs to the signal before it
        if sid is None and merged:
            merged[-1] = (merged[-1][0], merged[-1][1] + samples)
        else:
            merged.append((sid, samples))
    assert len(merged) == len(want)
    assert merged == want


@pytest.mark.parametrize(
    "setup, eof_on_eoe",
    [(FULL, 1), (ZS, 1), (ZS, 0)],
    ids=["full", "zs", "zs-packed"],
)
def test_emulator_datagrams_follow_the_card_rule(emu, setup, eof_on_eoe) -> None:
    emulator, mtu = emu
    got = _take(emulator, setup, eof_on_eoe)
    data = [d for d in got if len(d) > 3 and d[3] & 0xFE == 0x08]
    assert data, "no data datagrams"
    seen = check_datagrams(data, mtu)
    events, errors = decode_datagrams(data)
    assert {k: v for k, v in errors.items() if v} == {}
    assert [e.event_count for e in events] == list(range(len(events))) and events
    assert sum(len(e.channels) for e in events) > 0
    check_client_reads_whole_channels(data, events, seen["cut_inside_long_channel"])
    if setup is FULL:
        assert len(events) == 10 and all(len(e.channels) == 4 * 68 for e in events)
        assert seen["cut_inside_long_channel"] == 0  # 513-word channels fit any frame
        if mtu == 1500:  # two full channels (1 026 words) never share a 732-word frame
            assert seen["frames"] >= 10 * 4 * 68
    if eof_on_eoe:
        ends = [np.frombuffer(d, dtype="<u2")[-3] & 0xFFF0 == 0x00E0 for d in data]
        assert sum(ends) == len(events)  # each event closes its last frame


def test_the_rule_check_catches_a_mid_channel_cut() -> None:
    from agetdaq.protocol.encode import encode_events
    from agetdaq.protocol.event import Channel, Event

    ev = Event(channels=[Channel(0, 1, c, np.arange(512), np.full(512, 300)) for c in range(3)])
    good = encode_events([ev], max_frame_bytes=1470)
    assert check_datagrams(good, 1500)["cut_inside_long_channel"] == 0
    check_client_reads_whole_channels(good, [ev], 0)
    bad = encode_events([ev], max_frame_bytes=1470, cut="word")
    with pytest.raises(AssertionError, match="inside an item"):
        check_datagrams(bad, 1500)
    # cut inside channels (1 539 words in 732-word frames: two cuts), the per-frame client gets
    # headless samples (feminos-daq files them under signal id 0)
    assert [sid for sid, _ in per_frame_client(bad)] == [72, 73, None, 74, None]
    with pytest.raises(AssertionError, match="without their channel header"):
        check_client_reads_whole_channels(bad, [ev], 0)
    # a datagram over 8 192 bytes is cut by the client's read: its frame arrives without its end
    big = Event(channels=[Channel(0, 1, c, np.arange(512), np.full(512, 300)) for c in range(12)])
    jumbo = encode_events([big], max_frame_bytes=8990)  # the old emulator's MTU 9000 frames
    assert max(map(len, jumbo)) > CLIENT_RECV_BYTES
    assert (None, ()) in per_frame_client(jumbo)
    short = Event(
        channels=[Channel(0, c // 64, c % 64, np.arange(9), np.ones(9)) for c in range(256)]
    )
    with pytest.raises(AssertionError):
        check_datagrams(encode_events([short], max_frame_bytes=1492), 1500)  # 1 494 B fragments
