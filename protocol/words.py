"""The 16-bit word vocabulary of Feminos-family frames (PROTOCOL.md §1.2).

Every word is classified by testing (mask, value) pairs in table order; the first match wins.
Builders return ``int`` words (0..0xFFFF); ``*_fields`` helpers take a word apart.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numba import njit


class Kind(IntEnum):
    """Word kinds, in the order of the prefix table (UNKNOWN = no prefix matched)."""

    UNKNOWN = 0
    CHAN_HIT_IX = 1  # channel header: card, chip, DAQ channel index
    CHAN_HIT_CNT = 2  # same layout, 7-bit field = hit count of the chip
    CHAN_HISTO = 3  # header of one channel's pedestal histogram
    ADC_SAMPLE = 4
    LAT_HISTO_BIN = 5  # + u32 count
    LAST_CELL_READ = 6  # chip, cell; always 4 consecutive words
    TIME_BIN_IX = 7
    HISTO_BIN_IX = 8  # + u16 count
    PEDTHR_LIST = 9  # + 72 (AGET) or 79 (AFTER) s16
    START_OF_DFRAME = 10  # + size word (bytes)
    START_OF_MFRAME = 11  # + size word (bytes)
    START_OF_CFRAME = 12  # + s16 error code
    ASCII_MSG_LEN = 13  # + chars, NUL, optional pad NUL
    START_OF_EVENT = 14  # + ts_lo, ts_mid, ts_hi, evcnt_lo, evcnt_hi
    END_OF_EVENT = 15  # + size[15:0]
    CH_HIT_CNT_HISTO = 16
    END_OF_FRAME = 17
    DEADTIME_HSTAT_BINS = 18
    PEDESTAL_HSTAT = 19
    PEDESTAL_H_MD = 20
    SHISTO_BINS = 21
    CMD_STATISTICS = 22
    EVPERIOD_HSTAT_BINS = 23
    START_OF_BUILT_EVENT = 24
    END_OF_BUILT_EVENT = 25
    SOBE_SIZE = 26
    NULL = 27


# (mask, value, kind) in the order the table is tested.
PREFIX_TABLE: tuple[tuple[int, int, Kind], ...] = (
    (0xC000, 0xC000, Kind.CHAN_HIT_IX),
    (0xC000, 0x8000, Kind.CHAN_HIT_CNT),
    (0xC000, 0x4000, Kind.CHAN_HISTO),
    (0xF000, 0x3000, Kind.ADC_SAMPLE),
    (0xF000, 0x2000, Kind.LAT_HISTO_BIN),
    (0xF000, 0x1000, Kind.LAST_CELL_READ),
    (0xFE00, 0x0E00, Kind.TIME_BIN_IX),
    (0xFE00, 0x0C00, Kind.HISTO_BIN_IX),
    (0xFE00, 0x0A00, Kind.PEDTHR_LIST),
    (0xFE00, 0x0800, Kind.START_OF_DFRAME),
    (0xFE00, 0x0600, Kind.START_OF_MFRAME),
    (0xFE00, 0x0400, Kind.START_OF_CFRAME),
    (0xFF00, 0x0100, Kind.ASCII_MSG_LEN),
    (0xFFF0, 0x00F0, Kind.START_OF_EVENT),
    (0xFFF0, 0x00E0, Kind.END_OF_EVENT),
    (0xFFFC, 0x007C, Kind.CH_HIT_CNT_HISTO),
    (0xFFFF, 0x000F, Kind.END_OF_FRAME),
    (0xFFFF, 0x000E, Kind.DEADTIME_HSTAT_BINS),
    (0xFFFF, 0x000D, Kind.PEDESTAL_HSTAT),
    (0xFFFF, 0x000C, Kind.PEDESTAL_H_MD),
    (0xFFFF, 0x000B, Kind.SHISTO_BINS),
    (0xFFFF, 0x000A, Kind.CMD_STATISTICS),
    (0xFFFF, 0x0009, Kind.START_OF_BUILT_EVENT),
    (0xFFFF, 0x0008, Kind.END_OF_BUILT_EVENT),
    (0xFFFF, 0x0007, Kind.EVPERIOD_HSTAT_BINS),
    (0xFFFF, 0x0006, Kind.SOBE_SIZE),
    (0xFFFF, 0x0000, Kind.NULL),
)

# Prefix values, for code that builds words.
CHAN_HIT_IX = 0xC000
CHAN_HIT_CNT = 0x8000
CHAN_HISTO = 0x4000
ADC_SAMPLE = 0x3000
LAT_HISTO_BIN = 0x2000
LAST_CELL_READ = 0x1000
TIME_BIN_IX = 0x0E00
HISTO_BIN_IX = 0x0C00
PEDTHR_LIST = 0x0A00
START_OF_DFRAME = 0x0800
START_OF_MFRAME = 0x0600
START_OF_CFRAME = 0x0400
ASCII_MSG_LEN = 0x0100
START_OF_EVENT = 0x00F0
END_OF_EVENT = 0x00E0
CH_HIT_CNT_HISTO = 0x007C
END_OF_FRAME = 0x000F
DEADTIME_HSTAT_BINS = 0x000E
PEDESTAL_HSTAT = 0x000D
PEDESTAL_H_MD = 0x000C
SHISTO_BINS = 0x000B
CMD_STATISTICS = 0x000A
START_OF_BUILT_EVENT = 0x0009
END_OF_BUILT_EVENT = 0x0008
EVPERIOD_HSTAT_BINS = 0x0007
SOBE_SIZE = 0x0006
NULL_WORD = 0x0000

# Lead word of a UDP datagram (§1.1).
LEAD_SEQ_MASK = 0x00FF
LEAD_FIRST_REPLY = 0x0100

# Field limits.
MAX_CARD = 31
MAX_CHIP = 3
MAX_CHAN = 127  # 7-bit field; valid DAQ indices are 0..78
MAX_ADC = 0xFFF
MAX_TIME_BIN = 0x1FF
MAX_CELL = 0x3FF
MAX_EOE_SIZE = 0xFFFFF
N_LAST_CELL_WORDS = 4
N_SOE_WORDS = 5  # words after START_OF_EVENT
N_STAT_U32 = 9
PEDTHR_ENTRIES_AGET = 72
PEDTHR_ENTRIES_AFTER = 79


def _kind_lut() -> np.ndarray:
    lut = np.zeros(0x10000, dtype=np.uint8)
    words = np.arange(0x10000, dtype=np.uint32)
    assigned = np.zeros(0x10000, dtype=bool)
    for mask, value, kind in PREFIX_TABLE:
        hit = ((words & mask) == value) & ~assigned
        lut[hit] = int(kind)
        assigned |= hit
    return lut


KIND_LUT: np.ndarray = _kind_lut()
"""Kind of every possible 16-bit word (uint8, 65536 entries); the table applied once."""


def classify(word: int) -> Kind:
    """Kind of a word by the prefix table (first match wins)."""
    for mask, value, kind in PREFIX_TABLE:
        if (word & mask) == value:
            return kind
    return Kind.UNKNOWN


@njit(cache=True, nogil=True)
def classify_nb(word: int) -> int:
    """numba twin of :func:`classify`, returning the ``Kind`` value as an int."""
    w = word & 0xFFFF
    top2 = w & 0xC000
    if top2 == 0xC000:
        return 1
    if top2 == 0x8000:
        return 2
    if top2 == 0x4000:
        return 3
    top4 = w & 0xF000
    if top4 == 0x3000:
        return 4
    if top4 == 0x2000:
        return 5
    if top4 == 0x1000:
        return 6
    top7 = w & 0xFE00
    if top7 == 0x0E00:
        return 7
    if top7 == 0x0C00:
        return 8
    if top7 == 0x0A00:
        return 9
    if top7 == 0x0800:
        return 10
    if top7 == 0x0600:
        return 11
    if top7 == 0x0400:
        return 12
    if (w & 0xFF00) == 0x0100:
        return 13
    if (w & 0xFFF0) == 0x00F0:
        return 14
    if (w & 0xFFF0) == 0x00E0:
        return 15
    if (w & 0xFFFC) == 0x007C:
        return 16
    if w == 0x000F:
        return 17
    if w == 0x000E:
        return 18
    if w == 0x000D:
        return 19
    if w == 0x000C:
        return 20
    if w == 0x000B:
        return 21
    if w == 0x000A:
        return 22
    if w == 0x0009:
        return 24
    if w == 0x0008:
        return 25
    if w == 0x0007:
        return 23
    if w == 0x0006:
        return 26
    if w == 0x0000:
        return 27
    return 0


def _check(name: str, value: int, hi: int) -> int:
    if not 0 <= value <= hi:
        raise ValueError(f"{name}={value} out of range 0..{hi}")
    return value


# ---- builders -------------------------------------------------------------------------------


def chan_header(card: int, chip: int, chan: int, prefix: int = CHAN_HIT_IX) -> int:
    """Channel header (HIT_CNT / HISTO header with ``prefix``): card 13..9, chip 8..7, chan 6..0."""
    _check("card", card, MAX_CARD)
    _check("chip", chip, MAX_CHIP)
    _check("chan", chan, MAX_CHAN)
    return prefix | (card << 9) | (chip << 7) | chan


def hit_count(card: int, chip: int, count: int) -> int:
    """CHAN_HIT_CNT word: the hit count of one chip in the 7-bit channel field."""
    return chan_header(card, chip, count, CHAN_HIT_CNT)


def adc_sample(value: int) -> int:
    return ADC_SAMPLE | _check("adc", value, MAX_ADC)


def time_bin_ix(time_bin: int) -> int:
    return TIME_BIN_IX | _check("time_bin", time_bin, MAX_TIME_BIN)


def histo_bin_ix(bin_ix: int) -> int:
    return HISTO_BIN_IX | _check("bin", bin_ix, 0x1FF)


def lat_histo_bin(bin_ix: int) -> int:
    return LAT_HISTO_BIN | _check("bin", bin_ix, 0xFFF)


def last_cell_read(chip: int, cell: int) -> int:
    return LAST_CELL_READ | (_check("chip", chip, MAX_CHIP) << 10) | _check("cell", cell, MAX_CELL)


def start_of_frame(prefix: int, source_id: int, version: int = 0) -> int:
    """SOF word of a D/M/C frame: version bits 8..7, source (FEM) id bits 4..0."""
    if prefix not in (START_OF_DFRAME, START_OF_MFRAME, START_OF_CFRAME):
        raise ValueError(f"not a start-of-frame prefix: {prefix:#06x}")
    return prefix | (_check("version", version, 3) << 7) | _check("source_id", source_id, 31)


def pedthr_list(fem: int, asic: int, after_mode: bool = False, thresholds: bool = False) -> int:
    """PEDTHR_LIST header: fem 8..4, asic 3..2, mode bit 1 (1 = AFTER), type bit 0 (1 = thr)."""
    return (
        PEDTHR_LIST
        | (_check("fem", fem, 31) << 4)
        | (_check("asic", asic, 3) << 2)
        | (int(after_mode) << 1)
        | int(thresholds)
    )


def ascii_msg_len(length: int) -> int:
    return ASCII_MSG_LEN | _check("length", length, 0xFF)


def start_of_event(event_type: int) -> int:
    return START_OF_EVENT | _check("event_type", event_type, 7)


def soe_words(event_type: int, timestamp: int, event_count: int) -> list[int]:
    """START_OF_EVENT and its five words: ts lo/mid/hi (48 bit, 20 ns), count lo/hi (32 bit)."""
    _check("timestamp", timestamp, (1 << 48) - 1)
    _check("event_count", event_count, (1 << 32) - 1)
    return [
        start_of_event(event_type),
        timestamp & 0xFFFF,
        (timestamp >> 16) & 0xFFFF,
        (timestamp >> 32) & 0xFFFF,
        event_count & 0xFFFF,
        (event_count >> 16) & 0xFFFF,
    ]


def eoe_words(size: int) -> list[int]:
    """END_OF_EVENT carrying size bits 19..16, then size bits 15..0."""
    _check("size", size, MAX_EOE_SIZE)
    return [END_OF_EVENT | (size >> 16), size & 0xFFFF]


def lead_word(seq: int, first: bool = False) -> int:
    """Lead word of a data datagram: 8-bit sequence number, bit 8 on the first reply after reset."""
    return (seq & LEAD_SEQ_MASK) | (LEAD_FIRST_REPLY if first else 0)


def u32_words(value: int) -> list[int]:
    """A u32 as two words, low word first (§1.1)."""
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16]


# ---- field extractors -----------------------------------------------------------------------


def chan_header_fields(word: int) -> tuple[int, int, int]:
    """(card, chip, chan) of a channel / hit-count / histogram header."""
    return (word >> 9) & 0x1F, (word >> 7) & 0x3, word & 0x7F


def adc_value(word: int) -> int:
    return word & 0xFFF


def time_bin_value(word: int) -> int:
    return word & 0x1FF


def last_cell_fields(word: int) -> tuple[int, int]:
    """(chip, cell) of a LAST_CELL_READ word."""
    return (word >> 10) & 0x3, word & 0x3FF


def start_of_frame_fields(word: int) -> tuple[int, int]:
    """(version, source_id) of a SOF word."""
    return (word >> 7) & 0x3, word & 0x1F


def pedthr_list_fields(word: int) -> tuple[int, int, bool, bool]:
    """(fem, asic, after_mode, thresholds) of a PEDTHR_LIST header."""
    return (word >> 4) & 0x1F, (word >> 2) & 0x3, bool(word & 0x2), bool(word & 0x1)


def event_type_value(word: int) -> int:
    return word & 0x7


def eoe_size(word: int, low: int) -> int:
    """20-bit event size from END_OF_EVENT and the following word."""
    return ((word & 0xF) << 16) | (low & 0xFFFF)


def soe_fields(ts_lo: int, ts_mid: int, ts_hi: int, cnt_lo: int, cnt_hi: int) -> tuple[int, int]:
    """(timestamp, event_count) from the five words after START_OF_EVENT."""
    return (ts_hi << 32) | (ts_mid << 16) | ts_lo, (cnt_hi << 16) | cnt_lo


def lead_fields(word: int) -> tuple[int, bool]:
    """(sequence, first_reply) of a lead word."""
    return word & LEAD_SEQ_MASK, bool(word & LEAD_FIRST_REPLY)
