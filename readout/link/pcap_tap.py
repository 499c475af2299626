"""The pcap tap: every datagram exchanged with one board, both directions, into a capture file.

Enters: ``(direction, payload, monotonic ns)`` from the capture loop, the command channel and the
credit loop. Leaves: a pcap file. Counts: datagrams captured, written, dropped (queue full) and
write errors (:meth:`PcapTap.stats`).

The link calls the tap as ``tap(direction, payload, time_ns)`` from its hot paths (the receiver's
capture thread for every datagram received, the command channel and the credit loop for every
datagram sent). The call only copies the payload into a bounded queue; a writer thread drains it
into a pcap file (nanosecond timestamps, Ethernet/IPv4/UDP frames built by
:func:`agetdaq.protocol.pcap.ethernet_frame`, written with scapy's ``RawPcapWriter``), readable by
Wireshark, :func:`agetdaq.protocol.pcap.read_pcap` and ``agetdaq replay``. When the queue is full
the datagram is counted in ``dropped`` and not captured: the tap never blocks the receiver.

``time_ns`` is ``time.monotonic_ns()`` (the receiver's arrival clock); the tap turns it into
Unix time with the offset between the two clocks taken when it is created.
"""

from __future__ import annotations

import collections
import functools
import logging
import socket
import struct
import threading
import time
from pathlib import Path

from scapy.utils import RawPcapWriter

from agetdaq.protocol.pcap import LINKTYPE_ETHERNET, Address, ethernet_frame

log = logging.getLogger(__name__)

RX = "rx"  # board -> PC
TX = "tx"  # PC -> board
DEFAULT_QUEUE = 65536  # datagrams waiting for the writer (~100 MB at 1.5 kB)
SNAPLEN = 65535
_HDR = 42  # Ethernet + IPv4 + UDP header bytes
_WRITE_BATCH = 64  # records per file write (the writer yields the GIL after each)
_RECORD = struct.Struct("<IIII")  # pcap record header: s, ns, captured length, wire length
_IP_MIDDLE = struct.Struct(">HHHBBH")  # total length, id, flags, ttl, protocol, checksum
_UDP_TAIL = struct.Struct(">HH")  # length, checksum (0 = none)


class PcapTap:
    """Callable tap writing one board's traffic to ``path`` (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        board: Address,
        local: Address = ("127.0.0.1", 0),
        *,
        max_queue: int = DEFAULT_QUEUE,
        drain_s: float = 0.05,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, not {max_queue}")
        self.path = Path(path)
        self.board = (_ipv4(board[0]), int(board[1]))
        self.local = ("127.0.0.1", 0)
        self.set_local(local)
        self.max_queue = max_queue
        self.drain_s = drain_s
        self.captured = 0  # handed to the tap and queued
        self.written = 0
        self.dropped = 0  # queue full: not captured
        self.write_errors = 0
        self.bytes = 0
        self._offset_ns = time.time_ns() - time.monotonic_ns()
        self._queue: collections.deque[tuple[bool, bytes, int]] = collections.deque()
        self._writer = RawPcapWriter(
            str(self.path), linktype=LINKTYPE_ETHERNET, endianness="<", nano=True,
            snaplen=SNAPLEN, bufsz=1 << 20,
        )  # fmt: skip
        self._writer.write_header(None)
        self._heads: tuple[Address, dict] | None = None  # (local address, direction -> headers)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._drain_loop, name="pcap-tap", daemon=True)
        self._thread.start()

    def set_local(self, local: Address) -> None:
        """The PC side's address (known once the board socket is bound and connected)."""
        host = local[0] if local[0] not in ("", "0.0.0.0") else "127.0.0.1"
        self.local = (_ipv4(host), int(local[1]))

    # ---- hot path (any thread) ---------------------------------------------------------------
    def __call__(self, direction: str, payload: bytes | memoryview, time_ns: int) -> None:
        """Queue one datagram (``payload`` is copied: it may be a view of a reused buffer)."""
        q = self._queue
        if len(q) >= self.max_queue or self._closed:
            self.dropped += 1
            return
        q.append((direction == RX, bytes(payload), time_ns))
        self.captured += 1

    # ---- writer thread -----------------------------------------------------------------------
    def _drain_loop(self) -> None:
        while not self._stop.wait(self.drain_s):
            self._drain()
        self._drain()

    def _drain(self) -> None:
        q = self._queue
        if not q:
            return
        offset = self._offset_ns
        if self._heads is None or self._heads[0] != self.local:
            rx_head, tx_head = _Headers(self.board, self.local), _Headers(self.local, self.board)
            self._heads = (self.local, {True: rx_head.make, False: tx_head.make})
        heads = self._heads[1]
        record = _RECORD.pack
        parts: list[bytes] = []
        try:
            while q:
                rx, payload, t = q.popleft()
                wall = t + offset
                n = len(payload)
                parts += (
                    record(wall // 1_000_000_000, wall % 1_000_000_000, n + _HDR, n + _HDR),
                    heads[rx](n),
                    payload,
                )
                self.bytes += n
                if len(parts) >= 3 * _WRITE_BATCH:
                    self._write(parts)
                    time.sleep(0)  # hand the GIL to the receive thread between batches
            self._write(parts)
            self._writer.flush()
        except (OSError, ValueError) as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.error("pcap capture %s failed: %s", self.path, exc)
            self.dropped += len(q)
            q.clear()

    def _write(self, parts: list[bytes]) -> None:
        """Records through the scapy writer's file in one call (its per-packet method costs
        ~5 us of Python per datagram)."""
        self._writer.f.writelines(parts)
        self.written += len(parts) // 3
        parts.clear()

    # ---- end ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, int | str]:
        return {
            "file": str(self.path),
            "captured": self.captured,
            "written": self.written,
            "dropped": self.dropped,
            "queued": len(self._queue),
            "write_errors": self.write_errors,
            "bytes": self.bytes,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        try:
            self._writer.close()
        except OSError as exc:
            log.error("closing pcap capture %s: %s", self.path, exc)

    def __enter__(self) -> PcapTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ipv4(host: str) -> str:
    """Dotted IPv4 address of a host name (pcap frames carry addresses, not names)."""
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise ValueError(f"cannot resolve {host!r} to an IPv4 address: {exc}") from None


class _Headers:
    """Ethernet/IPv4/UDP headers of one direction: :func:`agetdaq.protocol.pcap.ethernet_frame`'s
    with IP id 0, made from a template (only the lengths and the IP checksum change per datagram).
    """

    SIZE = _HDR

    def __init__(self, src: Address, dst: Address) -> None:
        ref = ethernet_frame(src, dst, b"", 0)
        self.front = ref[:16]  # Ethernet + IP version / TOS
        self.addresses = ref[26:38]  # IP source, destination; UDP ports
        words = struct.unpack(">10H", ref[14:34])
        self.base = sum(words) - words[1] - words[5]  # without total length and checksum

    @functools.lru_cache(maxsize=256)  # noqa: B019 (a few instances, a few lengths each)
    def make(self, n: int) -> bytes:
        """The 42 header bytes before a UDP payload of ``n`` bytes."""
        total = 28 + n
        s = self.base + total
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        middle = _IP_MIDDLE.pack(total, 0, 0x4000, 64, socket.IPPROTO_UDP, ~s & 0xFFFF)
        return self.front + middle + self.addresses + _UDP_TAIL.pack(8 + n, 0)
