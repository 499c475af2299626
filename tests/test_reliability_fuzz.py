"""Fuzzing the receiver over UDP: random and mutated datagrams from the board's address, between
good events, into a running acquisition.

For every example: a good event, a burst of bad datagrams, a good event. The acquisition must
not crash or hang, the receiver must count every datagram by kind exactly as the rules say, the
decoder must count what the reference decoder counts, and both good events must come out exact.
The board is tests/fake_board.py (it acknowledges every command and sends no data of its own).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from fake_board import FakeBoard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agetdaq.protocol import words as w
from agetdaq.protocol.decode_ref import ReferenceDecoder
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.link.receiver import DEFAULT_SLOT_SIZE
from agetdaq.readout.store.reader import RunFile

pytestmark = pytest.mark.network

KINDS = ("runt", "oversize", "odd_length", "bad_sof", "size_mismatch", "no_eof")


def receiver_kind(d: bytes, slot_size: int = DEFAULT_SLOT_SIZE) -> str:
    """Where the receiver's rules put one datagram (link/receiver.py, written out plainly)."""
    n = len(d)
    if n < 4:
        return "runt"
    if n > slot_size:
        return "oversize"
    if n & 1:
        return "odd_length"
    sof = struct.unpack_from("<H", d, 2)[0] & 0xFE00
    if sof == 0x0800:
        if n < 8 or struct.unpack_from("<H", d, 4)[0] + 2 != n:
            return "size_mismatch"
        if d[-2:] != b"\x0f\x00":
            return "no_eof"
        return "data_frames"
    if sof in (0x0400, 0x0600):
        return "replies"
    return "bad_sof"


def good_event(count: int, rng: np.random.Generator) -> Event:
    """A zero-suppressed event of a few channels with random samples."""
    channels = []
    for chip in range(4):
        for chan in sorted(rng.choice(np.arange(3, 69), size=2, replace=False).tolist()):
            start = int(rng.integers(0, 400))
            n = int(rng.integers(1, 40))
            bins = np.arange(start, start + n, dtype=np.uint16)
            channels.append(Channel(0, chip, chan, bins, rng.integers(0, 4096, n, np.uint16)))
    return Event(event_type=1, timestamp=1000 * count, event_count=count, channels=channels)


def good_datagram(ev: Event, seq: int, first: bool = False) -> bytes:
    (dg,) = encode_events([ev], first_seq=seq, first_flag=first)
    return dg


@dataclass
class FuzzRig:
    board: FakeBoard
    acq: Acquisition
    client: tuple[str, int]
    path: object
    ref: ReferenceDecoder = field(default_factory=ReferenceDecoder)
    built: list[Event] = field(default_factory=list)
    expected: dict[str, int] = field(default_factory=dict)
    rx0: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    next_count: int = 1000
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))

    def send(self, d: bytes) -> None:
        kind = receiver_kind(d)
        self.expected[kind] = self.expected.get(kind, 0) + 1
        if kind == "data_frames":
            self.ref.feed(d)
        self.board.send_raw(d, self.client)
        self.sent += 1

    def next_lead(self, skip: int = 1) -> int:
        last = self.ref.last_lead
        return 0 if last is None else (last + skip) & 0xFF

    def wait_received(self, limit_s: float = 10.0) -> None:
        rx = self.acq.link.receiver
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if rx.counters.datagrams - self.rx0["datagrams"] >= self.sent and rx.fill() == 0:
                return
            time.sleep(0.002)
        raise AssertionError("the receiver stopped taking datagrams (hang)")

    def wait_event(self, count: int, limit_s: float = 10.0) -> Event:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            for e in reversed(self.built):
                if e.event_count == count:
                    return e
            time.sleep(0.002)
        raise AssertionError(f"good event {count} never came out of the data path")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    script = tmp / "tiny.txt"
    script.write_text("eof_on_eoe 1\n")
    with FakeBoard(total_frames=0) as board:
        settings = Settings().with_daq(
            bec=f"127.0.0.1:{board.address[1]}", data_dir=str(tmp), store_waveforms="all"
        )
        acq = Acquisition(settings)
        try:
            acq.configure(str(script))
            path = tmp / "fuzz.h5"
            acq.start_run("background", "fuzz", path)
            client = ("127.0.0.1", acq.link.local_address[1])
            r = FuzzRig(board, acq, client, path)
            # the decoder the acquisition runs: the mapping's card, the credit window
            r.ref = ReferenceDecoder(card_id=0, seq_window=acq.link.credit.sequence_window())
            r.rx0 = acq.link.receiver.counters.as_dict()
            build = acq.datapath.stage("build").builder.build

            def recording(batch):
                out = build(batch)
                r.built.extend(out.decoded.events())
                return out

            acq.datapath.stage("build").builder.build = recording
            first = good_event(1, r.rng)  # waits for the kernels to compile (cold numba cache)
            r.send(good_datagram(first, 0, first=True))
            assert r.wait_event(1, limit_s=120).same_data(first)
            yield r
            assert acq.datapath.failure is None and acq.link.receiver.running
            acq.stop_run("fuzz done")
        finally:
            acq.close()
    with RunFile(path) as f:  # the raw record holds every data frame that passed the receiver
        assert f.n_datagrams == r.expected.get("data_frames", 0)


