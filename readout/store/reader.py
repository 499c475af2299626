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

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.event import Channel, Event, EventFlag
from agetdaq.readout import schema as S
from agetdaq.readout.store import h5open
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.errors import (
    DamagedRunFileError,
    NewerFormatError,
    RunFileError,
    UnknownFormatError,
)
from agetdaq.readout.store.lock import holder

__all__ = ["RunFile", "RunFileError"]

H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)  # what h5py raises on damaged content


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def h5_reason(exc: BaseException) -> str:
    """The useful part of an h5py error message (the reason HDF5 gives in parentheses)."""
    text = str(exc).split("\n")[0]
    if "(" in text and text.endswith(")"):
        text = text[text.index("(") + 1 : -1]
    return text[:200] or type(exc).__name__


class RunFile:
    """Read access to one run file; refresh() picks up rows appended by a live writer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.notices: list[str] = []
        self.damage: list[str] = []
        self._view: h5open.FlagClearedView | None = None
        self._limits: dict[str, int] = {}
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
            if _locked_by_writer(self.path):
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
        if cut:
            self._limit_to_file()

    def _limit_to_file(self) -> None:
        """Rows of each appended table whose chunks lie within the file (a file cut short)."""
        for name in L.APPENDED:
            try:
                if name not in self.file:
                    continue
                dset = self.file[name]
                n = int(dset.shape[0])
                first_lost = n
                for i in range(dset.id.get_num_chunks()):
                    info = dset.id.get_chunk_info(i)
                    if info.byte_offset + info.size > self._size:
                        first_lost = min(first_lost, int(info.chunk_offset[0]))
            except H5_ERRORS as exc:
                self.damage.append(f"{name}: unreadable ({h5_reason(exc)})")
                self._limits[name] = 0
                continue
            if first_lost < n:
                self._limits[name] = first_lost
                self.damage.append(f"{name}: {n - first_lost} of {n} rows lost at the cut")
        if self._limits:
            self._limit_events()

    def _limit_events(self) -> None:
        """Events whose channel rows, samples or aux rows were cut are left out with them."""
        n = self._rows(L.EVENTS)
        limit = n
        try:
            for name in (L.CHANNELS, L.AUX):
                if name in self.file and self._rows(name) < int(self.file[name].shape[0]):
                    rows = self._rows(name)
                    last = self._read(name, S.AUX_DTYPE, rows - 1, rows) if rows else None
                    limit = min(limit, int(last["event_row"][0]) if last is not None else 0)
            ch = self._read(L.CHANNELS, S.CHANNEL_DTYPE)
            samples = min(self._rows(L.SAMPLE_BIN), self._rows(L.SAMPLE_ADC))
            if len(ch):
                end = ch["sample_start"].astype(np.int64) + ch["n_samples"]
                lost = np.flatnonzero(end > samples)
                if len(lost):
                    limit = min(limit, int(ch["event_row"][lost[0]]))
        except (DamagedRunFileError, *H5_ERRORS):
            limit = 0
        if limit < n:
            self._limits[L.EVENTS] = limit
            self.damage.append(
                f"events: the first {limit} are complete; the channels or samples of the "
                f"{n - limit} after them are lost at the cut"
            )

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

    def _table(self, name: str, dtype: np.dtype) -> h5py.Dataset | np.ndarray:
        """A dataset, or an empty array when the file lacks it."""
        return self.file[name] if name in self.file else np.zeros(0, dtype)

    def _rows(self, name: str) -> int:
        """Rows of an appended table that can be read (all but those past a cut)."""
        if name not in self.file:
            return 0
        n = int(self.file[name].shape[0])
        return min(n, self._limits.get(name, n))

    def _read(self, name: str, dtype: np.dtype, start: int = 0, stop: int | None = None):
        """Rows ``start:stop`` of a table (within its readable rows); DamagedRunFileError when
        HDF5 cannot read them."""
        n = self._rows(name)
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
        return self._rows(L.EVENTS)

    def events(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows of the events table (structured array)."""
        return self._read(L.EVENTS, self.file[L.EVENTS].dtype, start, stop)

    def channels(self) -> np.ndarray:
        """The stored channel rows (events flagged SAMPLES_IN_RAW have none: see iter_events)."""
        return self._read(L.CHANNELS, S.CHANNEL_DTYPE)

    @property
    def n_datagrams(self) -> int:
        return min(self._rows(L.RAW_INDEX), self._rows_of_words())

    def _rows_of_words(self) -> int:
        """Datagrams whose words can be read (a cut may fall in raw/words)."""
        words = self._rows(L.RAW_WORDS)
        n = self._rows(L.RAW_INDEX)
        if L.RAW_WORDS not in self.file or words == int(self.file[L.RAW_WORDS].shape[0]) or not n:
            return n
        index = self._read(L.RAW_INDEX, S.RAW_INDEX_DTYPE)
        ends = index["offset"].astype(np.int64) + (index["nbytes"].astype(np.int64) + 1) // 2
        return int(np.searchsorted(ends, words, side="right"))

    @property
    def raw_bytes(self) -> int:
        """Total length of the raw datagrams."""
        n, step = self.n_datagrams, 1 << 20
        total = 0
        for a in range(0, n, step):
            total += int(
                self._read(L.RAW_INDEX, S.RAW_INDEX_DTYPE, a, min(a + step, n))["nbytes"].sum()
            )
        return total

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Raw datagrams as received (lead word included)."""
        n = self.n_datagrams
        stop = n if stop is None else min(stop, n)
        index = self._read(L.RAW_INDEX, S.RAW_INDEX_DTYPE, start, stop)
        if not len(index):
            return
        first = int(index["offset"][0])
        last = int(index["offset"][-1]) + (int(index["nbytes"][-1]) + 1) // 2
        block = self._read(L.RAW_WORDS, S.RAW_WORD_DTYPE, first, last).tobytes()
        for row in index:
            o = 2 * (int(row["offset"]) - first)
            yield block[o : o + int(row["nbytes"])]

    def status(self) -> list[dict]:
        """The counter snapshots (one per flush); an unreadable snapshot is left out."""
        out = []
        for r in self._read(L.STATUS, S.STATUS_DTYPE):
            try:
                d = json.loads(bytes(r["json"]).rstrip(b"\0") or b"{}")
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(d, dict):
                d.setdefault("time", int(r["time_ns"]) / 1e9)
                out.append(d)
        return out

    def metadata(self) -> dict[str, str]:
        """Configuration in: every dataset of /meta as text (pedestals excluded)."""
        try:
            meta = self.file.get(L.META)
            if meta is None:
                return {}
            return {
                k: _text(meta[k][()])
                for k in meta
                if isinstance(meta[k], h5py.Dataset) and meta[k].dtype.kind in "SOU"
            }
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
        found: list[str] = []
        for name in L.APPENDED:
            if name not in self.file:
                continue
            dset = self.file[name]
            step = int(dset.chunks[0]) if dset.chunks else 1 << 16
            bad: list[list[int]] = []
            reason = ""
            n = self._rows(name)
            for a in range(0, n, step):
                b = min(a + step, n)
                try:
                    dset[a:b]
                except H5_ERRORS as exc:
                    reason = reason or h5_reason(exc)
                    if bad and bad[-1][1] == a:
                        bad[-1][1] = b
                    else:
                        bad.append([a, b])
                    if "metadata" in h5_reason(exc):  # the chunk index: the rest is lost too
                        bad[-1][1] = n
                        break
            for a, b in bad:
                found.append(f"{name}: rows {a}..{b - 1} unreadable ({reason})")
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
        """Stored events with the raw ADC of their stored channels, as ``protocol`` Events.

        Events flagged SAMPLES_IN_RAW (shed under load; the file keeps no decoded copy) get
        every channel, decoded from the raw datagrams they came in. With ``raw`` every event
        does (all the channels the card sent, whatever was stored), where the raw record has it.
        """
        ev = self.events(start, stop)
        if not len(ev):
            return
        ch = self.channels()
        if len(ch) > 1 and np.any(ch["event_row"][1:] < ch["event_row"][:-1]):
            ch = ch[np.argsort(ch["event_row"], kind="stable")]
        aux = self._read(L.AUX, S.AUX_DTYPE)
        for a in range(0, len(ev), _SLAB):
            yield from self._slab(ev[a : a + _SLAB], start + a, ch, aux, raw)

    def event(self, row: int) -> Event:
        """The Event of one event row, as ``iter_events(row, row + 1)`` yields it, without reading
        the whole channel table (its rows and the aux rows are appended in event order)."""
        if not 0 <= row < self.n_events:
            raise IndexError(f"event row {row} not in 0..{self.n_events - 1}")
        try:
            ch = _rows_of(self._table(L.CHANNELS, S.CHANNEL_DTYPE), row, self._rows(L.CHANNELS))
            aux = _rows_of(self._table(L.AUX, S.AUX_DTYPE), row, self._rows(L.AUX))
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.path}: channels of event row {row} unreadable: {h5_reason(exc)}"
            ) from None
        return next(self._slab(self.events(row, row + 1), row, ch, aux))

    def _slab(
        self, ev: np.ndarray, first_row: int, ch: np.ndarray, aux: np.ndarray, raw: bool = False
    ) -> Iterator[Event]:
        last_row = first_row + len(ev)
        lo, hi = np.searchsorted(ch["event_row"], [first_row, last_row])
        sel = ch[lo:hi]
        if len(sel):
            s0 = int(sel["sample_start"].min())
            s1 = int((sel["sample_start"] + sel["n_samples"]).max())
            bins = self._read(L.SAMPLE_BIN, S.SAMPLE_DTYPE, s0, s1)
            adc = self._read(L.SAMPLE_ADC, S.SAMPLE_DTYPE, s0, s1)
            if len(bins) < s1 - s0 or len(adc) < s1 - s0:
                raise DamagedRunFileError(
                    f"{self.path}: samples of event rows {first_row}..{last_row - 1} lost "
                    "at the cut"
                )
        else:
            s0, bins, adc = 0, np.zeros(0, np.uint16), np.zeros(0, np.uint16)
        bounds = np.searchsorted(sel["event_row"], np.arange(first_row, last_row + 1))
        aux = aux[(aux["event_row"] >= first_row) & (aux["event_row"] < last_row)]
        from_raw = self._decoded_from_raw(ev, every=raw)
        names = ev.dtype.names or ()
        for i, row in enumerate(ev):
            decoded = from_raw.get(i)
            if decoded is not None:  # as the card sent it: its channels and aux items
                channels, hits, cells = decoded.channels, decoded.hit_counts, decoded.last_cells
            else:
                channels = []
                for c in sel[bounds[i] : bounds[i + 1]]:
                    a = int(c["sample_start"]) - s0
                    n = int(c["n_samples"])
                    channels.append(
                        Channel(
                            int(c["card"]),
                            int(c["chip"]),
                            int(c["channel"]),
                            bins[a : a + n].copy(),
                            adc[a : a + n].copy(),
                        )
                    )
                mine = aux[aux["event_row"] == first_row + i] if len(aux) else aux
                hits = [
                    (int(a["card"]), int(a["chip"]), int(a["value"]))
                    for a in mine
                    if a["kind"] == S.AUX_HIT_COUNT
                ]
                cells = [
                    (int(a["chip"]), int(a["value"])) for a in mine if a["kind"] == S.AUX_LAST_CELL
                ]
            yield Event(
                event_type=int(row["type"]) if "type" in names else 0,
                timestamp=int(row["timestamp"]) if "timestamp" in names else 0,
                event_count=int(row["event_count"]) if "event_count" in names else 0,
                channels=channels,
                hit_counts=hits,
                last_cells=cells,
                source_id=int(row["source_id"]) if "source_id" in names else 0,
                flags=EventFlag(int(row["flags"]) & 0x7F) if "flags" in names else EventFlag.NONE,
            )

    def _decoded_from_raw(self, ev: np.ndarray, every: bool = False) -> dict[int, Event]:
        """The events of the rows flagged SAMPLES_IN_RAW (``every``: of all rows), by position in
        ``ev``, decoded from the raw datagrams: each event is the one with its counter that
        starts in datagram ``raw_first`` (format version 2)."""
        names = ev.dtype.names or ()
        if not {"build_flags", "raw_first", "raw_count"} <= set(names) or not self.n_datagrams:
            return {}
        if every:
            todo = np.arange(len(ev))
        else:
            todo = np.flatnonzero(ev["build_flags"] & S.SAMPLES_IN_RAW)
        if not len(todo):
            return {}
        first = ev["raw_first"][todo].astype(np.int64)
        end = first + np.maximum(ev["raw_count"][todo].astype(np.int64), 1)
        out: dict[int, Event] = {}
        g = 0
        while g < len(todo):  # groups of events whose datagrams lie close together
            h = g + 1
            while h < len(todo) and end[h] - first[g] <= _RAW_SPAN and first[h] >= first[g]:
                h += 1
            d0, d1 = int(first[g]), int(end[g:h].max())
            starts: dict[tuple[int, int], Event] = {}
            for dgram, e in _decode_raw(list(self.datagrams(d0, d1))):
                starts.setdefault((d0 + dgram, e.event_count), e)
            for k in range(g, h):
                key = (int(first[k]), int(ev["event_count"][todo[k]]))
                if key in starts:
                    out[int(todo[k])] = starts[key]
            g = h
        return out


def _locked_by_writer(path: Path) -> bool:
    """Does a live process hold HDF5's own lock on the file (a writer outside SWMR mode)?"""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the probe's lock
    return False


