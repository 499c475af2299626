"""Emulator data path: credits, pause, sequence numbers, framing, timeouts (PROTOCOL.md §3.4)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from agetdaq.protocol.commands import parse_reply
from agetdaq.protocol.decode import decode_datagrams
from agetdaq.protocol.encode import DataFramer, datagram
from agetdaq.readout.simulation.emulator.dataflow import DataFlow
from agetdaq.readout.simulation.emulator.framering import FrameRing
from agetdaq.readout.simulation.emulator.server import Emulator

# ---- DataFlow unit tests ---------------------------------------------------------------------


def test_frame_credit_adds_and_is_charged_per_datagram() -> None:
    df = DataFlow()
    assert df.request(3, "F", None, 0.0) is None
    df.request(2, "F", 0, 0.0)
    assert df.allowance == 5
    assert df.n_sendable(np.full(9, 1000)) == 5
    df.sent(5, 5000, 0.0)
    assert df.allowance == 0 and df.stats.tx_daq == 5


def test_byte_credit_lets_out_datagrams_while_positive() -> None:
    df = DataFlow()
    df.request(2500, "B", None, 0.0)
    # 1000 + 1000 leaves 500 > 0, so the third (1000 bytes) still goes; then nothing
    assert df.n_sendable(np.full(5, 1000)) == 3
    df.sent(3, 3000, 0.0)
    assert df.allowance == 0
    assert df.n_sendable(np.full(5, 1000)) == 0


def test_pause_clears_allowance_and_replies() -> None:
    df = DataFlow()
    df.request(100, "F", None, 0.0)
    assert df.request(0xFFFFFF, "F", None, 0.0) == "daq paused"
    assert df.allowance == 0
    assert df.credits_text() == "send_credits: 0 F"


def test_request_without_seq_resets_and_flags_first_reply() -> None:
    df = DataFlow()
    df.request(10, "F", None, 0.0)
    leads = df.take_leads(3)
    assert leads.tolist() == [0x0100, 0x0001, 0x0002]
    df.request(10, "F", 0, 0.0)
    assert df.take_leads(1).tolist() == [0x0003]
    df.request(10, "F", None, 0.0)  # no sequence number: reply index back to 0, first again
    assert df.take_leads(2).tolist() == [0x0100, 0x0001]


def test_reply_sequence_wraps_at_256() -> None:
    df = DataFlow()
    df.request(300, "F", None, 0.0)
    leads = df.take_leads(258)
    assert leads[255] == 0xFF and leads[256] == 0x00 and leads[257] == 0x01


def test_request_sequence_gap_counts_missing() -> None:
    df = DataFlow()
    df.request(1, "F", None, 0.0)
    df.request(1, "F", 0, 0.0)
    df.request(1, "F", 3, 0.0)  # 1 and 2 lost
    assert df.stats.daq_missing == 2
    df.request(1, "F", 4, 0.0)
    assert df.stats.daq_missing == 2


@pytest.mark.parametrize("policy", [0, 1, 2])
def test_credit_timeout_applies_policy_and_gives_up_after_four(policy: int) -> None:
    df = DataFlow(cred_wait_ms=200, loss_policy=policy)
    df.request(1, "F", None, 0.0)
    df.sent(1, 100, 0.0)
    assert df.poll_timeout(0.1) is None
    t, applied = 0.0, []
    for _ in range(10):
        t += 0.25
        if policy == 1:
            df.allowance = 0  # the re-credited frame is used up again
        applied.append(df.poll_timeout(t))
    assert applied[:4] == [policy] * 4
    assert all(a is None for a in applied[4:])
    assert df.stats.rx_daq_timeout == 4
    assert df.stats.tx_daq_resent == (4 if policy == 2 else 0)
    df.request(1, "F", 0, t)  # the expected request after a timeout: delayed
    assert df.stats.rx_daq_delayed == 1


def test_byte_mode_has_no_credit_timeout() -> None:
    df = DataFlow(cred_wait_ms=10)
    df.request(100, "B", None, 0.0)
    df.sent(1, 100, 0.0)
    assert df.next_deadline() is None and df.poll_timeout(10.0) is None


# ---- framing against agetdaq.protocol.encode
# ---------------------------------------------------------


@pytest.mark.parametrize("eof_on_eoe", [True, False])
def test_frame_ring_matches_reference_framer(eof_on_eoe: bool) -> None:
    rng = np.random.default_rng(5)
    bodies = [
        (0xC000 | rng.integers(0, 0x3FFF, size=n)).astype(np.uint16) for n in (3, 700, 40, 1500, 0)
    ]
    ring = FrameRing(source_id=7, max_frame_bytes=1492, capacity_bytes=1 << 20)
    ring.eof_on_eoe = eof_on_eoe
    framer = DataFramer(7, 1492, eof_on_eoe)
    ref_frames = []
    for k, body in enumerate(bodies):
        assert ring.add(k % 8, 1_000_000 * k + 17, 40 + k, body)
        size = 2 * (body.size + 8)
        words = np.concatenate(
            [
                [0xF0 | (k % 8), (1_000_000 * k + 17) & 0xFFFF, (1_000_000 * k + 17) >> 16, 0],
                [40 + k, 0],
                body,
                [0xE0 | (size >> 16), size & 0xFFFF],
            ]
        ).astype(np.uint16)
        ref_frames += framer.add(words)
    ring.close_open()
    ref_frames += framer.flush()
    starts, ends = ring.ready(1000)
    assert len(starts) == len(ref_frames)
    for i, (s, e) in enumerate(zip(starts, ends)):
        ring.buf[s] = i & 0xFF
        got = bytes(ring.bytes_view[2 * s : 2 * e])
        assert got == datagram(ref_frames[i], i, False)


def test_frame_ring_refuses_events_beyond_capacity() -> None:
    ring = FrameRing(0, 1492, capacity_bytes=64 * 1024)
    body = np.full(10_000, 0x3000, dtype=np.uint16)  # 20 kB events
    accepted = sum(ring.add(0, 0, k, body) for k in range(10))
    assert accepted == 3
    starts, _ = ring.ready(10_000)
    ring.consume(len(starts))
    assert ring.add(0, 0, 99, body)


# ---- over UDP ------------------------------------------------------------------------------------


class Client:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.data: list[bytes] = []

    def cmd(self, line: str, timeout: float = 10.0):
        self.sock.sendto(line.encode(), self.addr)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            d = self.sock.recv(65536)
            if d[3] & 0xFE == 0x08:  # a data frame in flight
                self.data.append(d)
                continue
            return parse_reply(d)
        raise TimeoutError(line)

    def collect(self, quiet: float = 0.3, limit: float = 5.0) -> list[bytes]:
        """Data datagrams until none came for ``quiet`` seconds."""
        end = time.monotonic() + limit
        self.sock.settimeout(quiet)
        while time.monotonic() < end:
            try:
                self.data.append(self.sock.recv(65536))
            except TimeoutError:
                break
        out, self.data = self.data, []
        return out


RUN = [
    "aget * mode 0x1",
    "zero_suppress 0",
    "eof_on_eoe 1",
    "trig_rate 1 20",
    "trig_enable 0x1",
    "event_limit 0x2",
    "serve_target 1",
]


@pytest.fixture(scope="module")
def emu():
    with Emulator(scenario="default", port=0, seed=3, bank=0) as e:
        yield e


def _fresh(c: Client) -> None:
    """Stop, drop what the card still holds, restart the counter."""
    for line in ("sca enable 0", "daq 0xffffff F", "rbf reset", "clr evcnt"):
        assert c.cmd(line).error == 0
    c.collect(quiet=0.1)


def _run_events(c: Client) -> None:
    _fresh(c)
    for line in RUN:
        assert c.cmd(line).error == 0
    assert c.cmd("sca enable 1").error == 0
    time.sleep(0.6)  # 10 events at 200 Hz, held by the card until credit comes


def test_no_credit_no_data_then_frame_credit_exact(emu: Emulator) -> None:
    c = Client(emu.address)
    _run_events(c)
    assert c.cmd("daq").text.strip().endswith("send_credits: 0 F")
    assert c.collect(quiet=0.3) == []
    c.sock.sendto(b"daq 0x000007 F", emu.address)
    first = c.collect()
    assert len(first) == 7
    leads = [int.from_bytes(d[:2], "little") for d in first]
    assert leads == [0x100, 1, 2, 3, 4, 5, 6]
    c.sock.sendto(b"daq 0x000005 F 0x00", emu.address)
    more = c.collect()
    assert [int.from_bytes(d[:2], "little") for d in more] == list(range(7, 12))
    assert c.cmd("daq 0xffffff F").text.strip().endswith("daq paused")
    c.sock.sendto(b"daq 0xfffff0 F 0x02", emu.address)  # 0x01 lost -> daq_missing
    rest = c.collect()
    events, errors = decode_datagrams(first + more + rest)
    assert [e.event_count for e in events] == list(range(10))
    assert errors.get("SEQ_GAP", 0) == 0
    assert all(len(e.channels) == 4 * 68 for e in events)
    assert emu.counters["daq_missing"] >= 1
    c.cmd("sca enable 0")
    c.cmd("daq 0xffffff F")


def test_byte_credit_honoured(emu: Emulator) -> None:
    c = Client(emu.address)
    _run_events(c)
    c.sock.sendto(b"daq 0x001000 B", emu.address)  # 4096 bytes
    got = c.collect()
    sizes = [len(d) for d in got]
    # full readout at MTU 1500: one 513-word channel per frame (two would not fit in 1 472 B);
    # datagrams go out while the allowance is > 0, the last one may overdraw it
    assert sizes[0] == 1046 and set(sizes[1:]) == {1034}  # the first holds the event header
    assert sum(sizes[:-1]) < 4096 <= sum(sizes)
    assert int.from_bytes(got[0][:2], "little") == 0x100
    c.cmd("daq 0xffffff B")
    c.cmd("sca enable 0")
    c.collect(quiet=0.2)


def test_datagrams_respect_mtu_and_eof_on_eoe_off(emu: Emulator) -> None:
    c = Client(emu.address)
    _fresh(c)
    c.cmd("eof_on_eoe 0")
    for line in RUN[:2] + RUN[3:]:
        c.cmd(line)
    c.cmd("sca enable 1")
    time.sleep(0.3)
    c.sock.sendto(b"daq 0x0fffff F", emu.address)
    got = c.collect(quiet=0.5)
    c.cmd("sca enable 0")
    c.cmd("daq 0xffffff F")
    c.cmd("eof_on_eoe 1")
    assert got and max(len(d) for d in got) <= 1500 - 28  # the IP packet fits the MTU
    events, errors = decode_datagrams(got)
    assert [e.event_count for e in events] == list(range(10))
    assert errors.get("EOE_SIZE_MISMATCH", 0) == 0