def _template() -> bytes:
    ev = good_event(0xF000_0000, np.random.default_rng(1))
    return good_datagram(ev, 0)


TEMPLATE = _template()


@st.composite
def mutated(draw) -> bytes:
    """A good data datagram with a few words overwritten, cut, lengthened or its size changed."""
    buf = bytearray(TEMPLATE)
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(buf) // 2 - 1))
        value = draw(
            st.one_of(
                st.integers(0, 0xFFFF),
                st.sampled_from([w.END_OF_FRAME, 0x00F1, 0x00E0, 0x0800, 0x0400, 0xC000]),
            )
        )
        struct.pack_into("<H", buf, 2 * pos, value)
    cut = draw(st.integers(0, len(buf)))
    data = bytes(buf[:cut]) if draw(st.booleans()) else bytes(buf)
    if draw(st.booleans()):
        data += draw(st.binary(max_size=64))
    return data


@st.composite
def well_formed(draw) -> bytes:
    """Passes the receiver (lead, SOF_D, right size word, EOF) but the body is random words."""
    body = draw(st.lists(st.integers(0, 0xFFFF), max_size=300))
    frame = [draw(st.integers(0, 0x1FF)), 0x0800 | draw(st.integers(0, 0x1FF)), 0, *body, 0x000F]
    frame[2] = 2 * (len(frame) - 1)
    return struct.pack(f"<{len(frame)}H", *frame)


bad_datagram = st.one_of(
    st.binary(max_size=1600),
    mutated(),
    well_formed(),
    st.binary(min_size=2, max_size=2).map(lambda lead: lead + b"\x00\x04" + b"\x00" * 10),
    st.just(b"\x00" * (DEFAULT_SLOT_SIZE + 2)),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=st.lists(bad_datagram, min_size=1, max_size=8))
def test_fuzzed_datagrams_are_counted_and_good_events_survive(rig: FuzzRig, bad: list[bytes]):
    before = good_event(rig.next_count, rig.rng)
    after = good_event(rig.next_count + 1, rig.rng)
    rig.next_count += 2
    rig.send(good_datagram(before, rig.next_lead(), first=rig.ref.last_lead is None))
    for d in bad:
        rig.send(d)
    # a sequence gap before the second good event: the decoder drops whatever a bad frame left
    # open (an event header may span frames, so nothing else can tell it where to resync)
    rig.send(good_datagram(after, rig.next_lead(skip=2)))
    rig.wait_received()
    got_before, got_after = rig.wait_event(before.event_count), rig.wait_event(after.event_count)
    for want, got in ((before, got_before), (after, got_after)):
        assert got.flags == 0 and got.same_data(want)
    rx = rig.acq.link.receiver.counters.as_dict()
    for kind in (*KINDS, "data_frames"):
        assert rx[kind] - rig.rx0[kind] == rig.expected.get(kind, 0), kind
    replies = sum(rx[k] - rig.rx0[k] for k in ("replies", "reply_queue_drops"))
    assert replies == rig.expected.get("replies", 0)
    assert rig.acq.datapath.stage("decode").decoder.error_counts() == rig.ref.error_counts()
    assert rig.acq.datapath.failure is None
