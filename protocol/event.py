"""The decoded-event model shared by encoders, decoders, files and the emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

import numpy as np

TICK_NS = 20  # card timestamp unit (50 MHz clock) [inferred, PROTOCOL.md §1.4]
SIGNALS_PER_CARD = 288
SIGNALS_PER_CHIP = 72


def signal_id(card: int, chip: int, channel: int) -> int:
    """feminos-daq / REST signal id: card*288 + chip*72 + channel."""
    return card * SIGNALS_PER_CARD + chip * SIGNALS_PER_CHIP + channel


class EventFlag(IntFlag):
    """Per-event damage flags set by the decoder (0 = clean)."""

    NONE = 0
    TRUNCATED = 1  # no END_OF_EVENT: cut by a new SOE, a sequence gap or the end of input
    SIZE_MISMATCH = 2  # EOE size differs from the bytes counted (data kept, PROTOCOL.md §1.4)
    SEQ_GAP = 4  # a datagram of this event is missing (lead-word sequence gap)
    BAD_WORD = 8  # an unexpected or unknown word inside the event (skipped)
    OUT_OF_RANGE = 16  # a channel index or time bin out of range (that item dropped)
    FRAME_TRUNCATED = 32  # a frame of this event was shorter than its size word
    OVERFLOW = 64  # more samples than the output arrays could take (dropped)


class DecodeError(IntEnum):
    """Named decoder error counters; index into the decoder's ``errors`` array."""

    SHORT_DATAGRAM = 0  # fewer than 3 words or odd length
    NOT_DATA_FRAME = 1  # first word is not START_OF_DFRAME (C/M frame or garbage)
    FRAME_SIZE_MISMATCH = 2  # SOF size word != datagram length - 2
    FRAME_TRUNCATED = 3  # frame ends before its size word says / no END_OF_FRAME
    UNKNOWN_WORD = 4  # no prefix matched
    UNEXPECTED_WORD = 5  # a known word where it does not belong
    ORPHAN_DATA = 6  # channel data outside an event (skipped until the next SOE)
    MISSING_EOE = 7  # SOE while an event was open
    EOE_SIZE_MISMATCH = 8
    CHANNEL_OUT_OF_RANGE = 9  # DAQ channel index > 78
    TIME_BIN_OUT_OF_RANGE = 10  # sample past time bin 511
    SEQ_GAP = 11  # lead-word sequence jumped
    TRAILING_WORDS = 12  # non-NULL words after END_OF_FRAME
    OUTPUT_OVERFLOW = 13
    DUPLICATE_DATAGRAM = 14  # same lead sequence number as the previous datagram (re-sent); skipped
    FOREIGN_CARD = 15  # a frame, channel or hit count of another card than the board's
    OUT_OF_WINDOW = 16  # sequence number outside the board's window (stale or forged); dropped
    REJECTED_DATAGRAM = 17  # a data frame dropped whole for what it holds (its reasons counted)


N_DECODE_ERRORS = len(DecodeError)


@dataclass
class Channel:
    """One channel's samples: raw ADC values at their time bins."""

    card: int
    chip: int
    channel: int  # DAQ channel index 0..78 (PROTOCOL.md §4)
    bins: np.ndarray  # uint16 time bins, increasing
    adc: np.ndarray  # uint16 raw ADC (12 bit)

    @property
    def signal_id(self) -> int:
        return signal_id(self.card, self.chip, self.channel)

    def key(self) -> tuple[int, int, int]:
        return (self.card, self.chip, self.channel)


@dataclass
class Event:
    """One event as the card sent it."""

    event_type: int = 0
    timestamp: int = 0  # 48-bit, 20 ns ticks
    event_count: int = 0  # 32-bit card event counter
    channels: list[Channel] = field(default_factory=list)
    hit_counts: list[tuple[int, int, int]] = field(default_factory=list)  # (card, chip, count)
    last_cells: list[tuple[int, int]] = field(default_factory=list)  # (chip, cell)
    source_id: int = 0  # femid of the SOF of the frame that held the SOE
    flags: EventFlag = EventFlag.NONE

    def same_data(self, other: Event) -> bool:
        """True when header, channels, samples, hit counts and last cells are identical."""
        if (self.event_type, self.timestamp, self.event_count) != (
            other.event_type,
            other.timestamp,
            other.event_count,
        ):
            return False
        if self.hit_counts != other.hit_counts or self.last_cells != other.last_cells:
            return False
        if len(self.channels) != len(other.channels):
            return False
        for a, b in zip(self.channels, other.channels):
            if a.key() != b.key():
                return False
            if not (np.array_equal(a.bins, b.bins) and np.array_equal(a.adc, b.adc)):
                return False
        return True
