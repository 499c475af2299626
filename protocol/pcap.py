"""Board traffic in pcap / pcapng files: UDP datagrams with their direction and timestamps.

The file formats are read and written with scapy's raw readers/writers (no per-packet dissection);
the link, IPv4 and UDP headers are unpacked here with ``struct``, which is what makes it fast.
Written files are Ethernet/IPv4/UDP with microsecond timestamps, readable by Wireshark and by
:mod:`agetdaq.protocol.scapy_layer`. IP fragments are not reassembled: they are counted and skipped.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from scapy.error import Scapy_Exception
from scapy.utils import RawPcapNgReader, RawPcapReader, RawPcapWriter

from agetdaq.protocol import words as w

DEFAULT_PORT = 1122
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_LINUX_SLL2 = 276
_ETH_IPV4 = 0x0800
_ETH_VLAN = (0x8100, 0x88A8)
_PCAP_MAGICS = (b"\xa1\xb2\xc3\xd4", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x4d\x3c\xb2\xa1")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"

Address = tuple[str, int]


class PcapRecord(NamedTuple):
    """One UDP datagram of a capture."""

    timestamp: float  # seconds since the Unix epoch
    src: Address  # (IPv4 address, UDP port)
    dst: Address
    payload: bytes


class PcapFormatError(ValueError):
    """The file is not a pcap / pcapng capture, or its header is damaged."""


def new_stats() -> dict[str, int]:
    """Counters filled by :func:`read_pcap`."""
    return dict.fromkeys(
        ("packets", "udp", "not_ipv4", "not_udp", "fragments", "truncated", "bad_link"), 0
    )


def is_capture(path: str | Path) -> bool:
    """True when the file starts with a pcap or pcapng magic number."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return magic in _PCAP_MAGICS or magic == _PCAPNG_MAGIC or magic[:2] == b"\x1f\x8b"


def _ip_offset(linktype: int, frame: bytes) -> int | None:
    """Offset of the IPv4 header in a link-layer frame, or None when it carries no IPv4."""
    if linktype == LINKTYPE_ETHERNET:
        off, ethertype = 14, int.from_bytes(frame[12:14], "big")
        while ethertype in _ETH_VLAN:
            ethertype = int.from_bytes(frame[off + 2 : off + 4], "big")
            off += 4
        return off if ethertype == _ETH_IPV4 else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return 0
    if linktype == LINKTYPE_NULL:
        family = int.from_bytes(frame[:4], "little") or int.from_bytes(frame[:4], "big")
        return 4 if family == socket.AF_INET else None
    if linktype == LINKTYPE_LOOP:
        return 4 if int.from_bytes(frame[:4], "big") == socket.AF_INET else None
    if linktype == LINKTYPE_LINUX_SLL:
        return 16 if int.from_bytes(frame[14:16], "big") == _ETH_IPV4 else None
    if linktype == LINKTYPE_LINUX_SLL2:
        return 20 if int.from_bytes(frame[0:2], "big") == _ETH_IPV4 else None
    return None


def _udp_of(linktype: int, frame: bytes, stats: dict[str, int]) -> tuple | None:
    """(src, dst, payload) of a UDP/IPv4 frame; None (counted) otherwise."""
    off = _ip_offset(linktype, frame)
    if off is None or len(frame) < off + 20 or frame[off] >> 4 != 4:
        stats["not_ipv4"] += 1
        return None
    ihl = (frame[off] & 0x0F) * 4
    total, frag, proto = struct.unpack_from(">H2xHxB", frame, off + 2)
    if proto != socket.IPPROTO_UDP:
        stats["not_udp"] += 1
        return None
    if frag & 0x3FFF:  # more-fragments flag or a non-zero offset
        stats["fragments"] += 1
        return None
    u = off + ihl
    if len(frame) < u + 8:
        stats["truncated"] += 1
        return None
    sport, dport, ulen = struct.unpack_from(">HHH", frame, u)
    end = u + max(ulen, 8)
    if end > len(frame) or end > off + total:
        stats["truncated"] += 1
        end = min(len(frame), off + total)
    src = socket.inet_ntoa(frame[off + 12 : off + 16])
    dst = socket.inet_ntoa(frame[off + 16 : off + 20])
    return (src, sport), (dst, dport), bytes(frame[u + 8 : end])


