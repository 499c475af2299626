"""B5: the HDF5 run writer with its real settings on full events of pedestal-like noise.

Full events (4 chips x 68 channels x 512 samples, ADC ~ N(250, 4)) are framed as the card does at
MTU 1500 (1494-byte datagrams in 9216-byte ring rows) and decoded and built once; then 10 000 of
them (64 distinct ones, cycled) go through :class:`agetdaq.readout.store.writer.RunWriter` with the
default :class:`~agetdaq.readout.store.writer.WriterConfig` (blosc-lz4 + bitshuffle, 1 MiB chunks,
SWMR, raw datagrams kept) as the data path hands them over: raw datagrams in batches of 256, then
the event rows and every channel's waveform (store mode ``all``, what a shed event stores: the
heaviest).

Rows: writer MB/s of input (raw datagram bytes + event, channel and sample arrays) against plain
writes (``os.writev``, one per hand-over) of the same bytes in the same run, both until the data
is on disk (fsync: what a run can sustain) and to the page cache only; the compression ratio
(dataset bytes / file bytes); and the writer with SWMR on against off.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.protocol.decode import StreamDecoder
from agetdaq.protocol.encode import DataFramer, max_frame_bytes_for_mtu
from agetdaq.protocol.event_block import event_words_bound, write_event_kernel
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.words import lead_word
from agetdaq.readout.datapath.build import EventBuilder, select_events
from agetdaq.readout.datapath.processing.waveforms import StripLayout
from agetdaq.readout.datapath.rows import event_rows, stored_channels
from agetdaq.readout.link.receiver import DEFAULT_SLOT_SIZE
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.store.writer import RunWriter, WriterConfig
from benchmarks.common import make_row

ID = "B5"
N_DISTINCT = 64
RAW_BATCH = 256
TARGET_VS_WRITE = 1.0
TARGET_COMPRESSION = 2.9
TARGET_SWMR_COST = 0.10


def make_datagrams(n_events: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full noise events framed at MTU 1500: (uint8 rows of DEFAULT_SLOT_SIZE, lengths, index of
    each event's first datagram + total)."""
    rng = np.random.default_rng(seed)
    n_chips, n_chans, n_samples = 4, 68, 512
    n_ch = n_chips * n_chans
    cards = np.zeros(n_ch, np.int64)
    chips = np.repeat(np.arange(n_chips), n_chans).astype(np.int64)
    chans = np.tile(np.arange(n_chans), n_chips).astype(np.int64)
    offsets = np.arange(n_ch + 1, dtype=np.int64) * n_samples
    bins = np.tile(np.arange(n_samples), n_ch).astype(np.int64)
    none = np.zeros(0, np.int64)
    out = np.empty(event_words_bound(n_ch, n_ch * n_samples, 0, 0), np.uint16)
    framer = DataFramer(max_frame_bytes=max_frame_bytes_for_mtu(1500), eof_on_eoe=True)
    frames: list[np.ndarray] = []
    first = [0]
    for i in range(n_events):
        adc = np.rint(rng.normal(250, 4, n_ch * n_samples)).astype(np.int64).clip(0, 4095)
        n = write_event_kernel(
            out, 0, 0, 1000 * i, i, none, none, cards, chips, chans, offsets, bins, adc,
            none, none, none, False, -1,
        )  # fmt: skip
        frames.extend(framer.add(out[:n]))
        first.append(len(frames))
    rows = np.zeros((len(frames), DEFAULT_SLOT_SIZE // 2), np.uint16)
    lengths = np.empty(len(frames), np.int32)
    for k, f in enumerate(frames):
        rows[k, 0] = lead_word(k, first=k == 0)
        rows[k, 1 : 1 + f.size] = f
        lengths[k] = 2 * (f.size + 1)
    return rows.view(np.uint8), lengths, np.array(first)


def event_arrays(buf: np.ndarray, lengths: np.ndarray, n_events: int) -> list[tuple]:
    """Per event: (rows, channels, bins, adc, aux) as the data path gives them to the writer."""
    built = EventBuilder().build(StreamDecoder().decode(buf, lengths))
    if len(built) < n_events - 1:
        raise RuntimeError(f"built {len(built)} of {n_events} events")
    lut = StripLayout.from_mapping(StripMapping.default(), 0).lut
    out = []
    from agetdaq.readout.datapath.build import BuiltBatch

    for i in range(len(built)):
        keep = np.zeros(len(built), bool)
        keep[i] = True
        sub = BuiltBatch(select_events(built.decoded, keep), built.event_id[i : i + 1],
                         built.build_flags[i : i + 1])  # fmt: skip
        rows = event_rows(sub, None, time.time_ns())
        ch, bins, adc, aux = stored_channels(sub, lut, "all", None, None)
        out.append((rows, ch, bins, adc, aux))
    return out


def _feed(writer: RunWriter | None, fd: int | None, data: dict, n_events: int) -> int:
    """Hand ``n_events`` events to ``writer`` as the data path does (or write the same bytes to
    file descriptor ``fd``, one ``writev`` per hand-over); return the bytes handed over."""
    buf, lengths, first, events = data["buf"], data["lengths"], data["first"], data["events"]
    n_ev = len(events)
    total = 0
    pending: list[tuple[int, int]] = []
    n_pending = 0
    for i in range(n_events):
        e = i % n_ev
        pending.append((first[e], first[e + 1]))
        n_pending += first[e + 1] - first[e]
        if n_pending >= RAW_BATCH or i == n_events - 1:
            for a, z in pending:
                for s in range(a, z, RAW_BATCH):
                    t = min(z, s + RAW_BATCH)
                    if writer is not None:
                        arrival = np.full(t - s, time.time_ns(), np.int64)
                        writer.append_raw(buf[s:t], lengths[s:t], arrival)
                    else:
                        os.writev(fd, [buf[r, : lengths[r]] for r in range(s, t)])
                    total += int(lengths[s:t].sum())
            pending.clear()
            n_pending = 0
        arrays = events[e]
        if writer is not None:
            writer.append_events(*arrays)
        else:
            os.writev(fd, [memoryview(x).cast("B") for x in arrays if x.nbytes])
        total += sum(x.nbytes for x in arrays)
    return total


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def measure_writer(data: dict, n_events: int, path: Path, swmr: bool) -> dict[str, float]:
    """Writer time to a closed file (page cache), then to the file on disk (fsync)."""
    t0 = time.perf_counter()
    w = RunWriter(path, EVENT_DTYPE, {"run_number": "1"}, WriterConfig(swmr=swmr))
    nbytes = _feed(w, None, data, n_events)
    dataset_bytes = sum(a.dset.size * a.dset.dtype.itemsize for a in w._appenders())
    w.close({"stop_reason": "benchmark"})
    dt = time.perf_counter() - t0
    _sync(path)
    dt_disk = time.perf_counter() - t0
    size = path.stat().st_size
    path.unlink()
    return {"seconds": dt, "bytes": nbytes, "mb_s": nbytes / dt / 1e6,
            "mb_s_disk": nbytes / dt_disk / 1e6, "ratio": dataset_bytes / size}  # fmt: skip


def measure_write(data: dict, n_events: int, path: Path) -> dict[str, float]:
    """The same bytes with plain writes: to the page cache, then on disk (fsync)."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        nbytes = _feed(None, fd, data, n_events)
        dt = time.perf_counter() - t0
        os.fsync(fd)
        dt_disk = time.perf_counter() - t0
    finally:
        os.close(fd)
    path.unlink()
    return {"seconds": dt, "bytes": nbytes, "mb_s": nbytes / dt / 1e6,
            "mb_s_disk": nbytes / dt_disk / 1e6}  # fmt: skip


def run(quick: bool) -> list[dict[str, Any]]:
    n_events = 1_000 if quick else 10_000
    buf, lengths, first = make_datagrams(N_DISTINCT)
    data = {"buf": buf, "lengths": lengths, "first": first,
            "events": event_arrays(buf, lengths, N_DISTINCT)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="b5-") as tmp:
        work = Path(tmp)
        measure_writer(data, 50, work / "warm.h5", True)  # warm-up: imports, plugin, page cache
        ref = measure_write(data, n_events, work / "plain.bin")
        on = measure_writer(data, n_events, work / "swmr.h5", True)
        off = measure_writer(data, n_events, work / "noswmr.h5", False)
    gb = on["bytes"] / 1e9
    print(
        f"B5: {n_events} full events, {gb:.2f} GB in. Page cache: file.write {ref['mb_s']:.0f} "
        f"MB/s, writer SWMR {on['mb_s']:.0f} MB/s ({on['seconds']:.1f} s), no SWMR "
        f"{off['mb_s']:.0f} MB/s. On disk (fsync): file.write {ref['mb_s_disk']:.0f} MB/s, "
        f"writer {on['mb_s_disk']:.0f} MB/s. Compression {on['ratio']:.2f}x"
    )
    return [
        make_row(ID, f"RunWriter, {n_events} full noise events, on disk (fsync)",
                 on["mb_s_disk"], "MB/s", reference=ref["mb_s_disk"],
                 ref_unit="MB/s file.write+fsync", target=TARGET_VS_WRITE),
        make_row(ID, "RunWriter to the page cache (no fsync)", on["mb_s"], "MB/s",
                 reference=ref["mb_s"], ref_unit="MB/s file.write"),
        make_row(ID, "compression (dataset bytes / file bytes)", on["ratio"], "x",
                 target=TARGET_COMPRESSION, target_on="value"),
        make_row(ID, "RunWriter SWMR on / off (page cache)", on["mb_s"], "MB/s",
                 reference=off["mb_s"], ref_unit="MB/s SWMR off", target=1.0 - TARGET_SWMR_COST),
        make_row(ID, "full events/s written (SWMR, page cache)", n_events / on["seconds"],
                 "events/s"),
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
