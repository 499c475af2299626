"""Run files as the DAQ writes them (SWMR, raw datagrams, events, channels, small chunks so that
damage lands across many of them) and the damaged copies the reader must survive.

Shared by tests/test_damaged_files.py and the CLI fuzz test (tests/test_cli_convention.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import h5py
import numpy as np

from agetdaq.protocol.aqs import AqsWriter
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.pcap import PcapRecord, write_pcap
from agetdaq.readout.datapath.offline import datagrams_to_h5
from agetdaq.readout.store.writer import WriterConfig

START = 1_700_000_000
BOARD, PC = ("10.0.0.2", 40000), ("10.0.0.1", 50000)  # a board on a port other than 1122


def events(n: int, seed: int = 5) -> list[Event]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        channels = []
        for chip in range(4):
            bins = np.arange(80, 200, dtype=np.uint16)
            adc = rng.integers(200, 4000, bins.size).astype(np.uint16)
            channels.append(Channel(0, chip, 3 + 7 * chip + k % 5, bins, adc))
        out.append(Event(event_type=1, timestamp=1000 + 500 * k, event_count=k,
                         channels=channels, last_cells=[(0, k % 500)]))  # fmt: skip
    return out


def write_run_file(path: Path, n: int = 300) -> Path:
    """A closed run file written in SWMR mode with 4 KB chunks: raw datagrams, events, channels."""
    data = encode_events(events(n), max_frame_bytes=1400)
    config = WriterConfig(swmr=True, chunk_bytes=4096, flush_interval_s=0.05)
    meta = {
        "run_number": "12",
        "run_type": "background",
        "mapping": StripMapping.default().to_text(),
    }
    datagrams_to_h5(data, path, meta, start_unix=START, writer_config=config)
    return path


def write_capture(path: Path, n: int = 20) -> Path:
    data = encode_events(events(n), max_frame_bytes=1400)
    records = [PcapRecord(START - 1.0, PC, BOARD, b"daq 0x000010 F\n")]
    records += [PcapRecord(START + 0.01 * i, BOARD, PC, d) for i, d in enumerate(data)]
    write_pcap(path, records)
    return path


def write_aqs(path: Path, n: int = 20) -> Path:
    with AqsWriter(path, "R00012_test", START) as w:
        w.write_events(events(n), built=True)
    return path


def damaged(good: Path, folder: Path) -> dict[str, Path]:
    """Damaged copies of ``good``: cut at 10 % and 50 %, cut by 2 KB, zeroed and random blocks,
    a foreign HDF5 file, a future format version, random bytes, an empty file."""
    data = good.read_bytes()
    n = len(data)
    rng = random.Random(11)
    out: dict[str, bytes] = {
        "cut10": data[: n // 10],
        "cut50": data[: n // 2],
        "cut2k": data[: n - 2048],
        "random": rng.randbytes(50_000),
        "empty": b"",
    }
    for name, at in (("zero_head", 0.02), ("zero_mid", 0.5), ("zero_tail", 0.9)):
        b = bytearray(data)
        o = int(n * at)
        b[o : o + 8192] = bytes(8192)
        out[name] = bytes(b)
    for k in range(2):
        b = bytearray(data)
        o = rng.randrange(1024, n - 4096)
        b[o : o + 4096] = rng.randbytes(4096)
        out[f"random_block{k}"] = bytes(b)
    paths = {}
    for name, content in out.items():
        paths[name] = folder / f"{name}.h5"
        paths[name].write_bytes(content)
    paths["foreign"] = folder / "foreign.h5"
    with h5py.File(paths["foreign"], "w") as f:
        f["x"] = np.arange(10)
    paths["future"] = folder / "future.h5"
    paths["future"].write_bytes(data)
    with h5py.File(paths["future"], "a") as f:
        f.attrs["format_version"] = 99
    return paths
