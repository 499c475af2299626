"""B4: the credit loop with a 16 KiB window against the BEC emulator, full readout.

The emulator runs in its own process (full readout: 4 chips x 68 channels x 512 samples, generator
trigger above what the line carries, paced at the GbE line rate, MTU 1500); here a
:class:`agetdaq.readout.link.board_link.BoardLink` (receiver + credit loop, ``credits restore 16384
0 B``) and a consumer thread that releases the ring. With a window of W bytes and a turnaround of
RTT no loop can carry more than W / RTT; the RTT is measured in the same run, while the data flows,
as the shortest round trip of a command (``version``) sent to the card from a process of its own:
the floor of the board's and the network's share of the turnaround (the median is reported too). The
bound is capped at the GbE line rate.

Rows: MB/s / min(W / RTT, line rate) (target >= 0.9); re-grant latency p50 / p99 (a data frame's
arrival stamp after ``recvmmsg`` -> its grant handed to ``send``; target p99 <= 50 us).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess, start_pinger, thread_cpu_s

ID = "B4"
WINDOW = 16 * 1024
LINE_RATE_MB_S = 125.0
TARGET_RATIO = 0.9
TARGET_P99_US = 50.0

SETUP = """\
eof_on_eoe 1
DAQ 0
credits restore {window} 0 B
daq 0xFFFFFF B
sca enable 0
serve_target 0
sca wckdiv 4
sca cnt 0x200
aget * mode 0x1
subtract_ped 0
zero_suppress 0
mult_trig_ena 0
event_limit 0x0
trig_rate 3 1
trig_enable 0x1
serve_target 1
sca enable 1
"""


class _Releaser(threading.Thread):
    def __init__(self, rx: Any) -> None:
        super().__init__(name="b4-consumer", daemon=True)
        self.rx = rx
        self.stop = False

    def run(self) -> None:
        while not self.stop:
            b = self.rx.get_batch(256, timeout=0.05)
            if len(b.lengths):
                self.rx.release(len(b.lengths))


def measure(seconds: float) -> dict[str, Any]:
    from agetdaq.protocol.script import parse_script
    from agetdaq.readout.link.board_link import BoardLink

    with EmulatorProcess(seed=2, bank=64) as emu:
        link = BoardLink(*emu.address, local=("127.0.0.1", 0), timeout=10.0)
        link.start()
        consumer = _Releaser(link.receiver)
        consumer.start()
        try:
            link.scripts.run(parse_script(SETUP.format(window=WINDOW)), on_daq=lambda step: None)
            link.start_data()
            time.sleep(1.0)  # steady state
            rx = link.receiver
            link.credit.reset_latency()
            tid = rx.thread.native_id
            cpu0, b0, t0 = thread_cpu_s(tid), rx.counters.data_bytes, time.monotonic()
            pinger, q = start_pinger(emu.address, int(seconds / 0.02), 0.02)
            rtt, rtt_median = q.get(timeout=seconds + 60)
            pinger.join(5)
            dt = time.monotonic() - t0
            nbytes = rx.counters.data_bytes - b0
            cpu = thread_cpu_s(tid) - cpu0
            lat = link.credit.latency.summary()
            credit = link.credit.counters.as_dict()
            drops = rx.counters.ring_full_drops + (rx.kernel_drops() or 0)
            link.stop_data(timeout=5.0)
        finally:
            consumer.stop = True
            consumer.join(2)
            link.close()
    return {
        "mb_s": nbytes / dt / 1e6,
        "rtt_s": rtt,
        "rtt_median_s": rtt_median,
        "bound_mb_s": min(WINDOW / rtt / 1e6, LINE_RATE_MB_S),
        "p50_us": lat["p50_ns"] / 1e3,
        "p99_us": lat["p99_ns"] / 1e3,
        "max_us": lat["max_ns"] / 1e3,
        "grants": lat["n"],
        "capture_cores": cpu / dt,
        "lost": credit["lost_replies"],
        "drops": drops,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    logging.getLogger("readout").setLevel(logging.ERROR)
    r = measure(4.0 if quick else 15.0)
    print(
        f"B4: {r['mb_s']:.1f} MB/s with a {WINDOW} B window; board RTT shortest "
        f"{r['rtt_s'] * 1e6:.0f} us, median {r['rtt_median_s'] * 1e6:.0f} us (window / RTT = "
        f"{WINDOW / r['rtt_s'] / 1e6:.1f} MB/s); {r['grants']} grants, re-grant p50 "
        f"{r['p50_us']:.0f} us p99 {r['p99_us']:.0f} us max {r['max_us']:.0f} us; capture "
        f"{r['capture_cores']:.2f} cores; lost frames {r['lost']}, drops {r['drops']}"
    )
    return [
        make_row(ID, f"full readout, {WINDOW // 1024} KiB credit window", r["mb_s"], "MB/s",
                 reference=r["bound_mb_s"], ref_unit="MB/s min(window/RTT, line)",
                 target=TARGET_RATIO),
        make_row(ID, "re-grant latency p50", r["p50_us"], "us"),
        make_row(ID, "re-grant latency p99", r["p99_us"], "us", target=TARGET_P99_US,
                 target_on="value", higher_is_better=False),
        make_row(ID, "board round trip during data (shortest)", r["rtt_s"] * 1e6, "us"),
        make_row(ID, "board round trip during data (median)", r["rtt_median_s"] * 1e6, "us"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