def _open_raw(path: Path) -> RawPcapReader:
    """scapy's raw reader (pcap or pcapng, chosen by scapy from the magic number)."""
    if not is_capture(path):
        raise PcapFormatError(f"{path} is not a pcap or pcapng capture")
    try:
        return RawPcapReader(str(path))
    except (Scapy_Exception, EOFError) as exc:
        raise PcapFormatError(f"{path}: damaged capture header: {exc}") from exc


def read_pcap(path: str | Path, stats: dict[str, int] | None = None) -> Iterator[PcapRecord]:
    """UDP/IPv4 datagrams of a pcap or pcapng file, in file order.

    Other packets are skipped and counted in ``stats`` (see :func:`new_stats`); a truncated
    datagram is yielded with what the capture holds and counted as ``truncated``.
    """
    path = Path(path)
    stats = new_stats() if stats is None else stats
    for key, value in new_stats().items():
        stats.setdefault(key, value)
    reader = _open_raw(path)
    try:
        for data, meta in reader:
            stats["packets"] += 1
            if isinstance(meta, RawPcapNgReader.PacketMetadata):
                linktype = meta.linktype
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
            else:
                linktype = reader.linktype
                ts = meta.sec + meta.usec / (1e9 if reader.nano else 1e6)
                if meta.caplen < meta.wirelen:
                    stats["truncated"] += 1
            if linktype is None:
                stats["bad_link"] += 1
                continue
            found = _udp_of(linktype, data, stats)
            if found is not None:
                stats["udp"] += 1
                yield PcapRecord(ts, found[0], found[1], found[2])
    finally:
        reader.close()


def _mac(ip: str) -> bytes:
    return b"\x02\x00" + socket.inet_aton(ip)  # locally administered, derived from the IP


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(">10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet_frame(src: Address, dst: Address, payload: bytes, ident: int = 0) -> bytes:
    """An Ethernet II / IPv4 / UDP frame (UDP checksum 0 = not computed, legal over IPv4)."""
    if len(payload) > 0xFFFF - 28:
        raise ValueError(f"UDP payload of {len(payload)} bytes does not fit one IPv4 packet")
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + 8 + len(payload),
        ident & 0xFFFF,
        0x4000,  # don't fragment
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    ip = ip[:10] + struct.pack(">H", _ip_checksum(ip)) + ip[12:]
    udp = struct.pack(">HHHH", src[1], dst[1], 8 + len(payload), 0)
    return _mac(dst[0]) + _mac(src[0]) + struct.pack(">H", _ETH_IPV4) + ip + udp + payload


def write_pcap(path: str | Path, records: Iterable[PcapRecord | tuple]) -> int:
    """Write (timestamp, src, dst, payload) records as a pcap file; returns the count written."""
    n = 0
    writer = RawPcapWriter(str(path), linktype=LINKTYPE_ETHERNET, endianness="<")
    try:
        writer.write_header(None)
        for ts, src, dst, payload in records:
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            writer.write_packet(ethernet_frame(src, dst, bytes(payload), n), sec=sec, usec=usec)
            n += 1
    finally:
        writer.close()
    return n


def is_reply(payload: bytes) -> bool:
    """A datagram whose frame is a C or M frame (a command reply, not data)."""
    if len(payload) < 4:
        return False
    return (payload[2] | payload[3] << 8) & 0xFE00 in (w.START_OF_CFRAME, w.START_OF_MFRAME)


def datagrams_by_source(
    path: str | Path,
    port: int = DEFAULT_PORT,
    include_replies: bool = False,
    stats: dict[str, int] | None = None,
) -> dict[Address, list[bytes]]:
    """Payloads sent from UDP ``port`` (board -> PC), grouped by sender, in capture order.

    Command replies (C/M frames) are left out unless ``include_replies``; anything else from the
    board, damaged datagrams included, is kept so that a decoder can count it.
    """
    out: dict[Address, list[bytes]] = {}
    for rec in read_pcap(path, stats):
        if rec.src[1] != port or (not include_replies and is_reply(rec.payload)):
            continue
        out.setdefault(rec.src, []).append(rec.payload)
    return out


def datagrams_from_pcap(
    path: str | Path,
    port: int = DEFAULT_PORT,
    include_replies: bool = False,
    stats: dict[str, int] | None = None,
) -> list[bytes]:
    """Data-direction payloads (sent from ``port``) of all boards, in capture order."""
    out: list[bytes] = []
    for rec in read_pcap(path, stats):
        if rec.src[1] == port and (include_replies or not is_reply(rec.payload)):
            out.append(rec.payload)
    return out
