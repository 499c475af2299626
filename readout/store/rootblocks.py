"""Events of a run as blocks of flat arrays in feminos-daq's ROOT layout, read in bounded memory.

A block holds a few thousand channels at most (:data:`BLOCK_SAMPLES`): per event its host time,
card timestamp, event id and counter, and its signals in increasing signal id with 512 samples
each (``values``, signal-major). Sources, whatever the file:

* a run file's raw datagrams (every channel the card sent, as feminos-daq stores): the rows of the
  event table are read a block at a time; the datagrams ``raw_first .. raw_first + raw_count`` of
  the block are decoded together and each row takes the decoded event with its counter that starts
  in its ``raw_first`` datagram (a row whose event is not in the raw record takes its stored
  waveforms);
* a run file's stored waveforms (``channels`` + ``samples``);
* an .aqs run or a capture: its events as the run decodes them (event id = position, time = run
  start).

Samples go to their time bins (:func:`place_samples`); bins the card did not send hold the
channel's fill value (:func:`fill_values`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numba import njit

from agetdaq.protocol import decode_tables as dk
from agetdaq.protocol.decode import DecodedBatch, StreamDecoder
from agetdaq.protocol.event import Event
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.run import Run

N_BINS = 512
PRE_SAMPLES = 8  # the median of a channel's first samples is its "baseline" fill
BLOCK_SAMPLES = 1 << 21  # samples per block (2 M: 4 MB of values)
RAW_CHUNK = 256  # datagrams per decoder call (its buffers are sized for full datagrams)


@dataclass
class EventBlock:
    """Consecutive events in feminos-daq's layout (see the module docstring)."""

    time_ms: np.ndarray  # uint64, host time
    card_timestamp: np.ndarray  # uint64, 20 ns ticks
    event_id: np.ndarray  # uint64
    event_count: np.ndarray  # uint32
    n_signals: np.ndarray  # int64 per event
    signal_ids: np.ndarray  # uint16, increasing within an event
    values: np.ndarray  # uint16 (sum n_signals, 512)
    outside: int  # samples past bin 511 left out
    input_bytes: int  # of the source, for progress


@njit(cache=True, nogil=True)
def place_samples(
    starts: np.ndarray,
    counts: np.ndarray,
    bins: np.ndarray,
    adc: np.ndarray,
    fills: np.ndarray,
    out: np.ndarray,
) -> int:
    """Row r of ``out`` = ``fills[r]`` everywhere, then ``adc[s]`` at bin ``bins[s]`` for the
    samples ``starts[r] .. starts[r] + counts[r]``; return the samples past the last bin."""
    outside = 0
    n_bins = out.shape[1]
    for r in range(out.shape[0]):
        out[r, :] = fills[r]
        for s in range(starts[r], starts[r] + counts[r]):
            b = bins[s]
            if b < n_bins:
                out[r, b] = adc[s]
            else:
                outside += 1
    return outside


def place_samples_py(starts, counts, bins, adc, fills, out) -> int:
    """Plain-numpy twin of :func:`place_samples` (the tests compare them)."""
    outside = 0
    for r in range(out.shape[0]):
        out[r] = fills[r]
        b = np.asarray(bins[starts[r] : starts[r] + counts[r]], dtype=np.int64)
        a = adc[starts[r] : starts[r] + counts[r]]
        inside = b < out.shape[1]
        out[r, b[inside]] = a[inside]
        outside += int((~inside).sum())
    return outside


def fill_values(
    starts: np.ndarray, counts: np.ndarray, adc: np.ndarray, fill: str | int
) -> np.ndarray:
    """Per channel: 0 (``zero``), the number, or (``baseline``) the rounded median of its first
    :data:`PRE_SAMPLES` samples, which zero suppression keeps before every kept run."""
    n = len(starts)
    if fill == "zero":
        return np.zeros(n, dtype=np.uint16)
    if fill != "baseline":
        return np.full(n, int(fill), dtype=np.uint16)
    k = np.arange(PRE_SAMPLES)
    take = k[None, :] < np.minimum(counts, PRE_SAMPLES)[:, None]
    idx = np.where(take, starts[:, None] + k[None, :], 0)
    first = np.where(take, adc[idx] if len(adc) else 0, np.nan).astype(np.float64)
    med = np.zeros(n)
    some = take.any(axis=1)
    if some.any():
        med[some] = np.nanmedian(first[some], axis=1)
    return np.round(med).astype(np.uint16)


