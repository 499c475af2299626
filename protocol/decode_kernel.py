"""numba kernel decoding a batch of data datagrams into flat event / channel / sample tables.

Semantics (the plain-Python twin is :mod:`protocol.decode_ref`; tests compare them):

- A datagram is ``[lead] SOF_D size body EOF``; ``lengths`` are in bytes. Non-D frames are
  skipped (NOT_DATA_FRAME). ``size != length - lead`` counts FRAME_SIZE_MISMATCH and the words
  actually present are decoded. The body ends at the last word if it is EOF, else at the EOF the
  size word points to (non-NULL words after it: TRAILING_WORDS), else the frame is truncated
  (FRAME_TRUNCATED: every present word is decoded, then the open event is flagged, its current
  channel closed and pending raw words dropped; an event waiting for its size word is closed
  TRUNCATED).
- Lead sequence (``check_seq``): a lead word (bits 8..0) equal to the previous accepted one is a
  re-sent duplicate and is skipped (DUPLICATE_DATAGRAM); a sequence number other than the
  previous + 1 mod 256 (unless the 0x0100 first flag is set) counts SEQ_GAP and closes the open
  event TRUNCATED|SEQ_GAP, dropping pending raw words; the data up to the next SOE are orphans.
- The 5 words after SOE and the word after EOE are raw and may lie in later frames.
- Every word between SOE and the word after EOE (frame words excluded) is counted; EOE size
  mismatch with ``2 * words + eoe_offset`` counts EOE_SIZE_MISMATCH, flags SIZE_MISMATCH, keeps
  the data. An event is closed only by its size word; a new SOE closes it TRUNCATED
  (MISSING_EOE).
- Outside an event, data words count ORPHAN_DATA, unknown words UNKNOWN_WORD, other words
  UNEXPECTED_WORD; NULL is padding everywhere.
- Inside an event: channel index > 78 drops the channel (CHANNEL_OUT_OF_RANGE, its samples are
  skipped silently); a sample past bin 511 is dropped (TIME_BIN_OUT_OF_RANGE); samples or
  TIME_BIN_IX without a channel, unknown and misplaced words count and flag BAD_WORD. HIT_CNT and
  LAST_CELL_READ words end the current channel.
- Outputs are appended after ``counts`` rows already present (the caller may pre-load the open
  event of a previous batch there); a full output counts OUTPUT_OVERFLOW and drops the item.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from protocol.event import DecodeError, EventFlag
from protocol.words import Kind

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
N_STATE = 10

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


_NIBBLES = np.uint64(0xF000_F000_F000_F000)
_ADC_X4 = np.uint64(0x3000_3000_3000_3000)
_ALL_BITS = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def quad_view(words: np.ndarray) -> np.ndarray:
    """The rows as one flat uint64 array (4 words each) for the fast ADC scan; empty if the
    buffer is not C-contiguous or not 8-byte aligned (the kernel then scans word by word)."""
    if not words.flags.c_contiguous or words.ctypes.data % 8:
        return np.zeros(0, np.uint64)
    flat = words.reshape(-1)
    return flat[: flat.size // 4 * 4].view(np.uint64)


@njit(cache=True, nogil=True, inline="always")
def _adc_run_end(row, quads, base, j, lim):
    """First index in [j, lim) of ``row`` that is not an ADC_SAMPLE word (lim if none).

    ``base`` is the flat index of ``row[0]`` in ``quads`` (4 words per uint64, little-endian):
    a word is an ADC sample iff its top nibble is 3, so 4 words are tested at once; words
    before j in the first group are masked off, and the first other word is found by counting
    trailing zero bits. Without ``quads`` (unaligned buffer) the words are tested in 8s.
    """
    n_quads = quads.shape[0]
    g = base + j
    q = g >> 2
    if j < lim and q < n_quads:
        g_lim = base + lim
        y = ((quads[q] & _NIBBLES) ^ _ADC_X4) & (_ALL_BITS << np.uint64(16 * (g & 3)))
        if y == 0:
            q += 1
            while 4 * q + 16 <= g_lim and q + 4 <= n_quads:  # 16 words per step
                z = (
                    ((quads[q] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 1] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 2] & _NIBBLES) ^ _ADC_X4)
                    | ((quads[q + 3] & _NIBBLES) ^ _ADC_X4)
                )
                if z != 0:
                    break
                q += 4
            while 4 * q < g_lim and q < n_quads:
                y = (quads[q] & _NIBBLES) ^ _ADC_X4
                if y != 0:
                    break
                q += 1
        if y != 0:
            return min(4 * q + (trailing_zeros(y) >> 4) - base, lim)
        j = min(4 * q - base, lim)
    else:
        while j + 8 <= lim:
            m = 0
            for k in range(8):
                m |= (row[j + k] >> 12) ^ 3
            if m != 0:
                break
            j += 8
    while j < lim and (row[j] >> 12) == 3:
        j += 1
    return j


@njit(cache=True, nogil=True, inline="always")
def _copy_adc_run(words, adc, tbin, first_bin):
    """12-bit values of ADC words, at consecutive time bins from first_bin."""
    for k in range(words.shape[0]):
        adc[k] = words[k] & 0xFFF
        tbin[k] = first_bin + k


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


@njit(cache=True, nogil=True)
def _frame_body_end(row, off, avail, length, row_bytes, errors):
    """(end of the body, truncated) of the frame at ``row[off]`` with ``avail`` words present.

    Counts FRAME_SIZE_MISMATCH, TRAILING_WORDS and FRAME_TRUNCATED (module docstring).
    """
    size = np.int64(row[off + 1])
    if size != length - 2 * off:
        errors[_E_FSIZE] += 1
    last = avail - 1
    if length <= row_bytes:
        if avail - off >= 3 and row[last] == 0x000F:
            return last, False
        p = off + size // 2 - 1
        if off + 2 <= p < last and row[p] == 0x000F:
            for t in range(p + 1, avail):
                if row[t] != 0:
                    errors[_E_TRAILING] += 1
                    break
            return p, False
    errors[_E_FTRUNC] += 1
    return avail, True


@njit(cache=True, nogil=True)
def decode_batch(
    buf: np.ndarray,
    quads: np.ndarray,
    lengths: np.ndarray,
    has_lead: bool,
    check_seq: bool,
    eoe_offset: int,
    lut: np.ndarray,
    state: np.ndarray,
    counts: np.ndarray,
    ev: np.ndarray,
    ch: np.ndarray,
    tbin: np.ndarray,
    adc: np.ndarray,
    aux: np.ndarray,
    errors: np.ndarray,
) -> None:
    """Decode datagrams ``buf[d, :lengths[d] // 2]`` (uint16 rows), appending to the tables.

    ``quads`` is :func:`quad_view` of ``buf`` (or an empty uint64 array).

    ``counts`` (rows already used: events, channels, samples, aux) and ``state`` are updated in
    place; ``errors`` is incremented by DecodeError index. An event still open at the end stays
    the last row of ``ev`` (``state[ST_IN_EVENT] == 1``) with its channel/aux counts updated.
    """
    n_dg = min(buf.shape[0], lengths.shape[0])
    stride = buf.shape[1]
    cap_ev = ev.shape[0]
    cap_ch = ch.shape[0]
    cap_s = min(tbin.shape[0], adc.shape[0])
    cap_aux = aux.shape[0]
    in_ev = state[ST_IN_EVENT] != 0
    er = state[ST_EV_ROW]
    pk = state[ST_PEND_KIND]
    pl = state[ST_PEND_LEFT]
    cur = state[ST_CHAN_ROW]
    nb = state[ST_NEXT_BIN]
    last_lead = state[ST_LAST_LEAD]
    dg0 = state[ST_DATAGRAM]
    nw = state[ST_EV_WORDS]
    eoe_hi = state[ST_EOE_HI]
    nev = counts[C_EVENTS]
    nch = counts[C_CHANNELS]
    ns = counts[C_SAMPLES]
    naux = counts[C_AUX]
    off = 1 if has_lead else 0

    for d in range(n_dg):
        dgi = dg0 + d
        row = buf[d]
        length = max(lengths[d], 0)
        avail = min(length, 2 * stride) // 2
        if length & 1:
            errors[_E_SHORT] += 1
        nfw = avail - off
        if nfw < 2:
            if not length & 1:
                errors[_E_SHORT] += 1
            continue
        sof = np.int64(row[off])
        if (sof & 0xFE00) != 0x0800:
            errors[_E_NOT_DATA] += 1
            continue
        if has_lead and check_seq:
            lead = np.int64(row[0]) & 0x1FF
            if lead == last_lead:
                errors[_E_DUP] += 1
                continue
            if lead < 0x100 and last_lead >= 0 and lead != ((last_lead + 1) & 0xFF):
                errors[_E_SEQ] += 1
                if in_ev:
                    _close_event(ev, er, nch, naux, nw, dgi, _F_TRUNCATED | _F_SEQ)
                    in_ev = False
                cur = CHAN_NONE
                pk = PEND_NONE
                pl = 0
            last_lead = lead
        src = sof & 0x1F
        b0 = off + 2
        b1, truncated = _frame_body_end(row, off, avail, length, 2 * stride, errors)

        i = b0
        while i < b1:
            w = np.int64(row[i])
            if pl > 0:  # raw words after SOE / EOE
                if pk == PEND_SOE:
                    if in_ev:
                        k = SOE_RAW_WORDS - pl
                        if k < 3:
                            ev[er, EV_TIMESTAMP] |= w << (16 * k)
                        else:
                            ev[er, EV_COUNT] |= w << (16 * (k - 3))
                        nw += 1
                elif in_ev:
                    nw += 1
                    _end_event(ev, er, eoe_hi, w, nw, eoe_offset, nch, naux, dgi, errors)
                    in_ev = False
                    cur = CHAN_NONE
                pl -= 1
                i += 1
                continue

            if w >= 0xC000:  # channel header
                if in_ev:
                    nw += 1
                    chn = w & 0x7F
                    if chn > MAX_DAQ_CHANNEL:
                        errors[_E_CHAN_OOR] += 1
                        ev[er, EV_FLAGS] |= _F_OOR
                        cur = CHAN_DROPPED
                    elif nch < cap_ch:
                        ch[nch, CH_CARD] = (w >> 9) & 0x1F
                        ch[nch, CH_CHIP] = (w >> 7) & 0x3
                        ch[nch, CH_CHANNEL] = chn
                        ch[nch, CH_SAMPLE_START] = ns
                        ch[nch, CH_N_SAMPLES] = 0
                        cur = nch
                        nch += 1
                        nb = 0
                        if i + 1 < b1 and (row[i + 1] & 0xFE00) == 0x0E00:  # ZS: its first bin
                            nb = np.int64(row[i + 1]) & 0x1FF
                            nw += 1
                            i += 1
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                        cur = CHAN_DROPPED
                else:
                    errors[_E_ORPHAN] += 1
                i += 1
                continue

            if (w & 0xF000) == 0x3000:  # ADC sample: copy the whole run
                if not in_ev:
                    errors[_E_ORPHAN] += 1
                    i += 1
                    continue
                if cur >= 0:
                    room = min(cap_s - ns, N_TIME_BINS - nb)
                    if room > 0:
                        lim = min(b1, i + room)
                        j = _adc_run_end(row, quads, d * stride, i + 1, lim)
                        _copy_adc_run(row[i:j], adc[ns:], tbin[ns:], nb)
                        run = j - i
                        ch[cur, CH_N_SAMPLES] += run
                        ns += run
                        nb += run
                        nw += run
                        i = j
                        continue
                    if nb >= N_TIME_BINS:
                        errors[_E_BIN_OOR] += 1
                        ev[er, EV_FLAGS] |= _F_OOR
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                    nb += 1
                elif cur == CHAN_NONE:
                    errors[_E_UNEXPECTED] += 1
                    ev[er, EV_FLAGS] |= _F_BAD
                nw += 1
                i += 1
                continue

            if (w & 0xFE00) == 0x0E00 and in_ev and cur >= 0:  # TIME_BIN_IX (ZS), fast path
                nb = w & 0x1FF
                nw += 1
                i += 1
                continue

            kind = lut[w]
            i += 1
            if not in_ev:
                if kind == _K_SOE:
                    pass  # opened below
                elif kind == _K_NULL:
                    continue
                elif kind == _K_EOE:
                    errors[_E_ORPHAN] += 1
                    pk = PEND_EOE
                    pl = 1
                    continue
                elif kind in (_K_TIME_BIN_IX, _K_HIT_CNT, _K_LAST_CELL):
                    errors[_E_ORPHAN] += 1
                    continue
                elif kind == _K_UNKNOWN:
                    errors[_E_UNKNOWN] += 1
                    continue
                else:
                    errors[_E_UNEXPECTED] += 1
                    continue
            else:
                nw += 1
                if kind == _K_EOE:
                    eoe_hi = w & 0xF
                    if i < b1:  # the size word is in this frame
                        nw += 1
                        _end_event(
                            ev, er, eoe_hi, np.int64(row[i]), nw, eoe_offset, nch, naux, dgi, errors
                        )
                        i += 1
                        in_ev = False
                        cur = CHAN_NONE
                    else:
                        pk = PEND_EOE
                        pl = 1
                    continue
                if kind == _K_TIME_BIN_IX:
                    if cur >= 0:
                        nb = w & 0x1FF
                    elif cur == CHAN_NONE:
                        errors[_E_UNEXPECTED] += 1
                        ev[er, EV_FLAGS] |= _F_BAD
                    continue
                if kind in (_K_HIT_CNT, _K_LAST_CELL):
                    cur = CHAN_NONE
                    if naux < cap_aux:
                        if kind == _K_HIT_CNT:
                            aux[naux, AUX_KIND] = AUX_HIT_COUNT
                            aux[naux, AUX_CARD] = (w >> 9) & 0x1F
                            aux[naux, AUX_CHIP] = (w >> 7) & 0x3
                            aux[naux, AUX_VALUE] = w & 0x7F
                        else:
                            aux[naux, AUX_KIND] = AUX_LAST_CELL
                            aux[naux, AUX_CARD] = -1
                            aux[naux, AUX_CHIP] = (w >> 10) & 0x3
                            aux[naux, AUX_VALUE] = w & 0x3FF
                        naux += 1
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                    continue
                if kind == _K_NULL:
                    continue
                if kind != _K_SOE:
                    errors[_E_UNKNOWN if kind == _K_UNKNOWN else _E_UNEXPECTED] += 1
                    ev[er, EV_FLAGS] |= _F_BAD
                    continue
                errors[_E_MISSING_EOE] += 1
                _close_event(ev, er, nch, naux, nw - 1, dgi, _F_TRUNCATED)
                in_ev = False

            # START_OF_EVENT (outside an event now)
            pk = PEND_SOE
            pl = SOE_RAW_WORDS
            cur = CHAN_NONE
            nb = 0
            if nev < cap_ev:
                er = nev
                nev += 1
                for c in range(N_EV_COLS):
                    ev[er, c] = 0
                ev[er, EV_TYPE] = w & 0x7
                ev[er, EV_SOURCE] = src
                ev[er, EV_CHAN_START] = nch
                ev[er, EV_AUX_START] = naux
                ev[er, EV_FIRST_DGRAM] = dgi
                ev[er, EV_LAST_DGRAM] = dgi
                ev[er, EV_SIZE_DECLARED] = -1
                in_ev = True
                nw = 1
                if i + SOE_RAW_WORDS <= b1:  # the 5 words are in this frame
                    ev[er, EV_TIMESTAMP] = (
                        np.int64(row[i]) | np.int64(row[i + 1]) << 16 | np.int64(row[i + 2]) << 32
                    )
                    ev[er, EV_COUNT] = np.int64(row[i + 3]) | np.int64(row[i + 4]) << 16
                    nw += SOE_RAW_WORDS
                    i += SOE_RAW_WORDS
                    pk = PEND_NONE
                    pl = 0
            else:
                errors[_E_OVERFLOW] += 1

        if truncated:  # the words that followed are lost: resync at the next frame
            if in_ev:
                ev[er, EV_FLAGS] |= _F_FTRUNC
                cur = CHAN_NONE
                if pk == PEND_EOE and pl > 0:
                    _close_event(ev, er, nch, naux, nw, dgi, _F_TRUNCATED)
                    in_ev = False
            pk = PEND_NONE
            pl = 0

    if in_ev:
        ev[er, EV_N_CHAN] = nch - ev[er, EV_CHAN_START]
        ev[er, EV_N_AUX] = naux - ev[er, EV_AUX_START]
        ev[er, EV_LAST_DGRAM] = dg0 + n_dg - 1
        ev[er, EV_SIZE_COUNTED] = 2 * nw
    state[ST_IN_EVENT] = 1 if in_ev else 0
    state[ST_EV_ROW] = er
    state[ST_PEND_KIND] = pk
    state[ST_PEND_LEFT] = pl
    state[ST_CHAN_ROW] = cur
    state[ST_NEXT_BIN] = nb
    state[ST_LAST_LEAD] = last_lead
    state[ST_DATAGRAM] = dg0 + n_dg
    state[ST_EV_WORDS] = nw
    state[ST_EOE_HI] = eoe_hi
    counts[C_EVENTS] = nev
    counts[C_CHANNELS] = nch
    counts[C_SAMPLES] = ns
    counts[C_AUX] = naux
