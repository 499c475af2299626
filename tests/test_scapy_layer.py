"""scapy dissection of board traffic: hand-written datagrams in a real pcap, read back by rdpcap."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.pcap import PcapRecord, ethernet_frame, write_pcap
from agetdaq.protocol.scapy_layer import (
    DEFAULT_PORT,
    FeminosCommand,
    FeminosDatagram,
    bind_port,
    bound_port,
)

BOARD = ("192.168.10.1", 1122)
PC = ("192.168.10.100", 40000)


def words(*ws: int) -> bytes:
    return struct.pack(f"<{len(ws)}H", *ws)


# Data datagram, by hand from PROTOCOL.md §1.2-1.4: seq 5 + first flag, SOF_D of source 3, size 34,
# SOE type 2, ts 0x0012_3456_789A, count 77, channel (card 0, chip 1, chan 17) with TIME_BIN_IX 100
# and two samples, channel (0, 2, 3) with one sample, EOE size 40, EOF.
DATA = words(
    0x0105, 0x0803, 0x0022,
    0x00F2, 0x789A, 0x3456, 0x0012, 0x004D, 0x0000,
    0xC091, 0x0E64, 0x30FA, 0x30FB,
    0xC103, 0x3005,
    0x00E0, 0x0028,
    0x000F,
)  # fmt: skip
# CFRAME reply: lead 0, SOF_C source 0, error -2, ASCII_MSG_LEN 5, "hello" + NUL (even), EOF.
REPLY = words(0x0000, 0x0400, 0xFFFE, 0x0105) + b"hello\x00" + words(0x000F)
# MFRAME `cmd stat` reply: CMD_STATISTICS + 9 u32 (low word first), size = 2 * 22 = 44.
STAT = words(0x0000, 0x0600, 44, 0x000A, *[v for k in range(9) for v in (k + 1, 0)], 0x000F)
COMMAND = b"daq 0x000010 F 0x05\n"


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "board.pcap"
    write_pcap(
        path,
        [
            PcapRecord(1.0, PC, BOARD, COMMAND),
            PcapRecord(1.5, BOARD, PC, DATA),
            PcapRecord(2.0, BOARD, PC, REPLY),
            PcapRecord(2.5, BOARD, PC, STAT),
        ],
    )
    return path


def test_rdpcap_dissects_every_payload(capture):
    cmd, data, reply, stat = rdpcap(str(capture))
    assert FeminosCommand in cmd and FeminosDatagram not in cmd
    assert cmd[FeminosCommand].text == COMMAND
    assert cmd[FeminosCommand].verb == "daq"
    assert cmd[FeminosCommand].malformed == ""

    d = data[FeminosDatagram]
    assert (d.seq, d.lead_flags.first, d.kind, d.version, d.source_id) == (5, True, "D", 0, 3)
    assert d.size == 34 and d.eof == 0x000F and d.malformed == ""
    (ev,) = d.events
    assert (ev.type, ev.timestamp, ev.event_count, ev.complete) == (2, 0x123456789A, 77, 1)
    assert [(c.card, c.chip, c.channel, c.n_samples, c.first_bin) for c in d.channels] == [
        (0, 1, 17, 2, 100),
        (0, 2, 3, 1, -1),
    ]
    assert [e.size for e in d.ends] == [40]
    assert d.other_words == 0 and d.continued_samples == 0

    r = reply[FeminosDatagram]
    assert (r.kind, r.error, r.text, r.msg_word, r.eof) == ("C", -2, "hello", 0x0105, 0x000F)
    assert r.malformed == ""

    m = stat[FeminosDatagram]
    assert (m.kind, m.size, m.content, m.malformed) == ("M", 44, "CMD_STATISTICS", "")


def test_show_is_readable_and_raw_bytes_survive(capture):
    packets = rdpcap(str(capture))
    text = packets[1].show(dump=True)
    for needle in ("Feminos datagram", "source_id = 3", "event_count= 77", "n_samples = 2"):
        assert needle in text
    assert "text      = 'hello'" in packets[2].show(dump=True)
    assert "Feminos D seq=5 src=3 1 SOE 2 ch" in packets[1].summary()
    for pkt, payload in zip(packets, (COMMAND, DATA, REPLY, STAT)):
        assert bytes(pkt[UDP].payload) == payload


def test_write_then_read_pcap_keeps_direction_and_time(capture):
    from agetdaq.protocol.pcap import read_pcap

    records = list(read_pcap(capture))
    assert [r.timestamp for r in records] == [1.0, 1.5, 2.0, 2.5]
    assert [(r.src, r.dst) for r in records] == [(PC, BOARD)] + [(BOARD, PC)] * 3
    assert [r.payload for r in records] == [COMMAND, DATA, REPLY, STAT]


def test_building_datagrams_from_fields():
    data = FeminosDatagram(seq=5, lead_flags="first", sof=0x0803, body=DATA[6:-2])
    assert bytes(data) == DATA
    reply = FeminosDatagram(seq=0, sof=0x0400, error=-2, text="hello")
    assert bytes(reply) == REPLY


def test_summary_matches_encoded_events():
    rng = np.random.default_rng(3)
    events = [
        Event(
            timestamp=1000 + k,
            event_count=k,
            channels=[
                Channel(
                    0,
                    chip,
                    10 + chip,
                    np.arange(5, 45, dtype=np.uint16),
                    rng.integers(0, 4096, 40).astype(np.uint16),
                )
                for chip in range(4)
            ],
        )
        for k in range(3)
    ]
    datagrams = encode_events(events, max_frame_bytes=200, eof_on_eoe=False, cut="word")
    dissected = [Ether(ethernet_frame(BOARD, PC, d))[FeminosDatagram] for d in datagrams]
    assert len(dissected) > 3
    assert all(d.malformed == "" for d in dissected)
    assert [d.seq for d in dissected] == list(range(len(dissected)))
    assert [e.event_count for d in dissected for e in d.events] == [0, 1, 2]
    assert [c.channel for d in dissected for c in d.channels] == [10, 11, 12, 13] * 3
    # channels cut by a frame end continue at the start of the next frame
    assert any(d.continued_samples for d in dissected)
    total = sum(c.n_samples for d in dissected for c in d.channels)
    assert total + sum(d.continued_samples for d in dissected) == 3 * 4 * 40


GARBAGE = [
    b"",
    b"\x01",
    b"\x05\x01\x03",
    words(0x0001, 0x0803, 0xFFFF),  # impossible size
    words(0x0001, 0x0803, 0x0100, 0x00F2),  # size beyond the datagram
    words(0x0001, 0x0803, 0x0008, 0x1234, 0x0000),  # no END_OF_FRAME
    words(0x0000, 0x0400, 0x0000, 0x0150) + b"abc",  # text cut short
    words(0x0000, 0x0400, 0x0000, 0x3000, 0x000F),  # no ASCII_MSG_LEN
    DATA + b"\xff\xff",  # trailing bytes
    words(0x0001, 0xFFFF, 0xFFFF),  # not a start of frame
]


@pytest.mark.parametrize("payload", GARBAGE)
def test_malformed_payloads_are_flagged_not_raised(tmp_path, payload):
    path = tmp_path / "bad.pcap"
    write_pcap(path, [PcapRecord(0.0, BOARD, PC, payload)])
    (pkt,) = rdpcap(str(path))
    if payload:
        d = pkt[FeminosDatagram]
        assert d.malformed != ""
        d.show(dump=True)
        d.summary()
        d.events  # noqa: B018 (lazy summary must not raise either)
    assert bytes(pkt[UDP].payload) == payload


@given(st.binary(max_size=200), st.booleans())
def test_random_payloads_never_raise(payload, to_board):
    src, dst = (PC, BOARD) if to_board else (BOARD, PC)
    pkt = Ether(ethernet_frame(src, dst, payload))
    layer = pkt[UDP].payload
    if payload:  # a failed dissection would leave Raw right under UDP
        assert isinstance(layer, (FeminosDatagram, FeminosCommand))
    layer.show(dump=True)
    if isinstance(layer, FeminosDatagram):
        layer.channels  # noqa: B018
    assert bytes(layer) == payload


def test_bind_port_moves_the_dissector():
    try:
        bind_port(5000)
        assert bound_port() == 5000
        moved = Ether(ethernet_frame(("10.0.0.1", 5000), PC, DATA))
        assert moved[FeminosDatagram].source_id == 3
        old = Ether(ethernet_frame(BOARD, PC, DATA))
        assert FeminosDatagram not in old
        with pytest.raises(ValueError):
            bind_port(0)
    finally:
        bind_port(DEFAULT_PORT)
    assert FeminosDatagram in Ether(ethernet_frame(BOARD, PC, DATA))


# ---- pcap reading beyond our own writer -----------------------------------------------------


def test_read_pcap_other_links_and_skipped_packets(tmp_path):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, CookedLinux
    from scapy.utils import wrpcap, wrpcapng

    from agetdaq.protocol.pcap import datagrams_from_pcap, new_stats, read_pcap

    udp = IP(src=BOARD[0], dst=PC[0]) / UDP(sport=1122, dport=PC[1]) / DATA
    packets = [
        Ether() / udp,
        Ether() / ARP(),
        Ether() / IP() / TCP(),
        Ether() / IP(src=BOARD[0], flags="MF") / UDP(sport=1122) / b"frag",
        Ether() / IP(src=PC[0], dst=BOARD[0]) / UDP(sport=PC[1], dport=1122) / COMMAND,
    ]
    for k, p in enumerate(packets):
        p.time = 100 + k / 4
    ng = tmp_path / "board.pcapng"
    wrpcapng(str(ng), packets)
    stats = new_stats()
    records = list(read_pcap(ng, stats))
    assert [r.payload for r in records] == [DATA, COMMAND]
    assert records[0].src == BOARD and records[1].dst == BOARD
    assert [r.timestamp for r in records] == [100.0, 101.0]
    assert (stats["packets"], stats["not_ipv4"], stats["not_udp"], stats["fragments"]) == (
        5,
        1,
        1,
        1,
    )
    assert datagrams_from_pcap(ng) == [DATA]

    sll = tmp_path / "any.pcap"  # `tcpdump -i any` writes Linux cooked captures
    wrpcap(str(sll), [CookedLinux(proto=0x0800) / udp])
    assert datagrams_from_pcap(sll) == [DATA]


def test_read_pcap_cut_file_and_not_a_capture(tmp_path):
    from agetdaq.protocol.pcap import PcapFormatError, new_stats, read_pcap

    path = tmp_path / "cut.pcap"
    write_pcap(path, [PcapRecord(5.0, BOARD, PC, DATA), PcapRecord(6.0, BOARD, PC, DATA)])
    path.write_bytes(path.read_bytes()[:-10])  # capture stopped mid-record
    stats = new_stats()
    records = list(read_pcap(path, stats))
    assert records[0].payload == DATA
    assert records[1].payload == DATA[:-10] and stats["truncated"] >= 1
    other = tmp_path / "x.pcap"
    other.write_bytes(b"not a capture")
    with pytest.raises(PcapFormatError, match="not a pcap"):
        list(read_pcap(other))
