"""B6: end to end: emulator -> UDP -> decode -> build -> process -> HDF5 -> ZMQ, on 2 cores.

The BEC emulator runs in its own process, the acquisition engine
(agetdaq.readout.acquisition.engine.Acquisition: receiver, credit loop, data path, run writer,
monitoring stream) in this one, and a ZeroMQ subscriber (the GUI's part) in a third that takes every
message. The board is told to produce a fixed number of events (``event_limit``), so that every
event it sent can be looked for in the run file: the run ends when the DAQ has built them all (or at
a time limit).

Cases:
* full readout (4 x 68 x 512 samples, ~280 kB per event) with the trigger at 1 kHz, 2.4x what the
  GbE line carries: the card's memory fills and credit flow control must make it hold data rather
  than anything being lost; once with the monitoring stream and once without;
* zero-suppressed X-ray events (card-side pedestals and thresholds), burst mode: the highest rate
  the emulator reaches.
Rows: events in the file / events the board sent (target 1.000 exactly), events shed (recorded,
not processed online) / events written (target 0), events/s, the highest
ring fill, the DAQ process's CPU, and the full-readout rate with the monitor / without (the
subscriber process competes for the same two cores) and the DAQ's CPU per event without / with
the monitor (its own cost); the CPU per event of the data path and capture threads, the rate the
data path thread would sustain on a core of its own (1 / its CPU per event) and the emulator's CPU
(the machine's two cores are shared: the absolute rates follow its load, these do less).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import make_row
from benchmarks.daqrun import EmulatorProcess, process_cpu_s, thread_cpu_s

ID = "B6"
LINE_EVENTS_S_FULL = 125e6 / 280e3  # ~446 full events/s fit in the GbE line rate (wire bytes)
TARGET_ZS_EVENTS_S = 50_000
TARGET_MONITOR_COST = 0.05

FULL_SCRIPT = """\
eof_on_eoe 1
event_builder 1
DAQ 0
credits restore {window} {threshold} F
daq 0xFFFFFF F
sca enable 0
serve_target 0
sca wckdiv 4
sca cnt 0x200
rst_len 0
keep_rst 0
emit_hit_cnt 0
aget * mode 0x1
subtract_ped 0
zero_suppress 0
mult_trig_ena 0
event_limit {limit}
trig_rate 3 1
trig_enable 0x1
serve_target 1
clr tstamp
clr evcnt
sca enable 1
DAQ -1
"""

ZS_SCRIPT = """\
eof_on_eoe 1
event_builder 1
DAQ 0
credits restore {window} {threshold} F
daq 0xFFFFFF F
sca enable 0
serve_target 0
aget * mode 0x1
subtract_ped 0
zero_suppress 0
ped * * 0
trig_rate 2 10
trig_enable 0x1
gen_use_limit 1
event_limit 0x2
hped offset * * 0
hped clr * *
serve_target 2
sca enable 1
sleep 0.3
sca enable 0
hped centermean * * 250
subtract_ped 1
hped clr * *
sca enable 1
sleep 0.3
sca enable 0
hped setthr * * 250 5.0
aget * mode 0x0
zero_suppress 1
zs_pre_post 8 4
emit_hit_cnt 1
trig_enable 0x0
mult_trig_ena 1
event_limit {limit}
serve_target 1
clr tstamp
clr evcnt
sca enable 1
DAQ -1
"""


def _subscriber(address: str, stop: Any, out: Any) -> None:
    from agetdaq.readout.transport.stream import Subscriber

    sub = Subscriber(address)
    counts: dict[str, int] = {}
    while not stop.is_set():
        msg = sub.recv(50)
        if msg is not None:
            counts[msg.topic] = counts.get(msg.topic, 0) + 1
    out.put({"counts": counts, "gaps": sub.gaps})


def run_case(
    script: str,
    n_events: int,
    limit_s: float,
    work: Path,
    monitor: bool,
    label: str,
    burst: bool = False,
) -> dict[str, Any]:
    """One run against a fresh emulator; returns the figures of the case."""
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings
    from agetdaq.readout.store.reader import RunFile

    path = work / f"{label}.h5"
    (work / f"{label}.txt").write_text(script)
    ctx = mp.get_context("spawn")
    faults = {"burst": True} if burst else None  # burst: no pacing, events as fast as it goes
    with EmulatorProcess(seed=1, bank=64, faults=faults) as emu:
        settings = Settings().with_daq(bec=emu.bec, data_dir=str(work))
        acq = Acquisition(settings, publish="tcp://127.0.0.1:*" if monitor else None)
        stop = ctx.Event()
        out = ctx.Queue()
        sub = None
        if monitor:
            sub = ctx.Process(target=_subscriber, args=(acq.publisher.address, stop, out))
            sub.start()
        try:
            acq.configure(str(work / f"{label}.txt"))
            time.sleep(0.5 if monitor else 0.0)  # the subscriber connects
            cpu0 = process_cpu_s()
            threads = _daq_threads(acq)
            t_cpu0 = {k: thread_cpu_s(tid) for k, tid in threads.items()}
            emu_cpu0 = process_cpu_s(emu.pid)
            acq.start_run("background", label, path, events=n_events, seconds=limit_s)
            t0 = time.monotonic()
            t_last = t0
            seen = 0
            while acq.state == "running":
                time.sleep(0.02)
                acq.poll()
                n = acq.datapath.counters.events
                if n != seen:
                    seen, t_last = n, time.monotonic()
            cpu = process_cpu_s() - cpu0
            t_cpu = {k: thread_cpu_s(tid) - t_cpu0[k] for k, tid in threads.items()}
            emu_cpu = process_cpu_s(emu.pid) - emu_cpu0
            counters = acq.counters()
            losses = acq.losses()
            max_fill = acq.link.receiver.max_fill / acq.link.receiver.n_slots
        finally:
            acq.close()
            stop.set()
            if sub is not None:
                sub.join(10)
        board = emu.stop()
    stream = out.get(timeout=10) if monitor else {}
    with RunFile(path) as f:
        ev = f.events()
        reason = f.final().get("stop_reason", "")
    counts = ev["event_count"].astype(np.int64)
    contiguous = bool(len(counts) == 0 or np.array_equal(counts, np.arange(len(counts))))
    # gap, duplicate, out of order, decoder-damaged, restart (INCOMPLETE = chips without hits)
    damaged = int(np.count_nonzero(ev["build_flags"] & (1 | 2 | 4 | 32 | 64)))
    flags = {b: int(np.count_nonzero(ev["build_flags"] & (1 << b))) for b in range(16)}
    path.unlink()
    seconds = max(t_last - t0, 1e-9)
    return {
        "written": len(ev),
        # events framed for the DAQ (the pedestal phases' histogram events are not sent)
        "sent": int(board.get("events", 0) - board.get("histo_events", 0))
        - int(board.get("dropped_events", 0)),
        "contiguous": contiguous,
        "damaged": damaged,
        "flags": {k: v for k, v in flags.items() if v},
        "seconds": seconds,
        "events_s": len(ev) / seconds,
        "mb_s": counters["datapath"]["bytes"] / seconds / 1e6,
        "max_fill": max_fill,
        "cpu_cores": cpu / seconds,
        "thread_cpu_s": t_cpu,  # data path / capture thread CPU seconds over the run
        "emulator_cores": emu_cpu / seconds,
        "shed": counters["datapath"]["events_shed"],
        "losses": losses,
        "board": board,
        "stream": stream,
        "reason": reason,
        "holds": counters["credit"]["holds"],
    }


def _daq_threads(acq: Any) -> dict[str, int]:
    """Native ids of the DAQ's two busy threads: the data path and the capture thread."""
    out = {}
    for key, thread in (("datapath", acq.datapath._thread), ("capture", acq.link.receiver.thread)):
        if thread is not None and thread.native_id is not None:
            out[key] = thread.native_id
    return out


