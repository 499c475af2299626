"""Plain-Python reference decoder: the same semantics as :mod:`agetdaq.protocol.decode_kernel`,
written for clarity rather than speed (tests compare the two on every input they generate).

Feed datagrams one at a time with :meth:`ReferenceDecoder.feed`, then :meth:`flush`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agetdaq.protocol.event import N_DECODE_ERRORS, Channel, DecodeError, Event, EventFlag
from agetdaq.protocol.event_block import EOE_SIZE_OFFSET_BYTES
from agetdaq.protocol.words import (
    END_OF_FRAME,
    N_SOE_WORDS,
    Kind,
    chan_header_fields,
    classify,
    last_cell_fields,
    lead_fields,
    start_of_frame_fields,
)

MAX_DAQ_CHANNEL = 78
N_TIME_BINS = 512
SEQ_WINDOW_ALL = 128
RESYNC_RUN = 3  # consecutive numbers out of the window that are followed (the board moved on)
_DATA_KINDS = {
    Kind.CHAN_HIT_IX,
    Kind.ADC_SAMPLE,
    Kind.TIME_BIN_IX,
    Kind.CHAN_HIT_CNT,
    Kind.LAST_CELL_READ,
}


@dataclass
class EventMeta:
    """Per-event bookkeeping that the Event model does not hold."""

    first_datagram: int
    last_datagram: int = -1
    size_declared: int = -1  # -1 = no END_OF_EVENT seen
    size_counted: int = 0  # bytes from SOE to the word after EOE (or to the cut)


@dataclass
class _Open:
    event: Event
    meta: EventMeta
    raw: list[int] = field(default_factory=list)  # words after SOE seen so far
    raw_left: int = N_SOE_WORDS
    words: int = 1
    size_hi: int | None = None  # set once EOE is seen; the size word follows
    chan: Channel | None = None
    chan_dropped: bool = False
    next_bin: int = 0
    bins: list[int] = field(default_factory=list)
    adc: list[int] = field(default_factory=list)


class ReferenceDecoder:
    """Word-by-word state machine; results in ``events``, ``meta`` and ``errors``."""

    def __init__(
        self,
        check_seq: bool = True,
        has_lead: bool = True,
        eoe_size_offset: int = EOE_SIZE_OFFSET_BYTES,
        *,
        validate: bool = True,
        card_id: int = -1,
        seq_window: int = SEQ_WINDOW_ALL,
    ) -> None:
        self.check_seq = check_seq
        self.has_lead = has_lead
        self.eoe_size_offset = eoe_size_offset
        self.validate = validate
        self.card_id = card_id
        self.seq_window = seq_window
        self.verdicts: list[str] = []  # per datagram: decoded, skipped, duplicate, window, rejected
        self._synced = False  # an event closed on its size word since the sequence last broke
        self._oow: tuple[int, int] = (-1, 0)  # last lead refused out of the window, run length
        self._bad = 0  # reasons to reject the datagram being decoded
        self._restart = False  # it carries the first-reply flag
        self.events: list[Event] = []
        self.meta: list[EventMeta] = []
        self.errors = [0] * N_DECODE_ERRORS
        self._open: _Open | None = None
        self._skip_size_word = False  # orphan EOE: its size word is skipped
        self._last_lead: int | None = None  # bits 8..0 of the last accepted lead word
        self._datagram = -1
        self._source = 0

    def error_counts(self) -> dict[str, int]:
        return {e.name: self.errors[e] for e in DecodeError}

    @property
    def last_lead(self) -> int | None:
        """Bits 8..0 of the last accepted lead word (None before the first data frame)."""
        return self._last_lead

    def _count(self, err: DecodeError) -> None:
        self.errors[err] += 1

    # ---- event bookkeeping ----------------------------------------------------------------

    def _end_channel(self) -> None:
        o = self._open
        assert o is not None
        if o.chan is not None:
            o.chan.bins = np.array(o.bins, dtype=np.uint16)
            o.chan.adc = np.array(o.adc, dtype=np.uint16)
        o.chan, o.chan_dropped, o.bins, o.adc = None, False, [], []

    def _close(self, flags: EventFlag, words: int | None = None) -> None:
        o = self._open
        assert o is not None
        self._end_channel()
        o.event.flags |= flags
        o.meta.last_datagram = self._datagram
        o.meta.size_counted = 2 * (o.words if words is None else words)
        self.events.append(o.event)
        self.meta.append(o.meta)
        self._open = None

    def flush(self) -> None:
        """End of input: an open event is closed TRUNCATED."""
        if self._open is not None:
            self._close(EventFlag.TRUNCATED)
        self._skip_size_word = False
        self._synced = False

    # ---- datagrams ----------------------------------------------------------------------

    def feed_all(self, datagrams: Iterable[bytes]) -> None:
        for d in datagrams:
            self.feed(d)

    def feed(self, data: bytes, length: int | None = None) -> None:
        """Decode one datagram; ``length`` > len(data) means it was cut on reception."""
        self._datagram += 1
        self.verdicts.append(self._feed(data, length))

    def _feed(self, data: bytes, length: int | None) -> str:
        length = len(data) if length is None else max(length, 0)
        present = data[: min(length, len(data))]
        words = np.frombuffer(present[: len(present) // 2 * 2], dtype="<u2").tolist()
        if length % 2:
            self._count(DecodeError.SHORT_DATAGRAM)
        lead = 1 if self.has_lead else 0
        frame = words[lead:]
        if len(frame) < 2:
            if length % 2 == 0:
                self._count(DecodeError.SHORT_DATAGRAM)
            return "skipped"
        if classify(frame[0]) != Kind.START_OF_DFRAME:
            self._count(DecodeError.NOT_DATA_FRAME)
            return "skipped"
        source = start_of_frame_fields(frame[0])[1]
        if self.validate and self.card_id >= 0 and source != self.card_id:
            self._count(DecodeError.FOREIGN_CARD)
            self._count(DecodeError.REJECTED_DATAGRAM)
            return "rejected"
        track = self.has_lead and self.check_seq
        if track:
            refused = self._refuse_sequence(words[0] & 0x1FF)
            if refused:
                return refused
        before = self._snapshot()
        self._bad = 0
        self._restart = track and bool(words[0] & 0x100)  # a reboot may cut the open event
        if track:
            self._follow_sequence(words[0] & 0x1FF)
        self._source = source
        size = frame[1]
        if size != length - 2 * lead:
            self._count(DecodeError.FRAME_SIZE_MISMATCH)
            self._bad += self._synced
        body, truncated = self._frame_body(frame, size, cut=length > len(present))
        for w in body:
            self._word(w)
        if truncated:  # what followed is lost: drop pending raw words, resync at the next frame
            o = self._open
            if o is not None:
                o.event.flags |= EventFlag.FRAME_TRUNCATED
                self._end_channel()
                o.raw_left = 0
                if o.size_hi is not None:
                    self._close(EventFlag.TRUNCATED)
            self._skip_size_word = False
        if self.validate and self._bad:
            self._restore(before)
            self._count(DecodeError.REJECTED_DATAGRAM)
            return "rejected"
        return "decoded"

    def _snapshot(self) -> tuple:
        """What a rejected datagram must leave as it was."""
        return (
            copy.deepcopy(self._open),
            len(self.events),
            self._skip_size_word,
            self._last_lead,
            self._source,
            self._synced,
        )

    def _restore(self, saved: tuple) -> None:
        self._open, n, self._skip_size_word, self._last_lead, self._source, self._synced = saved
        del self.events[n:], self.meta[n:]

    def _refuse_sequence(self, lead: int) -> str | None:
        """Why a datagram with this lead word is not decoded at all, or None."""
        seq, first = lead_fields(lead)
        last = self._last_lead
        if lead == last:
            self._count(DecodeError.DUPLICATE_DATAGRAM)
            return "duplicate"
        if self.validate and not first and last is not None:
            ahead = (seq - (last & 0xFF) - 1) % 256
            if self.seq_window <= ahead < 256 - self.seq_window:
                before, run = self._oow
                run = run + 1 if seq == (before + 1) % 256 else 1
                self._oow = (seq, run)
                if run < RESYNC_RUN:
                    self._count(DecodeError.OUT_OF_WINDOW)
                    return "window"
                # numbers in step among themselves: the board's (its first reply was lost)
            self._oow = (self._oow[0], 0)
        return None

    def _follow_sequence(self, lead: int) -> None:
        seq, first = lead_fields(lead)
        last = self._last_lead
        if not first and last is not None and seq != ((last & 0xFF) + 1) % 256:
            self._count(DecodeError.SEQ_GAP)
            if self._open is not None:
                self._close(EventFlag.TRUNCATED | EventFlag.SEQ_GAP)
            self._skip_size_word = False
            self._synced = False
        self._last_lead = lead

    def _frame_body(self, frame: list[int], size: int, cut: bool) -> tuple[list[int], bool]:
        """Body words and whether the frame was truncated."""
        if not cut:
            if len(frame) >= 3 and frame[-1] == END_OF_FRAME:
                return frame[2:-1], False
            eof_at = size // 2 - 1
            if 2 <= eof_at < len(frame) - 1 and frame[eof_at] == END_OF_FRAME:
                if any(frame[eof_at + 1 :]):
                    self._count(DecodeError.TRAILING_WORDS)
                    self._bad += self._synced
                return frame[2:eof_at], False
        self._count(DecodeError.FRAME_TRUNCATED)
        self._bad += self._synced
        return frame[2:], True

    # ---- words --------------------------------------------------------------------------

    def _word(self, w: int) -> None:
        o = self._open
        if o is not None and o.size_hi is not None:  # the size word after EOE
            o.words += 1
            declared = (o.size_hi << 16) | w
            o.meta.size_declared = declared
            flags = EventFlag.NONE
            if declared != 2 * o.words + self.eoe_size_offset:
                self._count(DecodeError.EOE_SIZE_MISMATCH)
                flags = EventFlag.SIZE_MISMATCH
            self._close(flags)
            self._synced = self.has_lead and self.check_seq  # an event closed as it should
            return
        if o is not None and o.raw_left > 0:
            o.words += 1
            o.raw_left -= 1
            o.raw.append(w)
            lo, mid, hi, clo, chi = o.raw + [0] * (
                N_SOE_WORDS - len(o.raw)
            )  # cut events keep a partial header
            o.event.timestamp = (hi << 32) | (mid << 16) | lo
            o.event.event_count = (chi << 16) | clo
            return
        if self._skip_size_word:
            self._skip_size_word = False
            return
        kind = classify(w)
        if o is None:
            self._outside(w, kind)
        else:
            o.words += 1
            self._inside(o, w, kind)

    def _outside(self, w: int, kind: Kind) -> None:
        if kind == Kind.START_OF_EVENT:
            self._start_event(w)
        elif kind == Kind.NULL:
            pass
        elif kind == Kind.END_OF_EVENT:
            self._orphan()
            self._skip_size_word = True
        elif kind in _DATA_KINDS:
            self._orphan()
        elif kind == Kind.UNKNOWN:
            self._count(DecodeError.UNKNOWN_WORD)
            self._bad += self._synced
        else:
            self._count(DecodeError.UNEXPECTED_WORD)
            self._bad += self._synced

    def _orphan(self) -> None:
        self._count(DecodeError.ORPHAN_DATA)
        self._bad += self._synced

    def _start_event(self, w: int) -> None:
        ev = Event(event_type=w & 0x7, source_id=self._source)
        self._open = _Open(event=ev, meta=EventMeta(first_datagram=self._datagram))

    def _flag(self, o: _Open, err: DecodeError, flag: EventFlag) -> None:
        """A flaw of the event: flagged, and the datagram is bad once the stream is in step."""
        self._count(err)
        o.event.flags |= flag
        self._bad += self._synced

    def _foreign(self, card: int) -> bool:
        if self.validate and self.card_id >= 0 and card != self.card_id:
            self._count(DecodeError.FOREIGN_CARD)
            self._bad += self._synced
            return True
        return False

    def _inside(self, o: _Open, w: int, kind: Kind) -> None:
        if kind == Kind.CHAN_HIT_IX:
            self._end_channel()
            card, chip, chan = chan_header_fields(w)
            if chan > MAX_DAQ_CHANNEL:
                self._flag(o, DecodeError.CHANNEL_OUT_OF_RANGE, EventFlag.OUT_OF_RANGE)
                o.chan_dropped = True
            elif self._foreign(card):
                o.chan_dropped = True
            else:
                o.chan = Channel(card, chip, chan, np.zeros(0, np.uint16), np.zeros(0, np.uint16))
                o.event.channels.append(o.chan)
                o.next_bin = 0
        elif kind == Kind.ADC_SAMPLE:
            if o.chan is not None:
                if o.next_bin >= N_TIME_BINS:  # an item flaw: the datagram stays
                    self._count(DecodeError.TIME_BIN_OUT_OF_RANGE)
                    o.event.flags |= EventFlag.OUT_OF_RANGE
                else:
                    o.bins.append(o.next_bin)
                    o.adc.append(w & 0xFFF)
                o.next_bin += 1
            elif not o.chan_dropped:
                self._flag(o, DecodeError.UNEXPECTED_WORD, EventFlag.BAD_WORD)
        elif kind == Kind.TIME_BIN_IX:
            if o.chan is not None:
                o.next_bin = w & 0x1FF
            elif not o.chan_dropped:
                self._flag(o, DecodeError.UNEXPECTED_WORD, EventFlag.BAD_WORD)
        elif kind == Kind.CHAN_HIT_CNT:
            self._end_channel()
            card, chip, count = chan_header_fields(w)
            if not self._foreign(card):
                o.event.hit_counts.append((card, chip, count))
        elif kind == Kind.LAST_CELL_READ:
            self._end_channel()
            o.event.last_cells.append(last_cell_fields(w))
        elif kind == Kind.END_OF_EVENT:
            o.size_hi = w & 0xF
        elif kind == Kind.NULL:
            pass
        elif kind == Kind.START_OF_EVENT:
            self._count(DecodeError.MISSING_EOE)
            if not self._restart:
                self._bad += self._synced
            self._close(EventFlag.TRUNCATED, words=o.words - 1)
            self._start_event(w)
        elif kind == Kind.UNKNOWN:
            self._flag(o, DecodeError.UNKNOWN_WORD, EventFlag.BAD_WORD)
        else:
            self._flag(o, DecodeError.UNEXPECTED_WORD, EventFlag.BAD_WORD)


def decode_reference(
    datagrams: Sequence[bytes],
    *,
    check_seq: bool = True,
    has_lead: bool = True,
    eoe_size_offset: int = EOE_SIZE_OFFSET_BYTES,
) -> tuple[list[Event], dict[str, int]]:
    """Decode a whole stream with the reference decoder (flushed at the end)."""
    dec = ReferenceDecoder(check_seq, has_lead, eoe_size_offset)
    dec.feed_all(datagrams)
    dec.flush()
    return dec.events, dec.error_counts()