def fill_value(adc: np.ndarray, fill: str | int) -> int:
    """The fill of one channel's unsent bins (the per-channel rule of :func:`fill_values`)."""
    if fill == "zero":
        return 0
    if fill == "baseline":
        return int(np.round(np.median(adc[:PRE_SAMPLES]))) if len(adc) else 0
    return int(fill)


def event_block(event: Event, fill: str | int) -> tuple[np.ndarray, np.ndarray, int]:
    """One event, plainly (the tests' reference for the blocks): (signal ids increasing,
    (n, 512) samples at their bins, samples outside 0..511)."""
    chans = sorted(event.channels, key=lambda c: c.signal_id)
    ids = np.array([c.signal_id for c in chans], dtype=np.uint16)
    values = np.empty((len(chans), N_BINS), dtype=np.uint16)
    outside = 0
    for row, c in zip(values, chans):
        bins = np.asarray(c.bins, dtype=np.int64)
        adc = np.asarray(c.adc, dtype=np.uint16)
        inside = bins < N_BINS
        if len(bins) != N_BINS or not inside.all():
            row.fill(fill_value(adc, fill))
        row[bins[inside]] = adc[inside]
        outside += int((~inside).sum())
    return ids, values, outside


@njit(cache=True, nogil=True)
def gather_rows(words: np.ndarray, offsets: np.ndarray, n_words: np.ndarray, out: np.ndarray):
    """Datagram d = ``words[offsets[d] : offsets[d] + n_words[d]]`` into row d of ``out``."""
    for d in range(offsets.shape[0]):
        n = min(n_words[d], out.shape[1])
        out[d, :n] = words[offsets[d] : offsets[d] + n]
        out[d, n:] = 0


def _block(
    time_ms, card_ts, event_id, event_count, ev_of_ch, sid, starts, counts, bins, adc, fill,
    input_bytes,
) -> EventBlock:  # fmt: skip
    """Sort the channels by (event, signal id), place their samples, count per event."""
    order = np.lexsort((sid, ev_of_ch))
    starts, counts = starts[order].astype(np.int64), counts[order].astype(np.int64)
    values = np.empty((len(order), N_BINS), dtype=np.uint16)
    fills = fill_values(starts, counts, adc, fill)
    outside = place_samples(
        starts, counts, bins.astype(np.uint16, copy=False), adc.astype(np.uint16, copy=False),
        fills, values,
    )  # fmt: skip
    # copies: a one-row field view of the event table counts as contiguous for numpy but keeps
    # the table's row stride, which ROOT's buffer conversion refuses
    return EventBlock(
        time_ms=np.array(time_ms, dtype=np.uint64),
        card_timestamp=np.array(card_ts, dtype=np.uint64),
        event_id=np.array(event_id, dtype=np.uint64),
        event_count=np.array(event_count, dtype=np.uint32),
        n_signals=np.bincount(ev_of_ch, minlength=len(time_ms)).astype(np.int64),
        signal_ids=sid[order].astype(np.uint16),
        values=values,
        outside=int(outside),
        input_bytes=int(input_bytes),
    )


def _signal_ids(card, chip, channel) -> np.ndarray:
    return np.asarray(card, np.int64) * 288 + np.asarray(chip, np.int64) * 72 + np.asarray(channel)


# ---- run files -----------------------------------------------------------------------------


def _row_slices(rows_ch: np.ndarray) -> Iterator[tuple[int, int]]:
    """Row ranges whose channels hold about BLOCK_SAMPLES full-readout samples."""
    per_row = np.maximum(rows_ch.astype(np.int64), 1) * N_BINS
    ends = np.cumsum(per_row)
    a = 0
    while a < len(per_row):
        b = int(np.searchsorted(ends, ends[a] - per_row[a] + BLOCK_SAMPLES, side="right"))
        b = max(b, a + 1)
        yield a, b
        a = b


class _ChannelCursor:
    """The stored-channel rows of consecutive event-row ranges, read forward in chunks (the
    writer appends them in event order)."""

    CHUNK = 1 << 16

    def __init__(self, table) -> None:
        self.table = table
        self.pos = 0  # next table row to read
        self.buf = table[0:0]

    def take(self, a: int, b: int) -> np.ndarray:
        """Rows with ``a <= event_row < b``; ranges must come in increasing order."""
        n = self.table.shape[0]
        while self.pos < n and (not len(self.buf) or int(self.buf["event_row"][-1]) < b):
            chunk = self.table[self.pos : self.pos + self.CHUNK]
            self.pos += len(chunk)
            self.buf = np.concatenate([self.buf, chunk])
        rows = self.buf["event_row"]
        lo, hi = (int(x) for x in np.searchsorted(rows, [a, b]))
        out = self.buf[lo:hi]
        self.buf = self.buf[hi:]
        return out