def _per_event_ms(r: dict[str, Any], thread: str) -> float:
    return r["thread_cpu_s"].get(thread, 0.0) / max(r["written"], 1) * 1e3


def _report(label: str, r: dict[str, Any]) -> None:
    b = r["board"]
    print(
        f"B6 {label}: {r['written']} events written / {r['sent']} sent in {r['seconds']:.1f} s "
        f"({r['events_s']:.0f} ev/s, {r['mb_s']:.1f} MB/s), contiguous {r['contiguous']}, "
        f"damaged {r['damaged']} (flag bits {r['flags']}), shed {r['shed']}, "
        f"max ring fill {r['max_fill']:.3f}, "
        f"DAQ CPU {r['cpu_cores']:.2f} cores (per event: data path thread "
        f"{_per_event_ms(r, 'datapath'):.3f} ms, capture thread {_per_event_ms(r, 'capture'):.3f} "
        f"ms), emulator {r['emulator_cores']:.2f} cores, credit holds {r['holds']}; board: lost to "
        f"memory full {b.get('lost_memory_full')}, dead time {b.get('lost_dead_time')}, "
        f"daq_missing {b.get('daq_missing')}; stream {r['stream']}; stop: {r['reason']}"
    )
    bad = {k: v for k, d in r["losses"].items() for k, v in d.items() if v}
    if bad:
        print(f"B6 {label}: losses {bad}")


def _shed_row(label: str, r: dict[str, Any]) -> dict[str, Any]:
    """Events recorded but not processed online (shed under load) / events written (target 0)."""
    return make_row(ID, f"{label}: shed (not processed online) / written", float(r["shed"]),
                    "events", reference=float(max(r["written"], 1)), ref_unit="events written",
                    target=0.0, higher_is_better=False)  # fmt: skip


def _exact_row(label: str, r: dict[str, Any]) -> dict[str, Any]:
    ok = r["contiguous"] and r["damaged"] == 0
    row = make_row(ID, f"{label}: events written / sent by the board", float(r["written"]),
                   "events", reference=float(r["sent"]), ref_unit="events sent")  # fmt: skip
    row["target"] = "ratio == 1.000, contiguous, none damaged"
    row["met"] = bool(ok and r["written"] == r["sent"] and r["sent"] > 0)
    return row


