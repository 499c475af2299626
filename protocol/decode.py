"""High-level data-stream decoding: datagram batches -> :class:`DecodedBatch` (flat tables).

Semantics are those of :mod:`agetdaq.protocol.decode_kernel`. An event is returned in the batch
where it ends; the part of an open event decoded so far is carried to the next batch (a channel cut
at the boundary continues in the same row). Datagram indices count from the start of the stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol.decode_buffers import Carry, OutputBuffers
from agetdaq.protocol.event import (
    N_DECODE_ERRORS,
    Channel,
    DecodeError,
    Event,
    EventFlag,
    signal_id,
)
from agetdaq.protocol.event_block import EOE_SIZE_OFFSET_BYTES
from agetdaq.protocol.words import KIND_LUT


@dataclass
class DecodedBatch:
    """Events closed in one decode call, as flat tables (columns:
    ``agetdaq.protocol.decode_kernel``).

    The arrays are views into the decoder's output buffers, which it reuses only once nothing
    refers to them any more; with ``StreamDecoder(reuse_buffers=True)`` it reuses them anyway,
    so the views are valid until its next call (:meth:`copy` detaches them).
    """

    events_table: np.ndarray  # int64 (n_events, N_EV_COLS)
    channels_table: np.ndarray  # int32 (n_channels, N_CH_COLS), sample_start into time_bin/adc
    time_bin: np.ndarray  # uint16 (n_samples,)
    adc: np.ndarray  # uint16 (n_samples,)
    aux_table: np.ndarray  # int32 (n_aux, N_AUX_COLS)
    errors: np.ndarray  # int64 (N_DECODE_ERRORS,) counted during this call
    first_datagram: int = 0
    n_datagrams: int = 0
    verdict: np.ndarray | None = None  # int8 (n_datagrams,): what became of each (dk.V_*)

    def __len__(self) -> int:
        return self.events_table.shape[0]

    def copy(self) -> DecodedBatch:
        return DecodedBatch(
            self.events_table.copy(),
            self.channels_table.copy(),
            self.time_bin.copy(),
            self.adc.copy(),
            self.aux_table.copy(),
            self.errors.copy(),
            self.first_datagram,
            self.n_datagrams,
            None if self.verdict is None else self.verdict.copy(),
        )

    # event columns
    @property
    def event_type(self) -> np.ndarray:
        return self.events_table[:, dk.EV_TYPE]

    @property
    def timestamp(self) -> np.ndarray:
        return self.events_table[:, dk.EV_TIMESTAMP]

    @property
    def event_count(self) -> np.ndarray:
        return self.events_table[:, dk.EV_COUNT]

    @property
    def flags(self) -> np.ndarray:
        return self.events_table[:, dk.EV_FLAGS]

    @property
    def source_id(self) -> np.ndarray:
        return self.events_table[:, dk.EV_SOURCE]

    @property
    def channel_start(self) -> np.ndarray:
        return self.events_table[:, dk.EV_CHAN_START]

    @property
    def n_channels(self) -> np.ndarray:
        return self.events_table[:, dk.EV_N_CHAN]

    @property
    def size_declared(self) -> np.ndarray:
        return self.events_table[:, dk.EV_SIZE_DECLARED]

    @property
    def size_counted(self) -> np.ndarray:
        return self.events_table[:, dk.EV_SIZE_COUNTED]

    # channel columns
    @property
    def card(self) -> np.ndarray:
        return self.channels_table[:, dk.CH_CARD]

    @property
    def chip(self) -> np.ndarray:
        return self.channels_table[:, dk.CH_CHIP]

    @property
    def channel(self) -> np.ndarray:
        return self.channels_table[:, dk.CH_CHANNEL]

    @property
    def sample_start(self) -> np.ndarray:
        return self.channels_table[:, dk.CH_SAMPLE_START]

    @property
    def n_samples(self) -> np.ndarray:
        return self.channels_table[:, dk.CH_N_SAMPLES]

    @property
    def signal_ids(self) -> np.ndarray:
        """card*288 + chip*72 + channel per channel row."""
        return signal_id(self.card, self.chip, self.channel)

    def events(self) -> list[Event]:
        """The batch as Event objects (arrays copied)."""
        out = []
        ch, aux = self.channels_table, self.aux_table
        for row in self.events_table.tolist():
            c0, nc = row[dk.EV_CHAN_START], row[dk.EV_N_CHAN]
            channels = []
            for card, chip, chan, s0, n in ch[c0 : c0 + nc].tolist():
                bins = self.time_bin[s0 : s0 + n].copy()
                channels.append(Channel(card, chip, chan, bins, self.adc[s0 : s0 + n].copy()))
            a0, na = row[dk.EV_AUX_START], row[dk.EV_N_AUX]
            hits, cells = [], []
            for kind, card, chip, value in aux[a0 : a0 + na].tolist():
                if kind == dk.AUX_HIT_COUNT:
                    hits.append((card, chip, value))
                else:
                    cells.append((chip, value))
            ev = Event(
                event_type=row[dk.EV_TYPE],
                timestamp=row[dk.EV_TIMESTAMP],
                event_count=row[dk.EV_COUNT],
                channels=channels,
                hit_counts=hits,
                last_cells=cells,
                source_id=row[dk.EV_SOURCE],
                flags=EventFlag(row[dk.EV_FLAGS]),
            )
            out.append(ev)
        return out


def as_word_rows(buf: np.ndarray) -> np.ndarray:
    """A 2-D uint8 (little-endian pairs) or uint16 array as C-contiguous uint16 rows."""
    a = np.asarray(buf)
    if a.ndim != 2:
        raise ValueError(f"datagram buffer must be 2-D, got shape {a.shape}")
    if a.dtype == np.uint8:
        if a.shape[1] % 2:
            a = np.concatenate([a, np.zeros((a.shape[0], 1), np.uint8)], axis=1)
        return np.ascontiguousarray(a).view("<u2").astype(np.uint16, copy=False)
    if a.dtype == np.uint16:
        return np.ascontiguousarray(a)
    raise ValueError(f"datagram buffer must be uint8 or uint16, got {a.dtype}")


class StreamDecoder:
    """Stateful decoder of one card's data stream, fed in batches of datagrams.

    ``validate`` (default): every data frame is judged as a whole before anything of it joins
    an event (frame size and end, word grammar, channel range, ``card_id`` if >= 0, sequence
    number within ``seq_window`` of the last one); a bad one is dropped whole and counted
    (REJECTED_DATAGRAM / OUT_OF_WINDOW, with its reasons). Without it every word that can be
    used is (the item-level semantics of :mod:`agetdaq.protocol.decode_kernel`).
    """

    def __init__(
        self,
        check_seq: bool = True,
        has_lead: bool = True,
        *,
        eoe_size_offset: int = EOE_SIZE_OFFSET_BYTES,
        reuse_buffers: bool = False,
        validate: bool = True,
        card_id: int = -1,
        seq_window: int = dk.SEQ_WINDOW_ALL,
    ) -> None:
        if not -1 <= card_id <= 31:
            raise ValueError(f"card_id must be -1 (any) or 0..31, not {card_id}")
        if not 1 <= seq_window <= dk.SEQ_WINDOW_ALL:
            raise ValueError(f"seq_window must be 1..{dk.SEQ_WINDOW_ALL}, not {seq_window}")
        self.check_seq = check_seq
        self.has_lead = has_lead
        self.eoe_size_offset = eoe_size_offset
        self.validate = validate
        self.card_id = card_id
        self.seq_window = seq_window
        self.errors = np.zeros(N_DECODE_ERRORS, dtype=np.int64)
        self._state = dk.new_state()
        self._counts = np.zeros(dk.N_COUNTS, dtype=np.int64)
        self.buffers = OutputBuffers(reuse_buffers)

    def error_counts(self) -> dict[str, int]:
        """Cumulative error counters by name."""
        return {e.name: int(self.errors[e]) for e in DecodeError}

    @property
    def datagrams_seen(self) -> int:
        return int(self._state[dk.ST_DATAGRAM])

    @property
    def last_lead(self) -> int | None:
        """Bits 8..0 of the lead word of the last datagram taken (None before the first)."""
        lead = int(self._state[dk.ST_LAST_LEAD])
        return None if lead < 0 else lead

    def decode(self, buf: np.ndarray, lengths: Sequence[int] | np.ndarray) -> DecodedBatch:
        """Decode rows ``buf[d]`` holding ``lengths[d]`` bytes each; events that ended here."""
        words = as_word_rows(buf)
        lens = np.ascontiguousarray(lengths, dtype=np.int64)
        if lens.ndim != 1 or lens.shape[0] != words.shape[0]:
            raise ValueError(f"lengths shape {lens.shape} does not match {words.shape[0]} rows")
        bound = dk.output_bounds(words.size, words.shape[0])  # as if every row were full
        bufs, start, used, moved = self.buffers.place(bound)
        if moved is not None:  # the open event moved to the front of other buffers
            st = self._state
            st[dk.ST_EV_ROW] = 0
            if st[dk.ST_CHAN_ROW] >= 0:
                st[dk.ST_CHAN_ROW] -= moved
        ev, ch, tb, adc, aux = bufs
        self._counts[:] = used
        before = self.errors.copy()
        first = self.datagrams_seen
        verdict = np.empty(words.shape[0], np.int8)
        dk.decode_batch(
            words, dk.quad_view(words), lens, self.has_lead, self.check_seq,
            self.eoe_size_offset, KIND_LUT, self._state, self._counts,
            ev, ch, tb, adc, aux, self.errors,
            self.validate, self.card_id, self.seq_window, verdict,
        )  # fmt: skip
        end = tuple(int(x) for x in self._counts)
        if self._state[dk.ST_IN_EVENT]:
            row = end[0] - 1
            c0 = int(ev[row, dk.EV_CHAN_START])
            s0 = int(ch[c0, dk.CH_SAMPLE_START]) if ev[row, dk.EV_N_CHAN] > 0 else end[2]
            closed = (row, c0, s0, int(ev[row, dk.EV_AUX_START]))
            self.buffers.carry = Carry(bufs, closed, end)  # type: ignore[arg-type]
        else:
            closed = end
            self.buffers.carry = None
        e0, c0, s0, a0 = start
        events = ev[e0 : closed[0]]
        channels = ch[c0 : closed[1]]
        if c0 or a0 or s0:  # rows continued in place: offsets from this batch's first rows
            events[:, dk.EV_CHAN_START] -= c0
            events[:, dk.EV_AUX_START] -= a0
            channels[:, dk.CH_SAMPLE_START] -= s0
        return DecodedBatch(
            events, channels, tb[s0 : closed[2]], adc[s0 : closed[2]], aux[a0 : closed[3]],
            self.errors - before, first, words.shape[0], verdict,
        )  # fmt: skip

    def flush(self) -> DecodedBatch:
        """End of stream: return the open event, if any, closed TRUNCATED; reset the state."""
        c, self.buffers.carry = self.buffers.carry, None
        first = self.datagrams_seen
        last_lead = self._state[dk.ST_LAST_LEAD]
        self._state = dk.new_state()
        self._state[dk.ST_DATAGRAM] = first
        self._state[dk.ST_LAST_LEAD] = last_lead
        no_errors = np.zeros(N_DECODE_ERRORS, np.int64)
        if c is None:
            none = np.zeros(0, np.uint16)
            return DecodedBatch(
                np.zeros((0, dk.N_EV_COLS), np.int64), np.zeros((0, dk.N_CH_COLS), np.int32),
                none, none.copy(), np.zeros((0, dk.N_AUX_COLS), np.int32), no_errors, first, 0,
            )  # fmt: skip
        event, channels = c.rebased()
        event[dk.EV_FLAGS] |= int(EventFlag.TRUNCATED)
        event[dk.EV_LAST_DGRAM] = first - 1
        _, _, s0, a0 = c.start
        tb, adc, aux = c.bufs[2], c.bufs[3], c.bufs[4]
        return DecodedBatch(
            event[None, :], channels, tb[s0 : c.end[2]].copy(), adc[s0 : c.end[2]].copy(),
            aux[a0 : c.end[3]].copy(), no_errors, first, 0,
        )  # fmt: skip


def pack_datagrams(
    datagrams: Sequence[bytes], stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Datagrams -> (uint8 rows of ``stride`` bytes, zero padded; int64 lengths in bytes).

    ``stride`` defaults to the longest datagram rounded up to even. A longer datagram is cut to
    the stride but keeps its true length, as a receive slot would, so the decoder counts it.
    """
    lengths = np.array([len(d) for d in datagrams], dtype=np.int64)
    if stride is None:
        stride = int(lengths.max(initial=0))
    stride = max(2, stride + (stride & 1))
    out = np.zeros((len(datagrams), stride), dtype=np.uint8)
    for i, d in enumerate(datagrams):
        n = min(len(d), stride)
        out[i, :n] = np.frombuffer(d, dtype=np.uint8, count=n)
    return out, lengths


def decode_datagrams(
    datagrams: Sequence[bytes], *, check_seq: bool = True, has_lead: bool = True, **kw: Any
) -> tuple[list[Event], dict[str, int]]:
    """Decode a whole stream in one batch (flushed at the end): events and error counts
    (``kw``: the other :class:`StreamDecoder` options)."""
    dec = StreamDecoder(check_seq, has_lead, **kw)
    events: list[Event] = []
    if len(datagrams):
        buf, lengths = pack_datagrams(datagrams)
        events.extend(dec.decode(buf, lengths).events())
    events.extend(dec.flush().events())
    return events, dec.error_counts()