_SLAB = 256  # event rows read at a time
_RAW_SPAN = 4096  # datagrams decoded at a time


def _rows_of(table: h5py.Dataset, row: int, n: int, block: int = 4096) -> np.ndarray:
    """The rows of ``table[:n]`` (sorted by ``event_row``) that belong to event row ``row``."""
    lo, hi = 0, n
    while lo < hi:  # first row with event_row >= row, reading one row per step
        mid = (lo + hi) // 2
        if int(table[mid]["event_row"]) < row:
            lo = mid + 1
        else:
            hi = mid
    parts = []
    while lo < n:
        rows = table[lo : min(lo + block, n)]
        mine = rows[rows["event_row"] == row]
        parts.append(mine)
        if len(mine) < len(rows):
            break
        lo += block
    return np.concatenate(parts) if parts else np.zeros(0, table.dtype)


def _decode_raw(datagrams: list[bytes]) -> Iterator[tuple[int, Event]]:
    """(index of the first datagram, event) for every event that starts in ``datagrams``."""
    if not datagrams:
        return
    decoder = StreamDecoder(check_seq=False)
    for batch in (decoder.decode(*pack_datagrams(datagrams)), decoder.flush()):
        yield from zip(batch.events_table[:, dk.EV_FIRST_DGRAM].tolist(), batch.events())