def h5_blocks(run: Run, fill: str | int, raw: bool) -> Iterator[EventBlock]:
    """Blocks of a run file (``run.runfile`` of an :class:`~.h5run.H5Run`)."""
    rf = run.runfile  # type: ignore[attr-defined]
    f = rf.file
    n_rows = rf.n_events
    if not n_rows:
        return
    start_ms = int(run.info.start_unix * 1000)
    cursor = _ChannelCursor(f[L.CHANNELS]) if L.CHANNELS in f else None
    raw_ok = raw and rf.n_datagrams > 0
    total_bytes = run.path.stat().st_size
    n_channels = f[L.EVENTS].fields("n_channels")[:n_rows]
    for a, b in _row_slices(n_channels):
        ev = rf.events(a, b)
        names = ev.dtype.names or ()
        n = len(ev)
        time_ns = ev["time_ns"] if "time_ns" in names else np.zeros(n, np.uint64)
        time_ms = np.where(time_ns > 0, time_ns // 1_000_000, start_ms)
        ids = ev["event_id"] if "event_id" in names else np.arange(a, b, dtype=np.uint64)
        parts = []
        todo = np.ones(n, dtype=bool)
        if raw_ok and {"raw_first", "raw_count"} <= set(names):
            got = _raw_part(rf, ev)
            if got is not None:
                parts.append(got[0])
                todo &= ~got[1]
        stored = cursor.take(a, b) if cursor is not None else None
        if todo.any() and stored is not None and len(stored):
            parts.append(_stored_part(f, stored, a, todo))
        ev_of, sid, starts, counts, bins, adc = _concat(parts)
        yield _block(
            time_ms, ev["timestamp"], ids, ev["event_count"], ev_of, sid, starts, counts,
            bins, adc, fill, total_bytes * (b - a) // n_rows,
        )  # fmt: skip


def _concat(parts: list[tuple]) -> tuple:
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, z, z, np.zeros(0, np.uint16), np.zeros(0, np.uint16)
    shift, out = 0, []
    for ev_of, sid, starts, counts, bins, adc in parts:
        out.append((ev_of, sid, starts + shift, counts, bins, adc))
        shift += len(bins)
    return tuple(np.concatenate([p[i] for p in out]) for i in range(6))


def _stored_part(f, ch: np.ndarray, a: int, todo: np.ndarray) -> tuple:
    ch = ch[todo[ch["event_row"].astype(np.int64) - a]]
    if not len(ch):
        return _concat([])
    s0 = int(ch["sample_start"].min())
    s1 = int((ch["sample_start"] + ch["n_samples"]).max())
    bins, adc = f[L.SAMPLE_BIN][s0:s1], f[L.SAMPLE_ADC][s0:s1]
    return (
        ch["event_row"].astype(np.int64) - a,
        _signal_ids(ch["card"], ch["chip"], ch["channel"]),
        ch["sample_start"].astype(np.int64) - s0,
        ch["n_samples"].astype(np.int64),
        bins,
        adc,
    )


def _raw_part(rf, ev: np.ndarray) -> tuple[tuple, np.ndarray] | None:
    """The decoded channels of the rows found in the raw record, and which rows were found."""
    first = ev["raw_first"].astype(np.int64)
    end = first + np.maximum(ev["raw_count"].astype(np.int64), 1)
    d0, d1 = int(first.min()), int(min(end.max(), rf.n_datagrams))
    if d1 <= d0:
        return None
    batch = _decode_rows(rf, d0, d1)
    if not len(batch):
        return None
    key_dec = (batch.events_table[:, dk.EV_FIRST_DGRAM] + d0) * (1 << 32) + batch.event_count
    key_row = first * (1 << 32) + ev["event_count"].astype(np.int64)
    uniq, first_of = np.unique(key_dec, return_index=True)  # the first event of each key
    pos = np.searchsorted(uniq, key_row)
    found = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == key_row)
    dec_of_row = first_of[np.minimum(pos, len(uniq) - 1)]
    rows = np.flatnonzero(found)
    c_start = batch.channel_start[dec_of_row[rows]]
    c_n = batch.n_channels[dec_of_row[rows]]
    ch_idx = np.repeat(c_start - np.cumsum(c_n) + c_n, c_n) + np.arange(int(c_n.sum()))
    part = (
        np.repeat(rows, c_n),
        batch.signal_ids[ch_idx].astype(np.int64),
        batch.sample_start[ch_idx].astype(np.int64),
        batch.n_samples[ch_idx].astype(np.int64),
        batch.time_bin,
        batch.adc,
    )
    return part, found


