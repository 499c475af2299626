"""B11: the data path in process, every event processed: CPU per event of its thread.

The ring is replaced by prepared datagrams (no sockets, no emulator process: the figure does not
depend on what else the machine runs, only on the CPU the thread gets), and the data path
(``DataPath`` with the default stages: sequence, raw record, decode, build, shed, process, rows,
record, publish) takes them batch by batch into a real run file, with the monitor feed on a local
sink (the messages encoded as for the stream). The ring reports itself empty, so nothing is shed.

Cases: zero-suppressed X-ray events (~10 strips x ~40 samples, one event per datagram: the
sparse path) and full readout events (4 x 68 x 512 at MTU 1500: the dense path). Rows: CPU per
event of the data path thread (targets: ZS <= 8 us, full <= 1.2 ms), of the whole process (the
chunk compression threads included) and the rate of the data path thread on a core of its own.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.protocol.encode import DataFramer
from agetdaq.protocol.event_block import event_words_bound, write_event_kernel
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.words import lead_word
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.analysis.sink import LocalSink
from agetdaq.readout.datapath.path import DataPath
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.link.receiver import Batch
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.writer import RunWriter
from benchmarks.common import make_row

ID = "B11"
TARGET_ZS_US = 8.0
TARGET_FULL_MS = 1.2
SLOT = 9216


class PreparedRing:
    """Stands in for the receiver: prepared datagrams, never full (nothing is shed)."""

    n_slots = 4096

    def __init__(self, rows: np.ndarray, lengths: np.ndarray) -> None:
        self.buf, self.lengths, self.pos = rows, lengths, 0

    def get_batch(self, max_n: int = 256, timeout: float | None = 0.1) -> Batch:
        a, z = self.pos, min(len(self.lengths), self.pos + max_n)
        return Batch(self.buf[a:z], self.lengths[a:z], np.arange(a, z, dtype=np.int64))

    def release(self, n: int) -> None:
        self.pos += n

    def fill(self) -> int:
        return 0


def _addresses(rst_len: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(chip, DAQ channel) of every strip of the default mapping, card 0."""
    m = StripMapping.default()
    return np.asarray(m.chip, np.int64), np.asarray(m.daq_channel(rst_len), np.int64)


