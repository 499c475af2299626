"""B8: capture overhead: a full-readout run's event rate with and without ``--pcap``.

The BEC emulator runs in its own process (full readout: 4 chips x 68 channels x 512 samples,
generator trigger above what the link carries, paced at the GbE line rate); the acquisition engine
(receiver, credit loop, data path, HDF5 writer with raw datagrams) runs here without and with the
pcap tap, for the same time, in alternated rounds (the median round is reported: the load of a
shared machine changes from one run to the next). Rows: events/s without, events/s with (ratio to
without; target >= 0.9), datagrams the tap dropped (target 0) and the capture rate in MB/s;
then the tap alone: the cost of one call on the receive path, and the rate its writer thread
stores datagrams (against the GbE line rate of 1494-byte datagrams).
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from benchmarks.b6_end_to_end import FULL_SCRIPT
from benchmarks.common import make_row

ID = "B8"
FULL_READOUT_SCRIPT = FULL_SCRIPT.format(window=256, threshold=32, limit="0x0")


def _emulator(ready: mp.Queue, stop: mp.Event) -> None:
    from agetdaq.readout.simulation.emulator.server import Emulator

    with Emulator(port=0, seed=1, bank=64) as emu:
        ready.put(emu.address)
        stop.wait()


def _run(bec: str, work: Path, seconds: float, pcap: Path | None) -> dict:
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings

    script = work / "full.txt"
    script.write_text(FULL_READOUT_SCRIPT)
    settings = Settings().with_daq(bec=bec, data_dir=str(work))
    acq = Acquisition(settings, pcap=pcap)
    try:
        acq.configure(str(script))
        acq.start_run("background", "b8", work / f"run_{pcap is not None}.h5", seconds=seconds)
        t0 = time.monotonic()
        while acq.state == "running":
            time.sleep(0.05)
            acq.poll()
        elapsed = time.monotonic() - t0
        counters = acq.counters()
    finally:
        acq.close()
    capture = acq.capture.stats() if acq.capture is not None else {}
    return {
        "events_s": counters["datapath"]["events"] / elapsed,
        "mb_s": counters["datapath"]["bytes"] / elapsed / 1e6,
        "capture": capture,
        "elapsed": elapsed,
    }


def _tap_costs(n: int, work: Path) -> tuple[float, float]:
    """(CPU ns per tap call on the hot path, datagrams/s the writer thread stores per CPU second)
    for 1494-byte datagrams. The calls come in bursts of 500 with the writer draining between
    them (steady state: memory is recycled); then the writer's own cost on a backlog of ``n``.
    CPU time of the thread measured, not wall time: the figures do not depend on the load."""
    from agetdaq.readout.link.pcap_tap import RX, PcapTap

    payload = memoryview(bytes(1494))
    tap = PcapTap(work / "micro.pcap", ("127.0.0.1", 1122), max_queue=n, drain_s=0.002)
    cpu = 0
    for _ in range(n // 500):
        t0 = time.thread_time_ns()
        for _ in range(500):
            tap(RX, payload, t0)
        cpu += time.thread_time_ns() - t0
        time.sleep(0.02)
    tap.close()
    backlog = PcapTap(work / "micro2.pcap", ("127.0.0.1", 1122), max_queue=n, drain_s=3600)
    for _ in range(n):
        backlog(RX, payload, 0)
    t1 = time.process_time()
    backlog.close()
    return cpu / (n // 500 * 500), n / (time.process_time() - t1)


def run(quick: bool) -> list[dict]:
    seconds, rounds = (4.0, 1) if quick else (6.0, 3)
    ctx = mp.get_context("spawn")
    ready: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    proc = ctx.Process(target=_emulator, args=(ready, stop), daemon=True)
    proc.start()
    plain, tapped, pcap_mb = [], [], 0.0
    try:
        host, port = ready.get(timeout=120)
        bec = f"{host}:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            _run(bec, work, 1.0, None)  # warm-up: numba kernels, page cache
            for _ in range(rounds):  # alternated, so a change of machine load hits both
                plain.append(_run(bec, work, seconds, None))
                tapped.append(_run(bec, work, seconds, work / "run.pcap"))
                pcap_mb += (work / "run.pcap").stat().st_size / 1e6
            call_ns, writer_rate = _tap_costs(20_000 if quick else 100_000, work)
    finally:
        stop.set()
        proc.join(10)
    ratios = [t["events_s"] / p["events_s"] for p, t in zip(plain, tapped)]
    mid = sorted(range(rounds), key=lambda i: ratios[i])[rounds // 2]  # the median round
    written = sum(t["capture"].get("written", 0) for t in tapped)
    dropped = sum(t["capture"].get("dropped", 0) for t in tapped)
    elapsed = sum(t["elapsed"] for t in tapped)
    data_mb_s = sum(t["mb_s"] * t["elapsed"] for t in tapped) / elapsed
    return [
        make_row(ID, "full-readout run events/s, no capture", plain[mid]["events_s"], "events/s"),
        make_row(
            ID,
            f"full-readout run events/s with --pcap (median of {rounds} alternated rounds)",
            tapped[mid]["events_s"],
            "events/s",
            reference=plain[mid]["events_s"],
            ref_unit="events/s",
            target=0.9,
        ),
        make_row(
            ID,
            "pcap datagrams dropped (queue full)",
            float(dropped),
            "datagrams",
            target=0,
            target_on="value",
            higher_is_better=False,
        ),
        make_row(
            ID,
            f"pcap written ({written} datagrams, {pcap_mb:.0f} MB)",
            pcap_mb / elapsed,
            "MB/s",
            reference=data_mb_s,
            ref_unit="MB/s data",
        ),
        make_row(ID, "tap call on the receive path (1494-byte datagram)", call_ns, "CPU ns"),
        make_row(
            ID,
            "tap writer thread, 1494-byte datagrams",
            writer_rate,
            "datagrams/CPU s",
            reference=125e6 / 1560,
            ref_unit="datagrams/s at GbE",
        ),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
