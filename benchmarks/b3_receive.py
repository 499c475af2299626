"""B3: the receiver at Gigabit line rate: a paced sender process ->
agetdaq.readout.link.receiver.Receiver.

Two loads, each from a sender process paced at the GbE line rate (125 MB/s on the wire incl. 66
bytes of Ethernet/IP/UDP overhead per datagram): 8192-byte data datagrams (feminos-daq's size,
~15 k/s, 124 MB/s) and 1472-byte ones (MTU 1500, ~81 k/s). The receiver is the project's, with
the engine's socket settings (SO_RCVBUF as granted, no force) and a consumer thread that releases
slots as they come. Rows per load: datagrams lost (sent - received into the ring), received /
offered, and the capture thread's CPU (utime + stime from /proc) per second of sending.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

from agetdaq.readout.link.receiver import Receiver, open_board_socket
from benchmarks.common import make_row
from benchmarks.daqrun import (
    LINE_RATE_BYTES_S,
    WIRE_OVERHEAD_BYTES,
    start_paced_sender,
    thread_cpu_s,
)

ID = "B3"
TARGET_RATIO = 0.999
TARGET_CORES = 0.3
LOADS = ((8192, 8), (1472, 8))  # (datagram bytes, datagrams per sendmsg)


class _Consumer(threading.Thread):
    """Takes batches from the ring and releases them at once (the data path's hand-off)."""

    def __init__(self, rx: Receiver) -> None:
        super().__init__(name="b3-consumer", daemon=True)
        self.rx = rx
        self.stop = False
        self.frames = 0

    def run(self) -> None:
        while not self.stop:
            b = self.rx.get_batch(256, timeout=0.05)
            n = len(b.lengths)
            if n:
                self.frames += n
                self.rx.release(n)


def measure(size: int, per_call: int, count: int) -> dict[str, Any]:
    """Send ``count`` datagrams of ``size`` bytes at line rate into a Receiver; return figures."""
    rate = LINE_RATE_BYTES_S / (size + WIRE_OVERHEAD_BYTES)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        board = probe.getsockname()  # a free port for the sender ("the board") to bind
    sock, report = open_board_socket(board, local=("127.0.0.1", 0))
    rx = Receiver(sock, idle_s=0.05, name="b3")
    consumer = _Consumer(rx)
    rx.start()
    consumer.start()
    try:
        time.sleep(0.1)
        tid = rx.thread.native_id
        proc, q = start_paced_sender(sock.getsockname(), board, size, rate, count, per_call)
        sent, seconds = q.get(timeout=600)
        proc.join(10)
        # CPU over the sending period only: the capture thread's clock starts with the first
        # datagram (time before that is idle ticks); wait for the ring to drain
        end = time.monotonic() + 2.0
        while rx.counters.datagrams < sent and time.monotonic() < end:
            time.sleep(0.01)
        cpu = thread_cpu_s(tid)
    finally:
        consumer.stop = True
        consumer.join(2)
        rx.stop()
    c = rx.counters
    drops = rx.kernel_drops() or 0
    sock.close()
    return {
        "size": size,
        "offered": sent,
        "received": c.data_frames,
        "consumed": consumer.frames,
        "kernel_drops": drops,
        "ring_full": c.ring_full_drops,
        "malformed": c.malformed,
        "seconds": seconds,
        "offered_mb_s": sent * size / seconds / 1e6,
        "cpu_s": cpu,
        "rcvbuf": report.granted,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    logging.getLogger("agetdaq.readout.link.receiver").setLevel(
        logging.ERROR
    )  # SO_RCVBUF grant is printed
    counts = {8192: 40_000, 1472: 100_000} if quick else {8192: 120_000, 1472: 300_000}
    rows: list[dict[str, Any]] = []
    for size, per_call in LOADS:
        r = measure(size, per_call, counts[size])
        print(
            f"B3 {size} B: offered {r['offered']} in {r['seconds']:.2f} s "
            f"({r['offered_mb_s']:.1f} MB/s, {r['offered'] / r['seconds']:.0f}/s), received "
            f"{r['received']}, kernel drops {r['kernel_drops']}, ring full {r['ring_full']}, "
            f"capture CPU {r['cpu_s']:.2f} s, SO_RCVBUF {r['rcvbuf']}"
        )
        label = f"{size} B datagrams at line rate ({r['offered_mb_s']:.0f} MB/s)"
        lost = r["offered"] - r["received"]
        rows.append(
            make_row(ID, f"{label}: lost", float(lost), "datagrams", target=0,
                     target_on="value", higher_is_better=False)
        )  # fmt: skip
        rows.append(
            make_row(ID, f"{label}: received / offered", float(r["received"]), "datagrams",
                     reference=float(r["offered"]), ref_unit="datagrams offered",
                     target=TARGET_RATIO)
        )  # fmt: skip
        rows.append(
            make_row(ID, f"{label}: capture thread CPU", r["cpu_s"] / r["seconds"], "cores",
                     target=TARGET_CORES, target_on="value", higher_is_better=False)
        )  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
