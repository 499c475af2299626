"""Reader of agetdaq run files (works on a file that is still being written, via SWMR).

The HDF5 side of :func:`agetdaq.readout.store.run.open_run`, which is what commands and the GUI
use; this class is the direct access to the file's tables. A file of an older format version or
with missing tables (a writer that died early) reads as far as it goes: a missing table is empty.

A damaged file never hangs the reader and never stops it at the first error
(:mod:`~agetdaq.readout.store.h5open`): metadata retries are bounded, a file cut short is read up to
the cut (the rows whose chunks lie within the file), a file left flagged "open for writing" is read
through a flag-cleared view. What the reader found is in :attr:`RunFile.notices` (worth knowing:
not closed by its writer, flag cleared) and :attr:`RunFile.damage` (something is lost); a table
that cannot be read raises :class:`DamagedRunFileError`. A file of a newer format version than this
software reads is refused with :class:`NewerFormatError`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from agetdaq.protocol.event import Event
from agetdaq.readout import schema as S
from agetdaq.readout.store import h5open
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.errors import (
    DamagedRunFileError,
    NewerFormatError,
    RunFileError,
    UnknownFormatError,
)
from agetdaq.readout.store.events import EventReader
from agetdaq.readout.store.extent import ReadableRows
from agetdaq.readout.store.h5open import H5_ERRORS, h5_reason
from agetdaq.readout.store.lock import holder
from agetdaq.readout.store.metadata import metadata_text, read_attributes

__all__ = ["RunFile", "RunFileError"]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


class RunFile:
    """Read access to one run file; refresh() picks up rows appended by a live writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.notices: list[str] = []
        self.damage: list[str] = []
        self._view: h5open.FlagClearedView | None = None
        try:
            sb = h5open.read_superblock(self.path)
            self._size = os.stat(self.path).st_size
        except OSError as exc:
            raise RunFileError(f"{self.path}: {exc.strerror or exc}") from None
        if sb is None:
            raise DamagedRunFileError(
                f"{self.path}: no HDF5 signature (not a run file, or its first bytes are damaged)"
            )
        self.superblock = sb
        try:
            self.file = self._open(sb)
        except H5_ERRORS as exc:
            raise DamagedRunFileError(f"{self.path}: cannot open: {h5_reason(exc)}") from None
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _open(self, sb: h5open.Superblock) -> h5py.File:
        if sb.open_for_write and not sb.swmr_write and sb.version >= 2:
            if h5open.locked_by_writer(self.path):
                raise RunFileError(f"{self.path} is open for writing by another process")
            file, self._view = h5open.open_flag_cleared(self.path, sb)
            self.notices.append(
                "left flagged 'open for writing' by a writer that did not close it: read through "
                "a view with the flag cleared (the file is unchanged; h5clear -s clears it)"
            )
            return file
        return h5open.open_swmr_read(self.path)

    def _check(self) -> None:
        try:
            name = _text(self.file.attrs.get("format", ""))
            version = int(self.file.attrs.get("format_version", 1))
            has_events = L.EVENTS in self.file
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.path}: unreadable root group: {h5_reason(exc)}"
            ) from None
        if name != S.FORMAT_NAME:
            raise UnknownFormatError(f"{self.path} is not an agetdaq run file (an HDF5 file)")
        if version > S.FORMAT_VERSION:
            written = _text(self.file.attrs.get("software_version", "?"))
            raise NewerFormatError(
                f"{self.path}: format version {version} (written by agetdaq {written}); this "
                f"agetdaq reads versions up to {S.FORMAT_VERSION}: upgrade agetdaq to read it"
            )
        if not has_events:
            raise DamagedRunFileError(f"{self.path}: the run file has no events table")
        self._format_version = version
        cut = self._size < self.superblock.end_of_file
        if cut and not self.superblock.swmr_write:
            self.damage.append(
                f"cut short: {self._size} of {self.superblock.end_of_file} bytes; the rows "
                "before the cut are read"
            )
        if self.superblock.swmr_write and not self.closed:
            who = holder(self.path)
            if who is not None and who.alive():
                self.notices.append(f"being written by {who}")
            else:
                self.notices.append(
                    "not closed by its writer (killed, or the machine stopped): every row "
                    "flushed before is read; no end-of-run record"
                )
        self.extent = ReadableRows(self.file, self._size, self.damage)
        if cut:
            self.extent.cut()

    @property
    def closed(self) -> bool:
        """Did the writer close the file (its end-of-run record is there)?"""
        with contextlib.suppress(*H5_ERRORS):
            if L.FINAL in self.file:
                return bool(self._final_record())
            return L.META_OUT in self.file  # format 1-2: the group was made at the close
        return False

    def _final_record(self) -> dict:
        """The end-of-run record; {} when there is none, or when the writer was stopped while
        writing it (the record is written and flushed at once: a part of one is no record)."""
        data = self.file[L.FINAL][:]
        if not len(data):
            return {}
        try:
            record = json.loads(data.tobytes())
        except (ValueError, UnicodeDecodeError):
            record = None
        if not isinstance(record, dict):
            text = "end-of-run record incomplete (the writer was stopped while writing it)"
            if text not in self.notices:
                self.notices.append(text)
            return {}
        return record

    def close(self) -> None:
        with contextlib.suppress(*H5_ERRORS):
            self.file.close()
        if self._view is not None:
            self._view.close()

    def __enter__(self) -> RunFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> None:
        """See rows appended since opening (SWMR readers must refresh each dataset)."""
        for name in L.APPENDED:
            if name in self.file:
                self.file[name].refresh()

    # ---- tables -----------------------------------------------------------------------------

    @property
    def format_version(self) -> int:
        """The file's FORMAT_VERSION (1 for files written before the attribute had a value)."""
        return self._format_version

    def table(self, name: str, dtype: np.dtype) -> h5py.Dataset | np.ndarray:
        """A dataset, or an empty array when the file lacks it."""
        return self.file[name] if name in self.file else np.zeros(0, dtype)

    def readable(self, name: str) -> int:
        """Rows of an appended table that can be read (all but those past a cut)."""
        return self.extent.rows(name)

    def read(self, name: str, dtype: np.dtype, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` of a table (within its readable rows); DamagedRunFileError when
        HDF5 cannot read them."""
        n = self.readable(name)
        stop = n if stop is None else min(max(stop, 0), n)
        if name not in self.file or start >= stop:
            return np.zeros(0, self.file[name].dtype if name in self.file else dtype)
        try:
            return self.file[name][start:stop]
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.path}: {name} rows {start}..{stop - 1} unreadable: {h5_reason(exc)}"
            ) from None

    @property
    def n_events(self) -> int:
        return self.readable(L.EVENTS)

    def events(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows of the events table (structured array)."""
        return self.read(L.EVENTS, self.file[L.EVENTS].dtype, start, stop)

    def channels(self) -> np.ndarray:
        """The stored channel rows (events flagged SAMPLES_IN_RAW have none: see iter_events)."""
        return self.read(L.CHANNELS, S.CHANNEL_DTYPE)

    @property
    def n_datagrams(self) -> int:
        return min(self.readable(L.RAW_INDEX), self._rows_of_words())

    def _rows_of_words(self) -> int:
        """Datagrams whose words can be read (a cut may fall in raw/words)."""
        words = self.readable(L.RAW_WORDS)
        n = self.readable(L.RAW_INDEX)
        if L.RAW_WORDS not in self.file or words == int(self.file[L.RAW_WORDS].shape[0]) or not n:
            return n
        index = self.read(L.RAW_INDEX, S.RAW_INDEX_DTYPE)
        ends = index["offset"].astype(np.int64) + (index["nbytes"].astype(np.int64) + 1) // 2
        return int(np.searchsorted(ends, words, side="right"))

    @property
    def raw_bytes(self) -> int:
        """Total length of the raw datagrams."""
        n, step = self.n_datagrams, 1 << 20
        total = 0
        for a in range(0, n, step):
            total += int(
                self.read(L.RAW_INDEX, S.RAW_INDEX_DTYPE, a, min(a + step, n))["nbytes"].sum()
            )
        return total

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Raw datagrams as received (lead word included)."""
        n = self.n_datagrams
        stop = n if stop is None else min(stop, n)
        index = self.read(L.RAW_INDEX, S.RAW_INDEX_DTYPE, start, stop)
        if not len(index):
            return
        first = int(index["offset"][0])
        last = int(index["offset"][-1]) + (int(index["nbytes"][-1]) + 1) // 2
        block = self.read(L.RAW_WORDS, S.RAW_WORD_DTYPE, first, last).tobytes()
        for row in index:
            o = 2 * (int(row["offset"]) - first)
            yield block[o : o + int(row["nbytes"])]

    def status(self) -> list[dict]:
        """The counter snapshots (one per flush); an unreadable snapshot is left out. Format
        version 4 keeps each snapshot's JSON whole in ``status_json``; versions 1-3 cut it at
        2 048 bytes (such a snapshot is unreadable)."""
        out = []
        if self.format_version >= 4:
            rows = self.read(L.STATUS, S.STATUS_DTYPE)
            text = (
                self.read(L.STATUS_JSON, S.STATUS_TEXT_DTYPE)
                if L.STATUS_JSON in self.file
                else np.zeros(0, np.uint8)
            )
            texts = [
                bytes(text[int(r["offset"]) : int(r["offset"]) + int(r["nbytes"])]) for r in rows
            ]
        else:
            rows = self.read(L.STATUS, S.STATUS_DTYPE_V3)
            texts = [bytes(r["json"]).rstrip(b"\0") for r in rows]
        for r, t in zip(rows, texts):
            try:
                d = json.loads(t or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(d, dict):
                d.setdefault("time", int(r["time_ns"]) / 1e9)
                out.append(d)
        return out

    def metadata(self) -> dict[str, str]:
        """Configuration in, as text: the typed attributes and the text datasets of /meta
        (format version 4), or its byte-string datasets (1-3); pedestals excluded."""
        try:
            return metadata_text(self.file.get(L.META))
        except H5_ERRORS as exc:
            raise DamagedRunFileError(f"{self.path}: meta unreadable: {h5_reason(exc)}") from None

    def attributes(self) -> dict[str, object]:
        """The run's facts in their types (run_number int, start_unix float s, start_time ISO
        8601 text ...), from any format version (:mod:`~agetdaq.readout.store.metadata`)."""
        try:
            return read_attributes(self.file.get(L.META))
        except H5_ERRORS as exc:
            raise DamagedRunFileError(f"{self.path}: meta unreadable: {h5_reason(exc)}") from None

    def final(self) -> dict[str, str]:
        """The end-of-run record as text values (stop_time, stop_reason, counters as JSON ...);
        empty if the writer did not close the file."""
        try:
            if L.FINAL in self.file:
                record = self._final_record()
                return {
                    str(k): v if isinstance(v, str) else json.dumps(v) for k, v in record.items()
                }
            out = self.file.get(L.META_OUT)  # format 1-2: one text dataset per key
            if out is None:
                return {}
            return {
                k: _text(out[k][()])
                for k in out
                if isinstance(out[k], h5py.Dataset) and out[k].dtype.kind in "SOU"
            }
        except (*H5_ERRORS, UnicodeDecodeError) as exc:
            raise DamagedRunFileError(
                f"{self.path}: end-of-run record unreadable: {h5_reason(exc)}"
            ) from None

    def pedestals(self) -> np.ndarray | None:
        """The pedestal table in use at run start (``meta/pedestals``)."""
        if L.PEDESTALS not in self.file:
            return None
        try:
            return self.file[L.PEDESTALS][:]
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.path}: pedestals unreadable: {h5_reason(exc)}"
            ) from None

    def pedestals_out(self) -> np.ndarray | None:
        """The pedestal table the run measured (``meta_out/pedestals``, pedestal runs)."""
        if L.PEDESTALS_OUT not in self.file:
            return None
        try:
            rows = self.file[L.PEDESTALS_OUT][:]
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.path}: pedestals unreadable: {h5_reason(exc)}"
            ) from None
        return rows if len(rows) else None

    def attrs(self) -> dict[str, object]:
        return dict(self.file.attrs)

    def verify(self) -> list[str]:
        """Read every block of every table (and the metadata); what cannot be read is added to
        :attr:`damage` (and returned)."""
        found = self.extent.scan()
        for read in (self.metadata, self.final, self.pedestals, self.pedestals_out):
            try:
                read()
            except DamagedRunFileError as exc:
                found.append(str(exc).removeprefix(f"{self.path}: "))
        self.damage.extend(found)
        return found

    # ---- events as the card sent them -------------------------------------------------------

    def iter_events(
        self, start: int = 0, stop: int | None = None, raw: bool = False
    ) -> Iterator[Event]:
        """Stored events with the raw ADC of their stored channels, as ``protocol`` Events
        (:meth:`EventReader.iter_events <agetdaq.readout.store.events.EventReader.iter_events>`)."""
        return EventReader(self).iter_events(start, stop, raw)

    def event(self, row: int) -> Event:
        """The Event of one event row, as ``iter_events(row, row + 1)`` yields it."""
        return EventReader(self).event(row)
