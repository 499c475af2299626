"""Crash-safe HDF5 run writer: SWMR, batched appends, hdf5plugin compression.

Every dataset is created before SWMR mode is switched on, so a reader can open the file while it is
written and a file left by a killed writer stays readable up to the last flush. Appends are buffered
in memory and written as whole chunks (one resize + one slice assignment per dataset), flushed at
least every ``flush_interval_s``. What the end of the run records (``meta_out/final``, a JSON
record, and ``meta_out/pedestals``) goes into datasets created empty at the start, so it is written
while still in SWMR mode: no stop path leaves a file the readers cannot open.

One process writes a file, and never over an existing one unless asked (``overwrite``): a
:class:`~agetdaq.readout.store.lock.WriterLock` beside the file refuses a second writer. When the
disk fills up the writer stops writing, frees the lock's space reserve and closes the file valid
(:meth:`RunWriter.close`); the message says "disk full".
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from agetdaq import __version__
from agetdaq.readout import schema as S
from agetdaq.readout.config import setting
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.appender import Appender
from agetdaq.readout.store.chunks import codec, sink_for
from agetdaq.readout.store.failure import WriterError, descriptor, release_descriptor, write_error
from agetdaq.readout.store.lock import FileBusyError, WriterLock
from agetdaq.readout.store.metadata import write_metadata
from agetdaq.readout.store.rawpack import pack_raw

__all__ = ["RunWriter", "WriterConfig", "WriterError"]
_WRITE_ERRORS = (OSError, ValueError, RuntimeError)
ROOM_MARGIN = 2 << 20  # bytes left free beyond the staged rows when the writer stops (disk full)


@dataclass
class WriterConfig:
    compression: str = setting("blosc-lz4", choices=L.COMPRESSIONS)
    level: int = setting(5, "compression level", lo=0, hi=9)
    swmr: bool = True
    flush_interval_s: float = setting(1.0, gt=0.0, hi=3600.0, unit="s")
    raw: bool = True  # keep every datagram as received
    chunk_bytes: int = setting(1 << 20, "bytes per chunk", lo=4096, hi=64 << 20)


class RunWriter:
    """Writes one run: raw datagrams, events, channel waveforms, status, metadata."""

    def __init__(
        self,
        path: str | Path,
        event_dtype: np.dtype,
        metadata: Mapping[str, object] | None = None,
        config: WriterConfig | None = None,
        pedestals: np.ndarray | None = None,
        *,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.config = config or WriterConfig()
        self.event_dtype = np.dtype(event_dtype)
        self.closed = False
        self.failed: str | None = None
        self.error: WriterError | None = None
        self.dropped_rows = 0  # rows staged when the writer failed (never reached the file)
        self.out_of_room = False  # stopped before the disk was full (see _check_room)
        self._last_flush = time.monotonic()
        # append_status from any thread (bounded: a writer that stopped writing drops the oldest)
        self._status_inbox: deque[tuple[int, bytes]] = deque(maxlen=4096)
        # Blosc chunks compressed on other threads, outside the GIL (store/chunks.py)
        self._sink = sink_for(codec(self.config.compression, 0, np.uint8) is not None)
        try:
            self.lock = WriterLock(self.path)
        except FileBusyError as exc:
            raise WriterError(str(exc)) from None
        except OSError as exc:
            raise write_error(self.path, exc, "create") from None
        try:
            if not overwrite and os.path.lexists(self.path):
                raise WriterError(f"{self.path} exists (a run file is never replaced: --force)")
            # a chunk cache of a few chunks per dataset keeps the partial chunk of each flush
            self.file = h5py.File(
                self.path,
                "w" if overwrite else "w-",
                libver="latest",
                rdcc_nbytes=4 * self.config.chunk_bytes,
                rdcc_w0=1.0,
            )
            self._fd, self._inode = descriptor(self.file)
            self._create(metadata or {}, pedestals)
            if self.config.swmr:
                self.file.swmr_mode = True
        except WriterError:
            self._abandon()
            raise
        except (OSError, ValueError) as exc:
            self._abandon()
            raise write_error(self.path, exc, "create run file") from exc

    def _abandon(self) -> None:
        """Creation failed: close what was opened, release the lock."""
        file = getattr(self, "file", None)
        if file is not None:
            with contextlib.suppress(Exception):
                file.close()
        self.lock.release()

    # ---- creation ---------------------------------------------------------------------------

    def _dataset(self, name: str, dtype: np.dtype) -> Appender:
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
        return Appender(dset, rows, self._sink)

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
        self.status_json = self._dataset(L.STATUS_JSON, S.STATUS_TEXT_DTYPE)
        self.status_json.flush_rows = 1
        write_metadata(f.require_group(L.META), metadata)
        if pedestals is not None:
            f.create_dataset(L.PEDESTALS, data=np.asarray(pedestals, dtype=S.PEDESTAL_DTYPE))
        # what the end of the run records, created now so that it is written in SWMR mode
        out = f.require_group(L.META_OUT)
        out.create_dataset(L.FINAL.split("/")[-1], shape=(0,), maxshape=(None,), dtype=np.uint8,
                           chunks=(1 << 14,))  # fmt: skip
        out.create_dataset(L.PEDESTALS_OUT.split("/")[-1], shape=(0,), maxshape=(None,),
                           dtype=S.PEDESTAL_DTYPE, chunks=(512,))  # fmt: skip

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
        pack_raw(buf, lengths, words.view(np.uint8))
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
        """One counter snapshot, its JSON whole (format version 4). Safe from any thread: the
        engine calls it beside the data path, whose thread alone touches the appenders; the
        snapshot waits in an inbox until that thread's next write, flush or close."""
        text = json.dumps(snapshot, default=str).encode()
        self._status_inbox.append((time.time_ns(), text))

    def _take_status(self) -> None:
        """Stage the snapshots waiting in the inbox (in the thread that writes)."""
        inbox = self._status_inbox
        while inbox:
            t_ns, text = inbox.popleft()
            row = np.zeros(1, dtype=S.STATUS_DTYPE)
            row["time_ns"] = t_ns
            row["offset"] = self.status_json.total
            row["nbytes"] = len(text)
            self.status_json.append(np.frombuffer(text, dtype=np.uint8))
            self.status.append(row)

    # ---- flushing ---------------------------------------------------------------------------

    def _appenders(self) -> tuple[Appender, ...]:
        return (
            self.raw_words,
            self.raw_index,
            self.events,
            self.channels,
            self.sample_bin,
            self.sample_adc,
            self.aux,
            self.status_json,
            self.status,
        )

    def _maybe_write(self) -> None:
        """Whole chunks go to the chunk sink as soon as they are staged; the file itself is
        flushed (every staged row written, metadata updated for SWMR readers) once per flush
        interval, by the writer thread, without waiting for it here."""
        if time.monotonic() - self._last_flush >= self.config.flush_interval_s:
            self._flush(wait=False)
            return
        if self.error is not None:
            raise self.error
        self._take_status()
        try:
            if any(a.full() for a in self._appenders()):
                self._check_room()
                for a in self._appenders():
                    if a.full():
                        a.write_chunks()
        except (OSError, ValueError, RuntimeError) as exc:
            raise self._fail(exc) from exc

    def _check_room(self) -> None:
        """Stop writing before the disk is full (OSError ENOSPC): the staged rows and a margin
        must fit, so that close() can still write them all, with the lock's reserve."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        staged = sum(a.pending * a.buf.dtype.itemsize for a in self._appenders())
        if st.f_bavail * st.f_frsize < staged + ROOM_MARGIN:
            self.out_of_room = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _fail(self, exc: BaseException) -> WriterError:
        """The writer stops writing for good (the run must stop; close() still closes)."""
        if self.error is None:
            self.error = write_error(self.path, exc)
            self.failed = str(self.error)
        return self.error

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
        if self.error is not None:
            raise self.error
        self._take_status()
        try:
            self._check_room()
            for a in self._appenders():
                a.write()
            self._sink.flush(self.file, wait)
        except (OSError, ValueError, RuntimeError) as exc:
            raise self._fail(exc) from exc
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
        """Flush, record ``final`` (stop time, reason, counters; ``pedestals``: the table a
        pedestal run measured) in ``meta_out`` while still in SWMR mode, close, release the lock.

        A full disk: the lock's space reserve is freed; when the writer stopped before the disk
        was full (the usual case) every staged row is written, after a failed write the rows that
        never reached the file are dropped; the file is closed valid either way. WriterError only
        when even that fails, and the file is released anyway.
        """
        if self.closed:
            return
        error: WriterError | None = None
        if self.error is None:
            try:
                self.flush()
            except WriterError as exc:
                error = exc
        if self.error is not None:
            with contextlib.suppress(*_WRITE_ERRORS):
                self._sink.drain()  # no chunk thread writes into the file from here on
            self.lock.free_reserve()  # room for the blocks closing the file needs
            if self.out_of_room:  # nothing failed: the staged rows fit in the reserve's room
                with contextlib.suppress(*_WRITE_ERRORS):
                    for a in self._appenders():
                        a.write()
                    self._sink.flush(self.file, True)
            self.dropped_rows = sum(a.pending for a in self._appenders())
            for a in self._appenders():
                a.pending = 0
                with contextlib.suppress(*_WRITE_ERRORS):  # rows of a write that failed
                    kept = min(a.written, a.sink.rows_written(a.dset))
                    if a.dset.shape[0] > kept:
                        a.dset.resize((kept,))
        if final is not None:
            try:
                self._write_final(final)
            except (OSError, ValueError, RuntimeError) as exc:
                error = error or write_error(self.path, exc, "record the end of run in")
        try:
            self.file.close()
        except Exception as exc:  # the file must be released whatever happened
            error = error or write_error(self.path, exc, "close")
            self._force_release()
        self.closed = True
        self.lock.release()
        if error is not None and error is not self.error:
            raise error

    def _write_final(self, final: Mapping[str, object]) -> None:
        record = {}
        for key, value in final.items():
            if key == L.PEDESTALS_OUT.split("/")[-1] and isinstance(value, np.ndarray):
                rows = np.asarray(value, dtype=S.PEDESTAL_DTYPE)
                table = self.file[L.PEDESTALS_OUT]
                table.resize((len(rows),))
                table[:] = rows
            else:
                record[key] = value.tolist() if isinstance(value, np.ndarray) else value
        data = np.frombuffer(json.dumps(record, default=str).encode(), np.uint8)
        dset = self.file[L.FINAL]
        dset.resize((len(data),))
        dset[:] = data
        self.file.flush()

    def _force_release(self) -> None:
        """HDF5 could not close the file: release its descriptor anyway (failure.py)."""
        release_descriptor(self._fd, self._inode)
        with contextlib.suppress(Exception):
            self.file.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