def run(quick: bool) -> list[dict[str, Any]]:
    logging.getLogger("readout").setLevel(logging.ERROR)
    # event_limit codes: 4 = 1000, 5 = 10^4, 6 = 10^5, 7 = 10^6 events
    full_limit, full_n = (4, 1000) if quick else (5, 10_000)
    zs_limit, zs_n = (6, 100_000) if quick else (7, 1_000_000)
    # 256 / 32 frames (as B8): the emulator answers a grant only between its event-generation
    # steps (ms), so a 16-frame window (24 kB, 0.2 ms of line time) starves it; B4 measures the
    # loop with a small window on its own
    window, threshold = int(os.environ.get("B6_WINDOW", 256)), int(os.environ.get("B6_THR", 32))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="b6-") as tmp:
        work = Path(tmp)
        full = FULL_SCRIPT.format(window=window, threshold=threshold, limit=full_limit)
        zs = ZS_SCRIPT.format(window=window, threshold=threshold, limit=zs_limit)
        limit_s = 60.0 if quick else 180.0
        with_mon = run_case(full, full_n, limit_s, work, True, "full-monitor")
        _report("full readout, monitor on", with_mon)
        without = run_case(full, full_n, limit_s, work, False, "full-no-monitor")
        _report("full readout, monitor off", without)
        zsr = run_case(zs, zs_n, limit_s, work, True, "zs-monitor", burst=True)
        _report("ZS burst, monitor on", zsr)
    line = f"full readout at 2.4x line rate, credit {window}/{threshold} F"
    rows.append(_exact_row(f"{line}, monitor on", with_mon))
    rows.append(_shed_row(f"{line}, monitor on", with_mon))
    rows.append(make_row(ID, f"{line}: events/s (monitor on)", with_mon["events_s"], "events/s",
                         reference=LINE_EVENTS_S_FULL, ref_unit="events/s GbE line"))  # fmt: skip
    rows.append(make_row(ID, f"{line}: max ring fill", with_mon["max_fill"], "of ring"))
    rows.append(make_row(ID, f"{line}: DAQ CPU", with_mon["cpu_cores"], "cores"))
    dp_ms = _per_event_ms(with_mon, "datapath")
    rows.append(make_row(ID, f"{line}: data path thread CPU per event (monitor on)", dp_ms,
                         "ms/event"))  # fmt: skip
    rows.append(make_row(ID, f"{line}: data path capacity on a core of its own (1 / CPU per event)",
                         1e3 / max(dp_ms, 1e-9), "events/s", reference=LINE_EVENTS_S_FULL,
                         ref_unit="events/s GbE line", target=1.0))  # fmt: skip
    rows.append(make_row(ID, f"{line}: emulator CPU (same machine)", with_mon["emulator_cores"],
                         "cores"))  # fmt: skip
    rows.append(_exact_row(f"{line}, monitor off", without))
    rows.append(_shed_row(f"{line}, monitor off", without))
    rows.append(make_row(ID, f"{line}: events/s monitor on / off", with_mon["events_s"],
                         "events/s", reference=without["events_s"],
                         ref_unit="events/s no monitor",
                         target=1 - TARGET_MONITOR_COST))  # fmt: skip
    cpu_on = with_mon["cpu_cores"] * with_mon["seconds"] / max(with_mon["written"], 1)
    cpu_off = without["cpu_cores"] * without["seconds"] / max(without["written"], 1)
    rows.append(make_row(ID, f"{line}: DAQ CPU per event, monitor off / on", cpu_off * 1e3,
                         "ms/event", reference=cpu_on * 1e3, ref_unit="ms/event monitor on",
                         target=1 - TARGET_MONITOR_COST))  # fmt: skip
    rows.append(_exact_row("ZS burst, monitor on", zsr))
    rows.append(_shed_row("ZS burst, monitor on", zsr))
    rows.append(make_row(ID, "ZS burst: events/s written", zsr["events_s"], "events/s",
                         target=TARGET_ZS_EVENTS_S, target_on="value"))  # fmt: skip
    rows.append(make_row(ID, "ZS burst: max ring fill", zsr["max_fill"], "of ring"))
    rows.append(make_row(ID, "ZS burst: DAQ CPU", zsr["cpu_cores"], "cores"))
    zs_us = _per_event_ms(zsr, "datapath") * 1e3
    rows.append(make_row(ID, "ZS burst: data path thread CPU per event", zs_us, "us/event"))
    rows.append(make_row(ID, "ZS burst: data path capacity on a core of its own",
                         1e6 / max(zs_us, 1e-9), "events/s", target=TARGET_ZS_EVENTS_S,
                         target_on="value"))  # fmt: skip
    rows.append(make_row(ID, "ZS burst: emulator CPU (same machine)", zsr["emulator_cores"],
                         "cores"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
