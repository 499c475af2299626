"""Crash-safe HDF5 run writer: SWMR, batched appends, hdf5plugin compression.

Every dataset is created before SWMR mode is switched on, so a reader can open the file while it is
written and a file left by a killed writer stays readable up to the last flush. Appends are buffered
in memory and written as whole chunks (one resize + one slice assignment per dataset), flushed at
least every ``flush_interval_s``. The configuration written when the run ends goes into ``meta_out``
after the SWMR file is closed and re-opened normally (attributes cannot change under SWMR).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numba import njit

from agetdaq import __version__
from agetdaq.readout import schema as S
from agetdaq.readout.config import setting
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.chunks import InlineWrites, codec, sink_for


class WriterError(RuntimeError):
    """The run file could not be written (disk full, permission, closed file...)."""


@dataclass
class WriterConfig:
    compression: str = setting("blosc-lz4", choices=L.COMPRESSIONS)
    level: int = setting(5, "compression level", lo=0, hi=9)
    swmr: bool = True
    flush_interval_s: float = setting(1.0, gt=0.0, hi=3600.0, unit="s")
    raw: bool = True  # keep every datagram as received
    chunk_bytes: int = setting(1 << 20, "bytes per chunk", lo=4096, hi=64 << 20)


class _Appender:
    """Stages rows of one extensible dataset in a buffer of its own and hands them to the chunk
    sink (store/chunks.py) as whole, chunk-aligned slices: every chunk is compressed once, never
    read back, and leaves no stale versions in the file. At a flush the open chunk goes too, and
    its rows stay at the head of the buffer (``held``) until the chunk is full and written again,
    whole."""

    def __init__(self, dset: h5py.Dataset, chunk_rows: int, sink: Any = None) -> None:
        self.dset = dset
        self.chunk_rows = max(1, chunk_rows)
        self.flush_rows = self.chunk_rows  # kept for callers that force small writes
        self.buf = np.empty(2 * self.chunk_rows, dtype=dset.dtype)
        self.sink = sink if sink is not None else InlineWrites()
        self.held = 0  # rows at the head of buf already handed over (the open chunk's)
        self.pending = 0  # rows after them, not handed over yet
        self.written = int(dset.shape[0])  # rows handed over to the file

    @property
    def total(self) -> int:
        """Rows written plus rows pending: the index the next appended row will get."""
        return self.written + self.pending

    def reserve(self, n: int) -> np.ndarray:
        """The next ``n`` staged rows, to be filled in place by the caller."""
        start = self.held + self.pending
        end = start + n
        if end > len(self.buf):
            grown = np.empty(max(2 * len(self.buf), end + self.chunk_rows), dtype=self.buf.dtype)
            grown[:start] = self.buf[:start]
            self.buf = grown
        view = self.buf[start:end]
        self.pending += n
        return view

    def append(self, rows: np.ndarray) -> None:
        if len(rows):
            self.reserve(len(rows))[...] = rows

    def full(self) -> bool:
        return self.pending >= self.flush_rows or (
            self.pending and self.held + self.pending >= self.chunk_rows
        )

    def write_chunks(self) -> None:
        """Hand over the whole chunks staged (everything when flush_rows < chunk_rows)."""
        if self.flush_rows < self.chunk_rows:
            self.write()
        else:
            self._whole_chunks()

    def _whole_chunks(self) -> None:
        staged = self.held + self.pending
        whole = staged // self.chunk_rows
        if not whole or not self.pending:
            return
        c = self.chunk_rows
        base = self.written - self.held  # the row of buf[0]
        rest = staged - whole * c
        old = self.buf  # handed over whole: only the rest is copied, into a fresh buffer
        self.buf = self.sink.buffer(old.nbytes).view(old.dtype)
        if rest:
            self.buf[:rest] = old[whole * c : staged]
        self.sink.put_chunks(self.dset, base, old, whole, c)
        self.written = base + whole * c
        self.held = 0
        self.pending = rest

    def write(self) -> None:
        """Hand over every staged row (the open chunk too)."""
        self._whole_chunks()
        if self.pending:
            staged = self.held + self.pending
            self.sink.put(self.dset, self.written - self.held, self.buf[:staged], self.chunk_rows)
            self.written += self.pending
            self.held = staged
            self.pending = 0


def pack_datagrams(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Rows of ``buf`` (``lengths[i]`` bytes each) back to back into ``out`` (uint8), each padded
    to a whole 16-bit word with a zero byte. Copies 16-bit words where the layout allows (twice
    the speed of a byte copy)."""
    if (
        buf.ndim == 2
        and buf.shape[1] % 2 == 0
        and out.shape[0] % 2 == 0
        and buf.flags.c_contiguous
        and out.flags.c_contiguous
    ):
        _pack_words(buf.view("<u2"), lengths, out.view("<u2"))
    else:
        _pack_bytes(buf, lengths, out)


