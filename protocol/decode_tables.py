"""Layout of the decoder's state and output tables, and the numba helpers that write their rows.

The columns and state slots are the contract between
:func:`agetdaq.protocol.decode_machine.decode_batch` and its callers, who read them through
:mod:`agetdaq.protocol.decode_kernel`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.protocol.event import DecodeError, EventFlag
from agetdaq.protocol.words import Kind

# ---- state (int64 array carried across calls) ----------------------------------------------
ST_IN_EVENT = 0
ST_EV_ROW = 1  # row of the open event in the events table
ST_PEND_KIND = 2  # PEND_NONE / PEND_SOE / PEND_EOE
ST_PEND_LEFT = 3  # raw words still to consume
ST_CHAN_ROW = 4  # current channel row, CHAN_NONE or CHAN_DROPPED
ST_NEXT_BIN = 5
ST_LAST_LEAD = 6  # lead & 0x1FF of the last accepted datagram, -1 = none
ST_DATAGRAM = 7  # stream index of the next datagram
ST_EV_WORDS = 8  # words counted so far in the open event
ST_EOE_HI = 9  # size bits 19..16 of a pending EOE
ST_SYNCED = 10  # 1 once an event closed on its size word since the sequence broke (in step)
ST_OOW_LEAD = 11  # lead of the last frame refused as out of the window, -1 = none
ST_OOW_RUN = 12  # consecutive sequence numbers among those refused frames
N_STATE = 13

PEND_NONE = 0
PEND_SOE = 1
PEND_EOE = 2
CHAN_NONE = -1
CHAN_DROPPED = -2

# ---- output tables --------------------------------------------------------------------------
EV_TYPE = 0
EV_TIMESTAMP = 1
EV_COUNT = 2
EV_FLAGS = 3
EV_SOURCE = 4
EV_CHAN_START = 5
EV_N_CHAN = 6
EV_AUX_START = 7
EV_N_AUX = 8
EV_FIRST_DGRAM = 9
EV_LAST_DGRAM = 10
EV_SIZE_DECLARED = 11  # -1 = no size word seen
EV_SIZE_COUNTED = 12  # bytes from SOE to the word after EOE (or to where it was cut)
N_EV_COLS = 13

CH_CARD = 0
CH_CHIP = 1
CH_CHANNEL = 2
CH_SAMPLE_START = 3
CH_N_SAMPLES = 4
N_CH_COLS = 5

AUX_KIND = 0
AUX_CARD = 1  # -1 for last-cell rows (the word has no card field)
AUX_CHIP = 2
AUX_VALUE = 3
N_AUX_COLS = 4
AUX_HIT_COUNT = 0
AUX_LAST_CELL = 1

C_EVENTS = 0
C_CHANNELS = 1
C_SAMPLES = 2
C_AUX = 3
N_COUNTS = 4

MAX_DAQ_CHANNEL = 78
N_TIME_BINS = 512
SOE_RAW_WORDS = 5

# ints for numba
_E_SHORT = int(DecodeError.SHORT_DATAGRAM)
_E_NOT_DATA = int(DecodeError.NOT_DATA_FRAME)
_E_FSIZE = int(DecodeError.FRAME_SIZE_MISMATCH)
_E_FTRUNC = int(DecodeError.FRAME_TRUNCATED)
_E_UNKNOWN = int(DecodeError.UNKNOWN_WORD)
_E_UNEXPECTED = int(DecodeError.UNEXPECTED_WORD)
_E_ORPHAN = int(DecodeError.ORPHAN_DATA)
_E_MISSING_EOE = int(DecodeError.MISSING_EOE)
_E_EOE_SIZE = int(DecodeError.EOE_SIZE_MISMATCH)
_E_CHAN_OOR = int(DecodeError.CHANNEL_OUT_OF_RANGE)
_E_BIN_OOR = int(DecodeError.TIME_BIN_OUT_OF_RANGE)
_E_SEQ = int(DecodeError.SEQ_GAP)
_E_TRAILING = int(DecodeError.TRAILING_WORDS)
_E_OVERFLOW = int(DecodeError.OUTPUT_OVERFLOW)
_E_DUP = int(DecodeError.DUPLICATE_DATAGRAM)
_E_FOREIGN = int(DecodeError.FOREIGN_CARD)
_E_WINDOW = int(DecodeError.OUT_OF_WINDOW)
_E_REJECTED = int(DecodeError.REJECTED_DATAGRAM)

# what became of each datagram (the decoder's verdict, one per datagram of a batch)
V_DECODED = 0  # its words joined the stream
V_SKIPPED = 1  # not a data frame (too short, or another frame kind): nothing to decode
V_DUPLICATE = 2  # the same lead word as the datagram before it: a re-sent copy, skipped
V_OUT_OF_WINDOW = 3  # its sequence number is outside the board's window: dropped whole
V_REJECTED = 4  # invalid as a whole (grammar, ranges, card, frame size): dropped whole
SEQ_WINDOW_ALL = 128  # a window this wide accepts every sequence number
RESYNC_RUN = 3  # this many consecutive numbers out of the window: the board moved on, follow it

_F_TRUNCATED = int(EventFlag.TRUNCATED)
_F_SIZE = int(EventFlag.SIZE_MISMATCH)
_F_SEQ = int(EventFlag.SEQ_GAP)
_F_BAD = int(EventFlag.BAD_WORD)
_F_OOR = int(EventFlag.OUT_OF_RANGE)
_F_FTRUNC = int(EventFlag.FRAME_TRUNCATED)
_F_OVERFLOW = int(EventFlag.OVERFLOW)

_K_TIME_BIN_IX = int(Kind.TIME_BIN_IX)
_K_HIT_CNT = int(Kind.CHAN_HIT_CNT)
_K_LAST_CELL = int(Kind.LAST_CELL_READ)
_K_SOE = int(Kind.START_OF_EVENT)
_K_EOE = int(Kind.END_OF_EVENT)
_K_NULL = int(Kind.NULL)
_K_UNKNOWN = int(Kind.UNKNOWN)
_K_ADC = int(Kind.ADC_SAMPLE)
_K_CHAN = int(Kind.CHAN_HIT_IX)


def new_state() -> np.ndarray:
    """A fresh decoder state: outside any event, sequence unknown."""
    st = np.zeros(N_STATE, dtype=np.int64)
    st[ST_CHAN_ROW] = CHAN_NONE
    st[ST_LAST_LEAD] = -1
    st[ST_OOW_LEAD] = -1
    return st


def output_bounds(total_words: int, n_datagrams: int) -> tuple[int, int, int, int]:
    """Rows (events, channels, samples, aux) a batch can add at most.

    A new event consumes its SOE plus 5 raw words, except one cut short by a sequence gap (at
    most one per datagram) or the last one of the batch; every channel, sample and aux row
    needs a word of its own.
    """
    n_ev = total_words // (SOE_RAW_WORDS + 1) + n_datagrams + 1
    return n_ev, total_words, total_words, total_words


@njit(cache=True, nogil=True)
def _close_event(ev, row, n_ch, n_aux, n_words, datagram, flags):
    ev[row, EV_FLAGS] |= flags
    ev[row, EV_N_CHAN] = n_ch - ev[row, EV_CHAN_START]
    ev[row, EV_N_AUX] = n_aux - ev[row, EV_AUX_START]
    ev[row, EV_LAST_DGRAM] = datagram
    ev[row, EV_SIZE_COUNTED] = 2 * n_words


@njit(cache=True, nogil=True)
def _end_event(ev, row, eoe_hi, size_word, n_words, eoe_offset, n_ch, n_aux, datagram, errors):
    """Close an event at its size word, checking the size it declares."""
    declared = (eoe_hi << 16) | size_word
    ev[row, EV_SIZE_DECLARED] = declared
    flags = 0
    if declared != 2 * n_words + eoe_offset:
        errors[_E_EOE_SIZE] += 1
        flags = _F_SIZE
    _close_event(ev, row, n_ch, n_aux, n_words, datagram, flags)


@njit(cache=True, nogil=True, inline="always")
def _outside_error(kind):
    """Error counted for a word of ``kind`` (not NULL, SOE, ADC or channel) outside an event."""
    if kind in (_K_EOE, _K_TIME_BIN_IX, _K_HIT_CNT, _K_LAST_CELL):
        return _E_ORPHAN
    return _E_UNKNOWN if kind == _K_UNKNOWN else _E_UNEXPECTED


@njit(cache=True, nogil=True, inline="always")
def _open_event(ev, row, soe, source, n_ch, n_aux, datagram):
    """Start event row ``row`` at a START_OF_EVENT word; header fields still zero."""
    for c in range(N_EV_COLS):
        ev[row, c] = 0
    ev[row, EV_TYPE] = soe & 0x7
    ev[row, EV_SOURCE] = source
    ev[row, EV_CHAN_START] = n_ch
    ev[row, EV_AUX_START] = n_aux
    ev[row, EV_FIRST_DGRAM] = datagram
    ev[row, EV_LAST_DGRAM] = datagram
    ev[row, EV_SIZE_DECLARED] = -1


@njit(cache=True, nogil=True, inline="always")
def _event_header(ev, row, words, i):
    """Timestamp and event count from the 5 raw words after SOE at ``words[i:]``."""
    ev[row, EV_TIMESTAMP] = (
        np.int64(words[i]) | np.int64(words[i + 1]) << 16 | np.int64(words[i + 2]) << 32
    )
    ev[row, EV_COUNT] = np.int64(words[i + 3]) | np.int64(words[i + 4]) << 16


@njit(cache=True, nogil=True, inline="always")
def _write_aux(aux, row, hit_count, w):
    """Aux row of a HIT_CNT word (``hit_count``) or of a LAST_CELL_READ word."""
    if hit_count:
        aux[row, AUX_KIND] = AUX_HIT_COUNT
        aux[row, AUX_CARD] = (w >> 9) & 0x1F
        aux[row, AUX_CHIP] = (w >> 7) & 0x3
        aux[row, AUX_VALUE] = w & 0x7F
    else:
        aux[row, AUX_KIND] = AUX_LAST_CELL
        aux[row, AUX_CARD] = -1
        aux[row, AUX_CHIP] = (w >> 10) & 0x3
        aux[row, AUX_VALUE] = w & 0x3FF