def zs_events(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """X-ray-like zero-suppressed events: 4-6 neighbouring strips on X and on Y, each a run of
    ~40 samples around a pulse; one event per datagram."""
    rng = np.random.default_rng(seed)
    chip, chan = _addresses()
    framer = DataFramer(max_frame_bytes=8000, eof_on_eoe=True)
    none = np.zeros(0, np.int64)
    out = np.empty(event_words_bound(32, 32 * 512, 0, 0), np.uint16)
    frames: list[np.ndarray] = []
    for i in range(n):
        strips = []
        for axis in (0, 120):
            c = int(rng.integers(10, 110))
            strips += [axis + c + k for k in range(int(rng.integers(4, 7)))]
        t0 = int(rng.integers(100, 400))
        bins, offsets = [], [0]
        adc = []
        for _ in strips:
            a = max(0, t0 - 12 + int(rng.integers(-2, 3)))
            b = np.arange(a, a + 36 + int(rng.integers(0, 9)))
            pulse = rng.uniform(30, 250) * np.exp(-0.5 * ((b - t0) / 5.0) ** 2)
            bins.append(b)
            adc.append(np.rint(250 + pulse + rng.normal(0, 3, b.size)).astype(np.int64))
            offsets.append(offsets[-1] + b.size)
        idx = np.array(strips)
        k = write_event_kernel(
            out, 0, 1, 1000 * i, i, none, none, np.zeros(len(idx), np.int64), chip[idx],
            chan[idx], np.array(offsets, np.int64), np.concatenate(bins), np.concatenate(adc),
            none, none, none, True, -1,
        )  # fmt: skip
        frames.extend(framer.add(out[:k]))
    frames.extend(framer.flush())
    return _rows(frames)


def full_events(n: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Full readout events (4 x 68 x 512, noise around 250) framed at MTU 1500."""
    rng = np.random.default_rng(seed)
    n_ch = 4 * 68
    chips = np.repeat(np.arange(4), 68).astype(np.int64)
    chans = np.tile(np.arange(68), 4).astype(np.int64)
    offsets = np.arange(n_ch + 1, dtype=np.int64) * 512
    bins = np.tile(np.arange(512), n_ch).astype(np.int64)
    none = np.zeros(0, np.int64)
    out = np.empty(event_words_bound(n_ch, n_ch * 512, 0, 0), np.uint16)
    framer = DataFramer(max_frame_bytes=1494, eof_on_eoe=True)
    frames: list[np.ndarray] = []
    for i in range(n):
        adc = np.rint(rng.normal(250, 4, n_ch * 512)).astype(np.int64)
        k = write_event_kernel(
            out, 0, 1, 1000 * i, i, none, none, np.zeros(n_ch, np.int64), chips, chans,
            offsets, bins, adc, none, none, none, False, -1,
        )  # fmt: skip
        frames.extend(framer.add(out[:k]))
    frames.extend(framer.flush())
    return _rows(frames)


def _rows(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows = np.zeros((len(frames), SLOT // 2), np.uint16)
    lengths = np.empty(len(frames), np.int32)
    for k, f in enumerate(frames):
        rows[k, 0] = lead_word(k, first=k == 0)
        rows[k, 1 : 1 + f.size] = f
        lengths[k] = 2 * (f.size + 1)
    return rows.view(np.uint8), lengths


def run_case(rows: np.ndarray, lengths: np.ndarray, work: Path, label: str) -> dict[str, Any]:
    layout = StripLayout.default()
    feed = MonitorFeed(LocalSink(lambda msg: None))  # encoded as for the stream, dropped
    dp = DataPath(PreparedRing(rows, lengths), Processor(layout), feed)
    dp.warm_up()
    writer = RunWriter(work / f"{label}.h5", EVENT_DTYPE, {})
    dp.begin_run(writer, 1)
    c0, p0, w0 = time.thread_time(), time.process_time(), time.perf_counter()
    dp.end_run()  # drains the ring in this thread: the data path's work
    c1 = time.thread_time()
    writer.close({})
    p1, w1 = time.process_time(), time.perf_counter()
    c = dp.counters
    return {
        "events": c.events,
        "processed": c.events_processed,
        "shed": c.events_shed,
        "thread_s": c1 - c0,
        "process_s": p1 - p0,
        "wall_s": w1 - w0,
        "sparse": dp.stage_counters()["process"].get("sparse", 0),
    }


def run(quick: bool) -> list[dict[str, Any]]:
    n_zs, n_full, repeat = (20_000, 150, 3) if quick else (100_000, 600, 5)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="b11-") as tmp:
        work = Path(tmp)
        for label, (r, n), target, unit, scale in (
            ("ZS X-rays (sparse path)", zs_events(n_zs), TARGET_ZS_US, "us/event", 1e6),
            ("full readout (dense path)", full_events(n_full), TARGET_FULL_MS, "ms/event", 1e3),
        ):
            runs = [run_case(r, n, work, f"{label.split()[0]}{k}") for k in range(repeat)]
            ok = all(x["processed"] == x["events"] and x["shed"] == 0 for x in runs)
            ev = max(runs[0]["events"], 1)
            per = sorted(x["thread_s"] / ev * scale for x in runs)
            proc = sorted(x["process_s"] / ev * scale for x in runs)
            mid = per[len(per) // 2]
            print(f"B11 {label}: {runs[0]['events']} events, all processed {ok}; data path thread "
                  f"{', '.join(f'{v:.3g}' for v in per)} {unit}; process "
                  f"{', '.join(f'{v:.3g}' for v in proc)} {unit}")  # fmt: skip
            row = make_row(ID, f"{label}: data path thread CPU per event, every event processed "
                           f"(median of {repeat}; min {per[0]:.3g}, max {per[-1]:.3g})", mid, unit,
                           target=target, target_on="value", higher_is_better=False)  # fmt: skip
            row["met"] = bool(row["met"] and ok)
            rows.append(row)
            rows.append(make_row(ID, f"{label}: process CPU per event (compression threads too)",
                                 proc[len(proc) // 2], unit))  # fmt: skip
            rows.append(make_row(ID, f"{label}: data path on a core of its own", scale / mid,
                                 "events/s"))  # fmt: skip
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
