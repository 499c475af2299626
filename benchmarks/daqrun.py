"""Helpers of the link and end-to-end benchmarks (B3-B6, MEM): per-thread CPU time from /proc,
resident size, the BEC emulator in its own process, a paced UDP sender process, and data frames.

Not a benchmark module itself (discovery only takes ``b<N>_*.py`` and ``memory.py``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import struct
import sys
import time
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINE_RATE_BYTES_S = 125_000_000
WIRE_OVERHEAD_BYTES = 66  # preamble 8 + Ethernet 14 + FCS 4 + gap 12 + IP 20 + UDP 8
UDP_SEGMENT = 103  # Linux UDP GSO socket option / cmsg type


def thread_cpu_s(native_id: int, pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by one thread (``threading.Thread.native_id``)."""
    path = f"/proc/{pid or os.getpid()}/task/{native_id}/stat"
    with open(path, encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (stat fields 14, 15)


def process_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by a whole process."""
    with open(f"/proc/{pid or os.getpid()}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process in MB (VmRSS)."""
    with open(f"/proc/{pid or os.getpid()}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def dframe_bytes(n_bytes: int, seq: int, first: bool = False) -> bytes:
    """A valid data datagram of exactly ``n_bytes``: lead | SOF_D card 0 | size | ADC words | EOF
    (PROTOCOL.md §1.1; the size word counts the frame, lead excluded)."""
    if n_bytes < 8 or n_bytes % 2:
        raise ValueError("a data datagram is an even number >= 8 of bytes")
    n_words = n_bytes // 2
    body = [0x3000 | ((seq + i) & 0xFFF) for i in range(n_words - 4)]
    lead = (seq & 0xFF) | (0x100 if first else 0)
    return struct.pack(f"<{n_words}H", lead, 0x0800, n_bytes - 2, *body, 0x000F)


# ---- paced sender process ------------------------------------------------------------------


def _paced_sender(
    addr: tuple[str, int],
    local: tuple[str, int],
    size: int,
    rate_pps: float,
    count: int,
    per_call: int,
    out: Any,
) -> None:
    """Send ``count`` data datagrams of ``size`` bytes at ``rate_pps``, ``per_call`` per UDP GSO
    sendmsg (the kernel cuts them into single datagrams), each batch at its line-rate time."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind(local)
    sock.connect(addr)
    per_call = max(1, min(per_call, 64, 65000 // size))
    # 256 distinct sequence numbers, one contiguous block: batches are slices of it
    block = b"".join(dframe_bytes(size, s) for s in range(256)) * 2
    gso = [(socket.SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
    mv = memoryview(block)
    sent = 0
    period = per_call / rate_pps
    t0 = time.perf_counter() + 0.05
    while time.perf_counter() < t0:
        pass
    while sent < count:
        due = t0 + (sent // per_call) * period
        now = time.perf_counter()
        if due - now > 0.0005:
            time.sleep(due - now - 0.0003)
        while time.perf_counter() < due:
            pass
        k = min(per_call, count - sent)
        off = (sent % 256) * size
        try:
            if k == 1:
                sock.send(mv[off : off + size])
            else:
                sock.sendmsg([mv[off : off + k * size]], gso)
        except OSError:  # ENOBUFS: count it as sent (offered) and move on
            pass
        sent += k
    dt = time.perf_counter() - t0
    out.put((sent, dt))


def start_paced_sender(
    addr: tuple[str, int],
    local: tuple[str, int],
    size: int,
    rate_pps: float,
    count: int,
    per_call: int = 8,
) -> tuple[mp.Process, Any]:
    """The paced sender in its own process, bound to ``local`` (the board address the receiving
    socket is connected to); returns (process, queue of (sent, seconds))."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_paced_sender, args=(addr, local, size, rate_pps, count, per_call, q))
    p.start()
    return p, q


# ---- emulator process ----------------------------------------------------------------------


def _emulator_main(kwargs: dict, ready: Any, stop: Any, out: Any) -> None:
    from agetdaq.readout.simulation.emulator.server import Emulator

    with Emulator(port=0, **kwargs) as emu:
        ready.put(emu.address)
        stop.wait()
        out.put(emu.counters)


class EmulatorProcess:
    """The BEC emulator (agetdaq.readout.simulation.emulator.server.Emulator) in a process of its
    own, so that it has a core and the DAQ under test the other. ``counters`` is filled when it
    stops."""

    def __init__(self, **kwargs: Any) -> None:
        ctx = mp.get_context("spawn")
        self._ready = ctx.Queue()
        self._out = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_emulator_main, args=(kwargs, self._ready, self._stop, self._out), daemon=True
        )
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.counters: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid

    @property
    def bec(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def __enter__(self) -> EmulatorProcess:
        self._proc.start()
        self.address = tuple(self._ready.get(timeout=180))
        return self

    def stop(self) -> dict[str, Any]:
        if self._proc.is_alive() and not self._stop.is_set():
            self._stop.set()
            try:
                self.counters = self._out.get(timeout=30)
            except Exception:
                self.counters = {}
            self._proc.join(10)
        return self.counters

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)


# ---- round trip to the board from a process of its own ---------------------------------------


def _pinger(addr: tuple[str, int], n: int, interval_s: float, out: Any) -> None:
    """(shortest, median) round trip of ``version`` (answered by the card) over ``n`` tries."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(1.0)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sock.sendto(b"version", addr)
        try:
            sock.recv(65536)
        except TimeoutError:
            continue
        times.append(time.perf_counter() - t)
        time.sleep(interval_s)
    times.sort()
    out.put((times[0], times[len(times) // 2]) if times else (float("nan"), float("nan")))


def start_pinger(addr: tuple[str, int], n: int, interval_s: float) -> tuple[mp.Process, Any]:
    """A process that measures the board's command round trip; returns (process, queue)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_pinger, args=(addr, n, interval_s, q))
    p.start()
    return p, q
