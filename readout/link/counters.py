"""Counters of the board link: every datagram the receiver drops or rejects, every credit event,
and a fixed-bin histogram of the credit re-grant latency.

The counters are plain dataclasses of ints written by one thread (the capture thread) and read by
others; a reader may see values a few datagrams old, never torn ones (CPython ints are atomic).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field


@dataclass
class ReceiverCounters:
    """What the capture thread saw, by kind. Every datagram counted in ``datagrams`` lands in
    exactly one of ``data_frames``, ``replies``, ``ring_full_drops``, ``reply_queue_drops`` or a
    malformed kind (:attr:`accounted`); ``foreign`` ones are rejected before that count."""

    datagrams: int = 0  # everything read from the socket
    data_frames: int = 0  # DFRAMEs put in the ring
    data_bytes: int = 0  # their datagram bytes (lead word included)
    replies: int = 0  # CFRAME / MFRAME replies queued for the command channel
    ring_full_drops: int = 0  # DFRAMEs read while the ring was full: read, counted, dropped
    reply_queue_drops: int = 0  # replies nobody collected (queue full)
    # malformed kinds (skipped)
    runt: int = 0  # shorter than lead word + SOF word
    odd_length: int = 0  # not a whole number of 16-bit words
    oversize: int = 0  # longer than a ring slot (the kernel truncated it)
    bad_sof: int = 0  # second word is no START_OF_D/M/CFRAME
    size_mismatch: int = 0  # DFRAME size word + 2 != datagram length
    no_eof: int = 0  # DFRAME whose last word is not END_OF_FRAME
    # anomalies (datagram still used)
    reply_bad_lead: int = 0  # reply whose lead word is not 0
    # socket-level events
    foreign: int = 0  # from another address than the board (unconnected socket only)
    icmp_errors: int = 0  # ICMP errors (port unreachable...) reported by recv

    MALFORMED = ("runt", "odd_length", "oversize", "bad_sof", "size_mismatch", "no_eof")

    @property
    def malformed(self) -> int:
        return sum(getattr(self, name) for name in self.MALFORMED)

    @property
    def accounted(self) -> int:
        return (
            self.data_frames
            + self.replies
            + self.ring_full_drops
            + self.reply_queue_drops
            + self.malformed
        )

    @property
    def lost(self) -> int:
        """Datagrams that reached us but not the consumer (drops + malformed + foreign)."""
        return self.ring_full_drops + self.reply_queue_drops + self.malformed + self.foreign

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class LatencyHistogram:
    """Fixed-width bins (default 1 us up to 10 ms) plus an overflow bin; O(1) per sample."""

    bin_ns: int = 1_000
    n_bins: int = 10_000
    counts: list[int] = field(default_factory=list)
    overflow: int = 0
    n: int = 0
    max_ns: int = 0
    sum_ns: int = 0

    def __post_init__(self) -> None:
        if self.bin_ns <= 0 or self.n_bins <= 0:
            raise ValueError("bin_ns and n_bins must be positive")
        if not self.counts:
            self.counts = [0] * self.n_bins

    def add(self, ns: int) -> None:
        ix = ns // self.bin_ns
        if 0 <= ix < self.n_bins:
            self.counts[ix] += 1
        else:
            self.overflow += 1
        self.n += 1
        self.sum_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns

    def percentile(self, q: float) -> float:
        """Upper edge (ns) of the bin holding quantile ``q`` (0..100); ``max_ns`` if in overflow;
        NaN when empty."""
        if self.n == 0:
            return float("nan")
        rank = q / 100.0 * self.n
        seen = 0
        for ix, c in enumerate(self.counts):
            seen += c
            if c and seen >= rank:
                return float((ix + 1) * self.bin_ns)
        return float(self.max_ns)

    def summary(self) -> dict[str, float]:
        mean = self.sum_ns / self.n if self.n else float("nan")
        return {
            "n": self.n,
            "mean_ns": mean,
            "p50_ns": self.percentile(50),
            "p90_ns": self.percentile(90),
            "p99_ns": self.percentile(99),
            "max_ns": float(self.max_ns) if self.n else float("nan"),
            "overflow": self.overflow,
        }

    def reset(self) -> None:
        self.counts = [0] * self.n_bins
        self.overflow = self.n = self.max_ns = self.sum_ns = 0


@dataclass
class CreditCounters:
    """Credit loop events (PROTOCOL.md §3.4)."""

    requests_sent: int = 0  # `daq` requests that left the socket
    first_requests: int = 0  # requests without sequence number (reset the card's indices)
    credit_sent: int = 0  # total amount granted, in the unit of the request (F or B)
    send_errors: int = 0  # sendto failures (ICMP refused, ENOBUFS...)
    lost_replies: int = 0  # gaps in the data lead-word sequence
    stale_replies: int = 0  # lead words behind the expected one: duplicates, late frames
    out_of_window: int = 0  # lead words further ahead than the board can be: forged, ignored
    resyncs: int = 0  # first-reply flags (0x0100) seen
    holds: int = 0  # times granting stopped because the ring was filling
    resumes: int = 0  # times it restarted
    budget_done: int = 0  # times a `DAQ N` byte budget was reached

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def kernel_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped on this socket's receive queue (``drops`` column of
    /proc/net/udp[6]), or None where that is not available. Cheap enough for a 1 Hz poll."""
    try:
        inode = os.fstat(sock.fileno()).st_ino
    except OSError:
        return None
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == str(inode):
                        return int(cols[12])
        except (OSError, StopIteration, ValueError):
            continue
    return None