@njit(cache=True, nogil=True)
def _pack_words(buf16: np.ndarray, lengths: np.ndarray, out16: np.ndarray) -> None:
    o = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        nw = (n + 1) >> 1
        out16[o : o + nw] = buf16[i, :nw]
        if n & 1:
            out16[o + nw - 1] &= 0x00FF  # the byte after the datagram (little-endian words)
        o += nw


@njit(cache=True, nogil=True)
def _pack_bytes(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    o = 0
    for i in range(lengths.shape[0]):
        n = lengths[i]
        out[o : o + n] = buf[i, :n]
        if n & 1:
            out[o + n] = 0
        o += n + (n & 1)


def pack_datagrams_ref(buf: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
    """Plain-Python reference of :func:`pack_datagrams`."""
    o = 0
    for row, n in zip(buf, lengths):
        n = int(n)
        padded = bytes(row[:n]) + (b"\0" if n % 2 else b"")
        out[o : o + len(padded)] = np.frombuffer(padded, np.uint8)
        o += len(padded)


class RunWriter:
    """Writes one run: raw datagrams, events, channel waveforms, status, metadata."""

    def __init__(
        self,
        path: str | Path,
        event_dtype: np.dtype,
        metadata: Mapping[str, object] | None = None,
        config: WriterConfig | None = None,
        pedestals: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config or WriterConfig()
        self.event_dtype = np.dtype(event_dtype)
        self.closed = False
        self.failed: str | None = None
        self._last_flush = time.monotonic()
        # Blosc chunks compressed on other threads, outside the GIL (store/chunks.py)
        self._sink = sink_for(codec(self.config.compression, 0, np.uint8) is not None)
        try:
            # a chunk cache of a few chunks per dataset keeps the partial chunk of each flush
            self.file = h5py.File(
                self.path,
                "w",
                libver="latest",
                rdcc_nbytes=4 * self.config.chunk_bytes,
                rdcc_w0=1.0,
            )
            self._create(metadata or {}, pedestals)
            if self.config.swmr:
                self.file.swmr_mode = True
        except (OSError, ValueError) as exc:
            raise WriterError(f"cannot create run file {self.path}: {exc}") from exc

    # ---- creation ---------------------------------------------------------------------------

    def _dataset(self, name: str, dtype: np.dtype) -> _Appender:
        dtype = np.dtype(dtype)
        rows = max(1, self.config.chunk_bytes // dtype.itemsize)
        dset = self.file.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            dtype=dtype,
            chunks=(rows,),
            **L.compression_kwargs(self.config.compression, self.config.level, dtype),
        )
        encode = codec(self.config.compression, self.config.level, dtype)
        if encode is not None:
            self._sink.add(dset, encode)
        return _Appender(dset, rows, self._sink)

    def _create(self, metadata: Mapping[str, object], pedestals: np.ndarray | None) -> None:
        f = self.file
        f.attrs["format"] = S.FORMAT_NAME
        f.attrs["format_version"] = S.FORMAT_VERSION
        f.attrs["software_version"] = __version__
        f.attrs["created_unix"] = time.time()
        self.raw_words = self._dataset(L.RAW_WORDS, S.RAW_WORD_DTYPE)
        self.raw_index = self._dataset(L.RAW_INDEX, S.RAW_INDEX_DTYPE)
        self.events = self._dataset(L.EVENTS, self.event_dtype)
        self.channels = self._dataset(L.CHANNELS, S.CHANNEL_DTYPE)
        self.sample_bin = self._dataset(L.SAMPLE_BIN, S.SAMPLE_DTYPE)
        self.sample_adc = self._dataset(L.SAMPLE_ADC, S.SAMPLE_DTYPE)
        self.aux = self._dataset(L.AUX, S.AUX_DTYPE)
        self.status = self._dataset(L.STATUS, S.STATUS_DTYPE)
        self.status.flush_rows = 1
        meta = f.require_group(L.META)
        for key, value in metadata.items():
            if isinstance(value, np.ndarray):
                meta.create_dataset(key, data=value)
            elif isinstance(value, (dict, list)):
                meta.create_dataset(key, data=json.dumps(value, default=str))
            else:
                meta.create_dataset(key, data=str(value))
        if pedestals is not None:
            f.create_dataset(L.PEDESTALS, data=np.asarray(pedestals, dtype=S.PEDESTAL_DTYPE))

    # ---- appends ----------------------------------------------------------------------------

    def append_raw(self, buf: np.ndarray, lengths: np.ndarray, arrival_ns: np.ndarray) -> None:
        """Append datagrams: rows of a 2-D uint8 buffer, each ``lengths[i]`` bytes long."""
        if not self.config.raw or not len(lengths):
            return
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(buf) != len(lengths) or (len(lengths) and int(lengths.max()) > buf.shape[1]):
            raise ValueError("append_raw: one row per datagram, each at most a row long")
        nwords = (lengths + 1) // 2
        index = self.raw_index.reserve(len(lengths))
        index["offset"][0] = self.raw_words.total
        np.cumsum(nwords[:-1], out=index["offset"][1:])
        index["offset"][1:] += self.raw_words.total
        index["nbytes"] = lengths
        index["arrival_ns"] = arrival_ns
        words = self.raw_words.reserve(int(nwords.sum()))
        pack_datagrams(buf, lengths, words.view(np.uint8))
        self._maybe_write()

    def append_events(
        self,
        events: np.ndarray,
        channels: np.ndarray,
        sample_bin: np.ndarray,
        sample_adc: np.ndarray,
        aux: np.ndarray | None = None,
    ) -> None:
        """Append events with their channels (and aux rows); ``event_row`` and ``sample_start``
        are relative to this call's ``events`` and sample arrays and are made absolute here."""
        if len(events) == 0:
            return
        ch = np.array(channels, dtype=S.CHANNEL_DTYPE, copy=True)
        ch["event_row"] += self.events.total
        ch["sample_start"] += self.sample_bin.total
        if aux is not None and len(aux):
            ax = np.array(aux, dtype=S.AUX_DTYPE, copy=True)
            ax["event_row"] += self.events.total
            self.aux.append(ax)
        self.events.append(np.asarray(events, dtype=self.event_dtype))
        self.channels.append(ch)
        self.sample_bin.append(np.asarray(sample_bin, dtype=S.SAMPLE_DTYPE))
        self.sample_adc.append(np.asarray(sample_adc, dtype=S.SAMPLE_DTYPE))
        self._maybe_write()

    def append_status(self, snapshot: Mapping[str, object]) -> None:
        row = np.zeros(1, dtype=S.STATUS_DTYPE)
        row["time_ns"] = time.time_ns()
        row["json"] = json.dumps(snapshot, default=str).encode()[: S.STATUS_DTYPE["json"].itemsize]
        self.status.append(row)

    # ---- flushing ---------------------------------------------------------------------------

    def _appenders(self) -> tuple[_Appender, ...]:
        return (
            self.raw_words,
            self.raw_index,
            self.events,
            self.channels,
            self.sample_bin,
            self.sample_adc,
            self.aux,
            self.status,
        )

    def _maybe_write(self) -> None:
        """Whole chunks go to the chunk sink as soon as they are staged; the file itself is
        flushed (every staged row written, metadata updated for SWMR readers) once per flush
        interval, by the writer thread, without waiting for it here."""
        if time.monotonic() - self._last_flush >= self.config.flush_interval_s:
            self._flush(wait=False)
            return
        try:
            for a in self._appenders():
                if a.full():
                    a.write_chunks()
        except (OSError, ValueError, RuntimeError) as exc:
            self.failed = f"write to {self.path} failed: {exc}"
            raise WriterError(self.failed) from exc

    def tick(self) -> None:
        """Call periodically: flushes when the flush interval has passed (without waiting)."""
        if time.monotonic() - self._last_flush >= self.config.flush_interval_s:
            self._flush(wait=False)

    def flush(self) -> None:
        """Write every pending row and flush the file, so a reader (or a crash) sees them."""
        self._flush(wait=True)

    def _flush(self, wait: bool) -> None:
        if self.closed:
            return
        try:
            for a in self._appenders():
                a.write()
            self._sink.flush(self.file, wait)
        except (OSError, ValueError, RuntimeError) as exc:
            self.failed = f"write to {self.path} failed: {exc}"
            raise WriterError(self.failed) from exc
        self._last_flush = time.monotonic()

    @property
    def events_written(self) -> int:
        """Event rows stored in HDF5 (rows handed to the chunk threads may still wait)."""
        return self.events.sink.rows_written(self.events.dset)

    @property
    def events_total(self) -> int:
        return self.events.total

    def file_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def close(self, final: Mapping[str, object] | None = None) -> None:
        """Flush, close, and record the final metadata in ``meta_out`` (outside SWMR)."""
        if self.closed:
            return
        error: Exception | None = None
        try:
            self.flush()
        except WriterError as exc:
            error = exc
        try:
            self.file.close()
        except Exception as exc:  # the file must be released whatever happened
            error = error or exc
        self.closed = True
        if final is not None and error is None:
            try:
                with h5py.File(self.path, "a") as f:
                    out = f.require_group(L.META_OUT)
                    for key, value in final.items():
                        if key in out:
                            del out[key]
                        if isinstance(value, np.ndarray):
                            out.create_dataset(key, data=value)
                        else:
                            text = (
                                value if isinstance(value, str) else json.dumps(value, default=str)
                            )
                            out.create_dataset(key, data=text)
            except OSError as exc:
                error = exc
        if error is not None:
            raise WriterError(f"closing {self.path}: {error}") from error

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
