"""Datagrams judged as a whole in a running acquisition (real UDP from the board's address):
garbage between the two datagrams of an event leaves every good event exact; frames replayed
or forged with stale sequence numbers are rejected, never lost, never events. The board is
tests/fake_board.py (it answers commands and sends no data of its own)."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fake_board import FakeBoard
from test_reliability_fuzz import good_event, receiver_kind

from agetdaq.protocol.encode import DataFramer, datagram, encode_events
from agetdaq.protocol.event import Event
from agetdaq.protocol.event_block import event_words
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.store.reader import RunFile

pytestmark = pytest.mark.network
BAD_WORDS = (0x0005, 0xC04F, 0x4123, 0x2000)  # unknown, channel 79, histogram, latency bin


@dataclass
class Rig:
    board: FakeBoard
    acq: Acquisition
    client: tuple[str, int]
    tmp: Path
    runs: int = 0

    def run(self, datagrams: list[bytes]) -> tuple[list[Event], dict, dict]:
        """One run fed with ``datagrams``: the events in its file, its counters and losses."""
        self.runs += 1
        path = self.tmp / f"run{self.runs}.h5"
        rx = self.acq.link.receiver
        before = rx.counters.datagrams
        credit0 = self.acq.link.credit.counters.as_dict()
        self.acq.start_run("background", "validation", path)
        for k, d in enumerate(datagrams):
            self.board.send_raw(d, self.client)
            if k % 64 == 63:
                time.sleep(0.002)  # loopback is fast; the DAQ's socket buffer is not endless
        end = time.monotonic() + 30
        while rx.counters.datagrams - before < len(datagrams) or rx.fill():
            assert time.monotonic() < end, "the receiver stopped taking datagrams"
            time.sleep(0.01)
        self.acq.stop_run("validation done")
        with RunFile(path) as f:
            events = list(f.iter_events())
        counters = self.acq.counters()
        credit = self.acq.link.credit.counters.as_dict()
        counters["credit"] = {k: credit[k] - credit0[k] for k in credit}  # this run's
        return events, counters, self.acq.losses()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    script = tmp / "tiny.txt"
    script.write_text("eof_on_eoe 1\n")
    with FakeBoard(total_frames=0) as board:
        settings = Settings().with_daq(
            bec=f"127.0.0.1:{board.address[1]}", data_dir=str(tmp), store_waveforms="all"
        )
        acq = Acquisition(settings)
        try:
            acq.configure(str(script))
            yield Rig(board, acq, ("127.0.0.1", acq.link.local_address[1]), tmp)
        finally:
            acq.close()


def split(ev: Event) -> list[np.ndarray]:
    """The frames of one event cut in two (or three) at about half its words."""
    words = event_words(ev)
    framer = DataFramer(0, max_frame_bytes=2 * (len(words) // 2 + 4), eof_on_eoe=True)
    return framer.add(words) + framer.flush()


def garbage(rng: np.random.Generator, lead_of_next: int, window: int) -> tuple[bytes, str]:
    """A bad datagram from the board's address and what must become of it."""
    how = rng.choice(["bytes", "next", "first", "stale", "ahead", "repeat"])
    if how == "bytes":  # random bytes: the receiver's checks
        return rng.bytes(int(rng.integers(0, 300))), "receiver"
    prev = (lead_of_next - 1) & 0xFF
    lead, want = {
        "next": (lead_of_next, "rejected"),
        "first": (0x100 | int(rng.integers(0, 256)), "rejected"),
        "stale": ((prev - window - int(rng.integers(0, 256 - 2 * window))) & 0xFF, "window"),
        "ahead": ((prev + window + 1 + int(rng.integers(0, 256 - 2 * window))) & 0xFF, "window"),
        "repeat": (prev, "duplicate"),
    }[str(how)]
    body = [int(w) for w in rng.integers(0, 0x10000, int(rng.integers(0, 40)))]
    at = int(rng.integers(0, len(body) + 1))
    body = body[:at] + [int(rng.choice(BAD_WORDS))] * 6 + body[at:]
    words = [lead, 0x0800, 2 * (len(body) + 3), *body, 0x000F]
    return struct.pack(f"<{len(words)}H", *words), want


def test_garbage_between_the_datagrams_of_an_event_leaves_every_good_event_exact(rig):
    rng = np.random.default_rng(13)
    window = rig.acq.link.credit.sequence_window()
    good = [good_event(1000 + k, rng) for k in range(400)]
    out: list[bytes] = []
    fate: dict[str, int] = {}
    seq = 0
    for k, ev in enumerate(good):
        for j, frame in enumerate(split(ev)):
            if j and k and rng.random() < 0.2:  # between two datagrams of one event
                d, want = garbage(rng, seq & 0xFF, window)
                if want == "receiver" and receiver_kind(d) == "data_frames":
                    want = "decoded"  # random bytes that pass for a frame: not a case here
                fate[want] = fate.get(want, 0) + 1
                out.append(d)
            out.append(datagram(frame, seq & 0xFF, first=seq == 0))
            seq += 1
    assert fate.get("decoded", 0) == 0
    events, counters, losses = rig.run(out)
    assert len(events) == len(good)
    for got, want in zip(events, good):
        assert got.flags == 0 and got.same_data(want), want.event_count
    decoder = counters["decoder"]
    assert decoder.get("REJECTED_DATAGRAM", 0) == fate.get("rejected", 0) > 5
    assert decoder.get("OUT_OF_WINDOW", 0) == fate.get("window", 0) > 5
    assert decoder.get("DUPLICATE_DATAGRAM", 0) == fate.get("duplicate", 0)
    seq_counts = counters["sequence"]
    assert seq_counts["rejected"] == fate["rejected"] + fate["window"]
    assert seq_counts["missing"] == 0 and seq_counts["late"] == 0
    assert losses["link"]["lost_datagrams"] == 0
    assert counters["builder"]["damaged"] == 0 and counters["builder"]["missing"] == 0
    print(f"garbage between datagrams of one event: {fate}; {len(good)} good events exact")


def test_replayed_and_forged_frames_are_rejected_not_lost(rig):
    rng = np.random.default_rng(5)
    window = rig.acq.link.credit.sequence_window()
    good = [good_event(5000 + k, rng) for k in range(200)]
    dgs = encode_events(good)  # one event per datagram, numbers 0.. (first flagged)
    out = list(dgs)
    picks = sorted(rng.choice(np.arange(150, 200), size=10, replace=False), reverse=True)
    for forged, k in enumerate(picks):
        age = int(rng.integers(window, 130))
        stale = dgs[k - age]  # a copy of an earlier frame, number and all (a replay)
        if forged % 2:  # or the same frame with a number far ahead (a forgery)
            ahead = (k + 1 + window + int(rng.integers(0, 100))) & 0xFF
            stale = struct.pack("<H", ahead) + stale[2:]
        out.insert(k + 1, stale)
    events, counters, losses = rig.run(out)
    assert [e.event_count for e in events] == [e.event_count for e in good]
    assert all(e.flags == 0 and e.same_data(g) for e, g in zip(events, good))
    assert losses["link"] == {
        "lost_datagrams": 0,
        "late_datagrams": 0,
        "duplicate_datagrams": 0,
        "rejected_datagrams": 10,
    }
    assert counters["decoder"].get("OUT_OF_WINDOW") == 10
    assert counters["credit"]["lost_replies"] == 0  # the credit loop is not fooled either
    assert counters["builder"]["duplicates"] == 0 and counters["builder"]["missing"] == 0