def _decode_rows(rf, d0: int, d1: int) -> DecodedBatch:
    """Datagrams ``d0:d1`` of the raw record decoded (``EV_FIRST_DGRAM`` counted from d0): read
    at once (each compressed chunk of the file is read once), decoded a chunk at a time so that
    the decoder's buffers stay small."""
    index = rf.file[L.RAW_INDEX][d0:d1]
    w0 = int(index["offset"][0])
    w1 = int(index["offset"][-1]) + (int(index["nbytes"][-1]) + 1) // 2
    words = rf.file[L.RAW_WORDS][w0:w1]
    offsets = index["offset"].astype(np.int64) - w0
    nbytes = index["nbytes"].astype(np.int64)
    n_words = (nbytes + 1) // 2
    dec = StreamDecoder(check_seq=False, reuse_buffers=True)  # each output is copied
    parts = []
    rows = np.empty((RAW_CHUNK, max(1, int(n_words.max()))), dtype=np.uint16)
    for c0 in range(0, len(index), RAW_CHUNK):
        c1 = min(len(index), c0 + RAW_CHUNK)
        gather_rows(words, offsets[c0:c1], n_words[c0:c1], rows)
        parts.append(dec.decode(rows[: c1 - c0].view(np.uint8), nbytes[c0:c1]).copy())
    parts.append(dec.flush())
    return join_batches(parts)


def join_batches(parts: list[DecodedBatch]) -> DecodedBatch:
    """One batch of consecutive decoder outputs (row offsets shifted)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    evs, chs = [], []
    n_ch = n_s = n_aux = 0
    for p in parts:
        ev, ch = p.events_table.copy(), p.channels_table.copy()
        ev[:, dk.EV_CHAN_START] += n_ch
        ev[:, dk.EV_AUX_START] += n_aux
        ch[:, dk.CH_SAMPLE_START] += n_s
        evs.append(ev)
        chs.append(ch)
        n_ch, n_s, n_aux = n_ch + len(ch), n_s + len(p.adc), n_aux + len(p.aux_table)
    return DecodedBatch(
        np.concatenate(evs), np.concatenate(chs),
        np.concatenate([p.time_bin for p in parts]), np.concatenate([p.adc for p in parts]),
        np.concatenate([p.aux_table for p in parts]), sum(p.errors for p in parts),
        parts[0].first_datagram, sum(p.n_datagrams for p in parts),
    )  # fmt: skip


# ---- decoded files (.aqs, captures) ------------------------------------------------------------


def decoded_blocks(run: Run, fill: str | int) -> Iterator[EventBlock]:
    """Blocks of an .aqs run or a capture: its events as the run decodes them (per board)."""
    start_ms = int(run.info.start_unix * 1000)
    size = sum(p.stat().st_size for p in (getattr(run, "files", None) or [run.path]))
    events: list = []
    n_samples = next_id = 0

    def emit(done: bool) -> EventBlock:
        chans = [(k, c) for k, ev in enumerate(events) for c in ev.channels]
        counts = np.array([len(c.adc) for _, c in chans], dtype=np.int64)
        starts = np.cumsum(counts) - counts
        cat = [np.asarray(c.bins) for _, c in chans] or [np.zeros(0, np.uint16)]
        adc = [np.asarray(c.adc) for _, c in chans] or [np.zeros(0, np.uint16)]
        n = len(events)
        return _block(
            np.full(n, start_ms), [e.timestamp for e in events],
            np.arange(next_id, next_id + n), [e.event_count for e in events],
            np.array([k for k, _ in chans], dtype=np.int64),
            np.array([c.signal_id for _, c in chans], dtype=np.int64), starts, counts,
            np.concatenate(cat), np.concatenate(adc), fill, size if done else 0,
        )  # fmt: skip

    for ev in run.events():
        events.append(ev)
        n_samples += max(N_BINS, sum(len(c.adc) for c in ev.channels))
        if n_samples >= BLOCK_SAMPLES:
            yield emit(False)
            next_id += len(events)
            events, n_samples = [], 0
    yield emit(True)
