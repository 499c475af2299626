"""The events of a run file as the card sent them: stored channels and aux items joined to their
event rows, and the events whose samples are only in the raw datagrams decoded from them.

A collaborator of :class:`~agetdaq.readout.store.reader.RunFile` (``iter_events``, ``event``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import h5py
import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.event import Channel, Event, EventFlag
from agetdaq.readout import schema as S
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.errors import DamagedRunFileError
from agetdaq.readout.store.h5open import H5_ERRORS, h5_reason

if TYPE_CHECKING:
    from agetdaq.readout.store.reader import RunFile


class EventReader:
    """Reads events of one open run file (see the module docstring)."""

    def __init__(self, runfile: RunFile) -> None:
        self.f = runfile

    def iter_events(
        self, start: int = 0, stop: int | None = None, raw: bool = False
    ) -> Iterator[Event]:
        """Stored events with the raw ADC of their stored channels, as ``protocol`` Events.

        Events flagged SAMPLES_IN_RAW (shed under load; the file keeps no decoded copy) get
        every channel, decoded from the raw datagrams they came in. With ``raw`` every event
        does (all the channels the card sent, whatever was stored), where the raw record has it.
        """
        ev = self.f.events(start, stop)
        if not len(ev):
            return
        ch = self.f.channels()
        if len(ch) > 1 and np.any(ch["event_row"][1:] < ch["event_row"][:-1]):
            ch = ch[np.argsort(ch["event_row"], kind="stable")]
        aux = self.f.read(L.AUX, S.AUX_DTYPE)
        for a in range(0, len(ev), _SLAB):
            yield from self._slab(ev[a : a + _SLAB], start + a, ch, aux, raw)

    def event(self, row: int) -> Event:
        """The Event of one event row, as ``iter_events(row, row + 1)`` yields it, without reading
        the whole channel table (its rows and the aux rows are appended in event order)."""
        if not 0 <= row < self.f.n_events:
            raise IndexError(f"event row {row} not in 0..{self.f.n_events - 1}")
        try:
            ch = _rows_of(
                self.f.table(L.CHANNELS, S.CHANNEL_DTYPE), row, self.f.readable(L.CHANNELS)
            )
            aux = _rows_of(self.f.table(L.AUX, S.AUX_DTYPE), row, self.f.readable(L.AUX))
        except H5_ERRORS as exc:
            raise DamagedRunFileError(
                f"{self.f.path}: channels of event row {row} unreadable: {h5_reason(exc)}"
            ) from None
        return next(self._slab(self.f.events(row, row + 1), row, ch, aux))

    def _slab(
        self, ev: np.ndarray, first_row: int, ch: np.ndarray, aux: np.ndarray, raw: bool = False
    ) -> Iterator[Event]:
        last_row = first_row + len(ev)
        lo, hi = np.searchsorted(ch["event_row"], [first_row, last_row])
        sel = ch[lo:hi]
        if len(sel):
            s0 = int(sel["sample_start"].min())
            s1 = int((sel["sample_start"] + sel["n_samples"]).max())
            bins = self.f.read(L.SAMPLE_BIN, S.SAMPLE_DTYPE, s0, s1)
            adc = self.f.read(L.SAMPLE_ADC, S.SAMPLE_DTYPE, s0, s1)
            if len(bins) < s1 - s0 or len(adc) < s1 - s0:
                raise DamagedRunFileError(
                    f"{self.f.path}: samples of event rows {first_row}..{last_row - 1} lost "
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
        if not {"build_flags", "raw_first", "raw_count"} <= set(names) or not self.f.n_datagrams:
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
            for dgram, e in _decode_raw(list(self.f.datagrams(d0, d1))):
                starts.setdefault((d0 + dgram, e.event_count), e)
            for k in range(g, h):
                key = (int(first[k]), int(ev["event_count"][todo[k]]))
                if key in starts:
                    out[int(todo[k])] = starts[key]
            g = h
        return out


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
