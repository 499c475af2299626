"""Reader of agetdaq run files (works on a file that is still being written, via SWMR).

The HDF5 side of :func:`agetdaq.readout.store.run.open_run`, which is what commands and the GUI
use; this class is the direct access to the file's tables. A file of an older format version or
with missing tables (a writer that died early) reads as far as it goes: a missing table is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.event import Channel, Event, EventFlag
from agetdaq.readout import schema as S
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.errors import DamagedRunFileError, RunFileError, UnknownFormatError
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
        try:
            self.file = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError as exc:
            raise DamagedRunFileError(f"cannot open {self.path}: {exc}") from exc
        if _text(self.file.attrs.get("format", "")) != S.FORMAT_NAME:
            self.file.close()
            raise UnknownFormatError(f"{self.path} is not an agetdaq run file")
        if L.EVENTS not in self.file:
            self.file.close()
            raise DamagedRunFileError(f"{self.path}: the run file has no events table")

    def close(self) -> None:
        self.file.close()

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
        return int(self.file.attrs.get("format_version", 1))

    def _table(self, name: str, dtype: np.dtype) -> h5py.Dataset | np.ndarray:
        """A dataset, or an empty array when the file lacks it."""
        return self.file[name] if name in self.file else np.zeros(0, dtype)

    @property
    def n_events(self) -> int:
        return int(self.file[L.EVENTS].shape[0])

    def events(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows of the events table (structured array)."""
        return self.file[L.EVENTS][start:stop]

    def channels(self) -> np.ndarray:
        """The stored channel rows (events flagged SAMPLES_IN_RAW have none: see iter_events)."""
        return self._table(L.CHANNELS, S.CHANNEL_DTYPE)[:]

    @property
    def n_datagrams(self) -> int:
        return int(self.file[L.RAW_INDEX].shape[0]) if L.RAW_INDEX in self.file else 0

    @property
    def raw_bytes(self) -> int:
        """Total length of the raw datagrams."""
        if L.RAW_INDEX not in self.file:
            return 0
        index, step = self.file[L.RAW_INDEX], 1 << 20
        return sum(int(index[a : a + step]["nbytes"].sum()) for a in range(0, len(index), step))

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Raw datagrams as received (lead word included)."""
        index = self._table(L.RAW_INDEX, S.RAW_INDEX_DTYPE)[start:stop]
        if not len(index):
            return
        words = self.file[L.RAW_WORDS]
        first = int(index["offset"][0])
        last = int(index["offset"][-1]) + (int(index["nbytes"][-1]) + 1) // 2
        block = words[first:last].tobytes()
        for row in index:
            o = 2 * (int(row["offset"]) - first)
            yield block[o : o + int(row["nbytes"])]

    def status(self) -> list[dict]:
        """The counter snapshots (one per flush); an unreadable snapshot is left out. Format
        version 3 keeps each snapshot's JSON whole in ``status_json``; versions 1-2 cut it at
        2 048 bytes (such a snapshot is unreadable)."""
        out = []
        if self.format_version >= 3:
            rows = self._table(L.STATUS, S.STATUS_DTYPE)[:]
            text = self.file[L.STATUS_JSON][:] if L.STATUS_JSON in self.file else np.zeros(0)
            texts = [
                bytes(text[int(r["offset"]) : int(r["offset"]) + int(r["nbytes"])]) for r in rows
            ]
        else:
            rows = self._table(L.STATUS, S.STATUS_DTYPE_V2)[:]
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
        (format version 3), or its byte-string datasets (1-2); pedestals excluded."""
        return metadata_text(self.file.get(L.META))

    def attributes(self) -> dict[str, object]:
        """The run's facts in their types (run_number int, start_unix float s, start_time ISO
        8601 text ...), from any format version (:mod:`~agetdaq.readout.store.metadata`)."""
        return read_attributes(self.file.get(L.META))

    def final(self) -> dict[str, str]:
        """Configuration out (written on a clean close); empty if the writer died."""
        out = self.file.get(L.META_OUT)
        return {} if out is None else {k: _text(out[k][()]) for k in out}

    def pedestals(self) -> np.ndarray | None:
        """The pedestal table in use at run start (``meta/pedestals``)."""
        return self.file[L.PEDESTALS][:] if L.PEDESTALS in self.file else None

    def pedestals_out(self) -> np.ndarray | None:
        """The pedestal table the run measured (``meta_out/pedestals``, pedestal runs)."""
        return self.file[L.PEDESTALS_OUT][:] if L.PEDESTALS_OUT in self.file else None

    def attrs(self) -> dict[str, object]:
        return dict(self.file.attrs)

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
        aux = self._table(L.AUX, S.AUX_DTYPE)[:]
        for a in range(0, len(ev), _SLAB):
            yield from self._slab(ev[a : a + _SLAB], start + a, ch, aux, raw)

    def event(self, row: int) -> Event:
        """The Event of one event row, as ``iter_events(row, row + 1)`` yields it, without reading
        the whole channel table (its rows and the aux rows are appended in event order)."""
        if not 0 <= row < self.n_events:
            raise IndexError(f"event row {row} not in 0..{self.n_events - 1}")
        ch = _rows_of(self._table(L.CHANNELS, S.CHANNEL_DTYPE), row)
        aux = _rows_of(self._table(L.AUX, S.AUX_DTYPE), row)
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
            bins = self.file[L.SAMPLE_BIN][s0:s1]
            adc = self.file[L.SAMPLE_ADC][s0:s1]
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


_SLAB = 256  # event rows read at a time
_RAW_SPAN = 4096  # datagrams decoded at a time


def _rows_of(table: h5py.Dataset, row: int, block: int = 4096) -> np.ndarray:
    """The rows of ``table`` (sorted by ``event_row``) that belong to event row ``row``."""
    lo, hi = 0, int(table.shape[0])
    while lo < hi:  # first row with event_row >= row, reading one row per step
        mid = (lo + hi) // 2
        if int(table[mid]["event_row"]) < row:
            lo = mid + 1
        else:
            hi = mid
    parts = []
    while lo < table.shape[0]:
        rows = table[lo : lo + block]
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
