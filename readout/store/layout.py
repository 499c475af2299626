"""The run file's layout: dataset names and compression (docs/FILE_FORMAT.md).

Shared by the writer and the readers. The row types of the datasets, the flag bits and
FORMAT_VERSION are in :mod:`agetdaq.readout.schema`.
"""

from __future__ import annotations

import hdf5plugin
import numpy as np

RAW_WORDS = "raw/words"  # uint16: every datagram as received, lead word included, back to back
RAW_INDEX = "raw/index"  # one row per datagram
EVENTS = "events"  # one row per built event
CHANNELS = "channels"  # one row per stored channel waveform
SAMPLE_BIN = "samples/bin"  # uint16 time bin of every stored sample
SAMPLE_ADC = "samples/adc"  # uint16 raw ADC of every stored sample, as received
AUX = "aux"  # hit counts and last-cell-read values of the events
STATUS = "status"  # one row per counter snapshot (one per flush): time and where its JSON is
STATUS_JSON = "status_json"  # uint8: the snapshots' JSON back to back (format version 4)
META = "meta"  # group: run facts as typed attributes; texts (script, config, mapping) and
# pedestals as datasets
META_OUT = "meta_out"  # group of what the end of the run records (created empty at the start)
FINAL = "meta_out/final"  # uint8: the end-of-run record, JSON (stop time, reason, counters) (v3)
PEDESTALS = "meta/pedestals"  # per-strip mean, sigma, threshold, flags in use at run start
PEDESTALS_OUT = "meta_out/pedestals"  # the table a pedestal run measured (0 rows: none)
APPENDED = (
    RAW_WORDS, RAW_INDEX, EVENTS, CHANNELS, SAMPLE_BIN, SAMPLE_ADC, AUX, STATUS, STATUS_JSON,
)  # fmt: skip
DATASETS = (*APPENDED, META, META_OUT, PEDESTALS, FINAL, PEDESTALS_OUT)

COMPRESSIONS = ("blosc-lz4", "blosc-zstd", "gzip", "lzf", "none")


def compression_kwargs(name: str, level: int = 5, dtype: np.dtype | None = None) -> dict:
    """h5py ``create_dataset`` keyword arguments for a compression name. Blosc shuffles the bits
    of plain numbers (ADC words: 2.0x with lz4) but the bytes of compound rows, whose large
    element size defeats bit-shuffling (event rows 1.9x -> 5.1x, channel rows 1.3x -> 3.7x, and
    50-80 % faster)."""
    if name in ("blosc-lz4", "blosc-zstd"):
        cname = name.split("-")[1]
        compound = dtype is not None and np.dtype(dtype).names is not None
        shuffle = hdf5plugin.Blosc.SHUFFLE if compound else hdf5plugin.Blosc.BITSHUFFLE
        return dict(hdf5plugin.Blosc(cname=cname, clevel=level, shuffle=shuffle))
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": level, "shuffle": True}
    if name == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if name == "none":
        return {}
    raise ValueError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
