"""numba kernel decoding a batch of data datagrams into flat event / channel / sample tables.

Semantics (the plain-Python twin is :mod:`agetdaq.protocol.decode_ref`; tests compare them):

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

Validation (``validate``, the DAQ's mode) judges a data frame as a whole before anything of it
joins an event spanning frames:

- before decoding: a frame of another card than ``card_id`` (SOF id; ``card_id`` -1 = any) is
  refused (FOREIGN_CARD, REJECTED_DATAGRAM); a sequence number (no first flag) that is neither
  within ``window`` ahead of the last accepted one nor within ``window`` behind it cannot come
  from the board, which only sends what it was granted: refused whole (OUT_OF_WINDOW), the
  sequence state untouched (``window`` 128 = every number passes). RESYNC_RUN such numbers in a
  row, each one more than the one before, are the board's after all (its first reply was
  lost): the last of them is taken as after a gap.
- once the stream is in step (an event closed on its size word since the sequence last broke):
  a frame with a flaw no in-step frame can have (size word or EOF wrong, trailing words, an
  unknown or misplaced word, a channel index > 78, a channel or hit count of another card, data
  outside an event, a START_OF_EVENT inside one, but in a first reply: a rebooted card cuts its
  open event) is decoded to its end (every flaw counted),
  then undone: the tables and the state are as they were before it (REJECTED_DATAGRAM). The
  next frame continues the stream: an event around a bad frame stays exact, and a real frame
  that was bad leaves a sequence gap behind it. Before the stream is in step (start, after a
  gap) frames are decoded item by item as above (a cut event's tail is orphan data there).
- a time bin past 511 and an EOE size mismatch stay item flaws (PROTOCOL.md §1.4).
- ``verdict[d]``: V_DECODED, V_SKIPPED (not a data frame), V_DUPLICATE, V_OUT_OF_WINDOW,
  V_REJECTED.

The kernel is :func:`decode_batch` (:mod:`agetdaq.protocol.decode_machine`); this module is where
callers find it together with the table layout (:mod:`agetdaq.protocol.decode_tables`) and the
ADC-run scan (:mod:`agetdaq.protocol.decode_scan`).
"""

from __future__ import annotations

from agetdaq.protocol.decode_machine import decode_batch
from agetdaq.protocol.decode_scan import _adc_run_end, quad_view
from agetdaq.protocol.decode_tables import (
    AUX_CARD,
    AUX_CHIP,
    AUX_HIT_COUNT,
    AUX_KIND,
    AUX_LAST_CELL,
    AUX_VALUE,
    C_AUX,
    C_CHANNELS,
    C_EVENTS,
    C_SAMPLES,
    CH_CARD,
    CH_CHANNEL,
    CH_CHIP,
    CH_N_SAMPLES,
    CH_SAMPLE_START,
    CHAN_DROPPED,
    CHAN_NONE,
    EV_AUX_START,
    EV_CHAN_START,
    EV_COUNT,
    EV_FIRST_DGRAM,
    EV_FLAGS,
    EV_LAST_DGRAM,
    EV_N_AUX,
    EV_N_CHAN,
    EV_SIZE_COUNTED,
    EV_SIZE_DECLARED,
    EV_SOURCE,
    EV_TIMESTAMP,
    EV_TYPE,
    MAX_DAQ_CHANNEL,
    N_AUX_COLS,
    N_CH_COLS,
    N_COUNTS,
    N_EV_COLS,
    N_STATE,
    N_TIME_BINS,
    PEND_EOE,
    PEND_NONE,
    PEND_SOE,
    SEQ_WINDOW_ALL,
    SOE_RAW_WORDS,
    ST_CHAN_ROW,
    ST_DATAGRAM,
    ST_EOE_HI,
    ST_EV_ROW,
    ST_EV_WORDS,
    ST_IN_EVENT,
    ST_LAST_LEAD,
    ST_NEXT_BIN,
    ST_PEND_KIND,
    ST_PEND_LEFT,
    ST_SYNCED,
    V_DECODED,
    V_DUPLICATE,
    V_OUT_OF_WINDOW,
    V_REJECTED,
    V_SKIPPED,
    new_state,
    output_bounds,
)

__all__ = [
    "AUX_CARD",
    "AUX_CHIP",
    "AUX_HIT_COUNT",
    "AUX_KIND",
    "AUX_LAST_CELL",
    "AUX_VALUE",
    "CHAN_DROPPED",
    "CHAN_NONE",
    "CH_CARD",
    "CH_CHANNEL",
    "CH_CHIP",
    "CH_N_SAMPLES",
    "CH_SAMPLE_START",
    "C_AUX",
    "C_CHANNELS",
    "C_EVENTS",
    "C_SAMPLES",
    "EV_AUX_START",
    "EV_CHAN_START",
    "EV_COUNT",
    "EV_FIRST_DGRAM",
    "EV_FLAGS",
    "EV_LAST_DGRAM",
    "EV_N_AUX",
    "EV_N_CHAN",
    "EV_SIZE_COUNTED",
    "EV_SIZE_DECLARED",
    "EV_SOURCE",
    "EV_TIMESTAMP",
    "EV_TYPE",
    "MAX_DAQ_CHANNEL",
    "N_AUX_COLS",
    "N_CH_COLS",
    "N_COUNTS",
    "N_EV_COLS",
    "N_STATE",
    "N_TIME_BINS",
    "PEND_EOE",
    "PEND_NONE",
    "PEND_SOE",
    "SEQ_WINDOW_ALL",
    "SOE_RAW_WORDS",
    "ST_CHAN_ROW",
    "ST_DATAGRAM",
    "ST_EOE_HI",
    "ST_EV_ROW",
    "ST_EV_WORDS",
    "ST_IN_EVENT",
    "ST_LAST_LEAD",
    "ST_NEXT_BIN",
    "ST_PEND_KIND",
    "ST_PEND_LEFT",
    "ST_SYNCED",
    "V_DECODED",
    "V_DUPLICATE",
    "V_OUT_OF_WINDOW",
    "V_REJECTED",
    "V_SKIPPED",
    "_adc_run_end",
    "decode_batch",
    "new_state",
    "output_bounds",
    "quad_view",
]
