"""The event block's words (PROTOCOL.md §1.4): one :class:`~agetdaq.protocol.event.Event` ->
uint16 words, by :func:`event_words` and the array kernel :func:`write_event_kernel`::

    SOE(type) ts_lo ts_mid ts_hi evcnt_lo evcnt_hi
    [4 x LAST_CELL_READ]                       when the event has last cells
    per channel: header, [TIME_BIN_IX] ADC...  TIME_BIN_IX before each run of consecutive bins (ZS)
    HIT_CNT words of a chip                    right after the last channel of that chip
    EOE(size[19:16]) size[15:0]

EOE size convention (a guess; PROTOCOL.md §1.4 leaves it open): the size counts the bytes of the
whole event block, from the START_OF_EVENT word to the word after END_OF_EVENT inclusive, i.e.
``2 x words + EOE_SIZE_OFFSET_BYTES`` with ``EOE_SIZE_OFFSET_BYTES = 0``. Other conventions are
an offset away (e.g. -16 to exclude SOE + its 5 words + EOE + size); the decoder takes the offset
as a parameter and only counts a mismatch, never dropping data for it.

The words are cut into frames and datagrams by :mod:`agetdaq.protocol.encode`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.protocol.event import Event
from agetdaq.protocol.words import (
    ADC_SAMPLE,
    CHAN_HIT_CNT,
    CHAN_HIT_IX,
    END_OF_EVENT,
    LAST_CELL_READ,
    MAX_ADC,
    MAX_CARD,
    MAX_CELL,
    MAX_CHAN,
    MAX_CHIP,
    MAX_EOE_SIZE,
    MAX_TIME_BIN,
    START_OF_EVENT,
    TIME_BIN_IX,
)

EOE_SIZE_OFFSET_BYTES = 0
"""EOE size = 2 x (words from SOE to the word after EOE, inclusive) + this offset."""

_EMPTY_I64 = np.zeros(0, dtype=np.int64)


def event_words_bound(n_channels: int, n_samples: int, n_last_cells: int, n_hit_counts: int) -> int:
    """Upper bound on the words of one event block (ZS worst case: a TIME_BIN_IX per sample)."""
    return 8 + n_last_cells + n_channels + 2 * n_samples + n_hit_counts


@njit(cache=True, nogil=True)
def write_event_kernel(
    out: np.ndarray,
    pos: int,
    event_type: int,
    timestamp: int,
    event_count: int,
    lc_chips: np.ndarray,
    lc_cells: np.ndarray,
    cards: np.ndarray,
    chips: np.ndarray,
    chans: np.ndarray,
    offsets: np.ndarray,
    bins: np.ndarray,
    adc: np.ndarray,
    hc_cards: np.ndarray,
    hc_chips: np.ndarray,
    hc_counts: np.ndarray,
    zs: bool,
    eoe_size: int,
) -> int:
    """Write one event block into ``out[pos:]``; return the word count, or -1 if it cannot fit.

    Channel c owns ``bins/adc[offsets[c]:offsets[c+1]]``. Without ``zs`` the bins are assumed
    to be 0..n-1 and are not written. ``eoe_size < 0`` writes the size by the module convention.
    Fields are masked to their widths; validation is the caller's job (see :func:`event_words`).
    """
    n_ch = chans.shape[0]
    n_hc = hc_counts.shape[0]
    n_s = offsets[n_ch] - offsets[0] if n_ch > 0 else 0
    bound = 8 + lc_chips.shape[0] + n_ch + 2 * n_s + n_hc
    if pos < 0 or pos + bound > out.shape[0]:
        return -1
    p = pos
    out[p] = START_OF_EVENT | (event_type & 0x7)
    out[p + 1] = timestamp & 0xFFFF
    out[p + 2] = (timestamp >> 16) & 0xFFFF
    out[p + 3] = (timestamp >> 32) & 0xFFFF
    out[p + 4] = event_count & 0xFFFF
    out[p + 5] = (event_count >> 16) & 0xFFFF
    p += 6
    for k in range(lc_chips.shape[0]):
        out[p] = LAST_CELL_READ | ((lc_chips[k] & 0x3) << 10) | (lc_cells[k] & 0x3FF)
        p += 1
    used = np.zeros(n_hc, dtype=np.bool_)
    for c in range(n_ch):
        card = cards[c] & 0x1F
        chip = chips[c] & 0x3
        out[p] = CHAN_HIT_IX | (card << 9) | (chip << 7) | (chans[c] & 0x7F)
        p += 1
        prev = -2
        for s in range(offsets[c], offsets[c + 1]):
            if zs:
                b = bins[s] & 0x1FF
                if b != prev + 1:
                    out[p] = TIME_BIN_IX | b
                    p += 1
                prev = b
            out[p] = ADC_SAMPLE | (adc[s] & 0xFFF)
            p += 1
        last_of_chip = (
            c == n_ch - 1 or (cards[c + 1] & 0x1F) != card or (chips[c + 1] & 0x3) != chip
        )
        if last_of_chip:
            for h in range(n_hc):
                if not used[h] and (hc_cards[h] & 0x1F) == card and (hc_chips[h] & 0x3) == chip:
                    out[p] = CHAN_HIT_CNT | (card << 9) | (chip << 7) | (hc_counts[h] & 0x7F)
                    p += 1
                    used[h] = True
    for h in range(n_hc):
        if not used[h]:
            hc_word = (hc_cards[h] & 0x1F) << 9 | (hc_chips[h] & 0x3) << 7 | (hc_counts[h] & 0x7F)
            out[p] = CHAN_HIT_CNT | hc_word
            p += 1
    n = p - pos + 2
    size = 2 * n + EOE_SIZE_OFFSET_BYTES if eoe_size < 0 else eoe_size
    size &= 0xFFFFF
    out[p] = END_OF_EVENT | (size >> 16)
    out[p + 1] = size & 0xFFFF
    return n


def _check_range(name: str, values: np.ndarray, hi: int) -> None:
    if values.size and (int(values.min()) < 0 or int(values.max()) > hi):
        raise ValueError(f"{name} out of range 0..{hi}")


def event_words(
    event: Event, *, zero_suppressed: bool | None = None, eoe_size: int | None = None
) -> np.ndarray:
    """The uint16 words of one event block (layout and EOE size convention: module docstring).

    ``zero_suppressed=None`` picks ZS iff some channel's bins are not exactly 0..n-1; ``False``
    requires that. ``eoe_size`` overrides the size written after EOE (for fault injection).
    Hit counts are written after the last channel of their (card, chip), in list order; counts
    of chips without channels go last. Raises ValueError on out-of-range fields.
    """
    if not 0 <= event.event_type <= 7:
        raise ValueError(f"event_type={event.event_type} out of range 0..7")
    if not 0 <= event.timestamp < 1 << 48:
        raise ValueError(f"timestamp={event.timestamp} out of 48-bit range")
    if not 0 <= event.event_count < 1 << 32:
        raise ValueError(f"event_count={event.event_count} out of 32-bit range")
    if eoe_size is not None and not 0 <= eoe_size <= MAX_EOE_SIZE:
        raise ValueError(f"eoe_size={eoe_size} out of range 0..{MAX_EOE_SIZE}")
    chans = event.channels
    keys = np.array([c.key() for c in chans], dtype=np.int64).reshape(-1, 3)
    _check_range("card", keys[:, 0], MAX_CARD)
    _check_range("chip", keys[:, 1], MAX_CHIP)
    _check_range("channel", keys[:, 2], MAX_CHAN)
    n_bins = np.array([np.size(c.bins) for c in chans], dtype=np.int64)
    n_adc = np.array([np.size(c.adc) for c in chans], dtype=np.int64)
    if not np.array_equal(n_bins, n_adc):
        k = int(np.flatnonzero(n_bins != n_adc)[0])
        raise ValueError(f"channel {chans[k].key()}: {n_bins[k]} bins but {n_adc[k]} ADC values")
    offsets = np.zeros(len(chans) + 1, dtype=np.int64)
    np.cumsum(n_bins, out=offsets[1:])
    bins = (
        np.concatenate([np.ravel(c.bins) for c in chans]).astype(np.int64) if chans else _EMPTY_I64
    )
    adc = np.concatenate([np.ravel(c.adc) for c in chans]).astype(np.int64) if chans else _EMPTY_I64
    not_full = bins != np.arange(bins.size) - np.repeat(offsets[:-1], n_bins)  # bins 0..n-1?
    if zero_suppressed is None:
        zero_suppressed = bool(not_full.any())
    elif not zero_suppressed and not_full.any():
        bad = chans[int(np.searchsorted(offsets, np.argmax(not_full), side="right")) - 1].key()
        raise ValueError(f"full readout needs bins 0..n-1 (channel {bad}); use zero_suppressed")
    _check_range("time bin", bins, MAX_TIME_BIN)
    _check_range("adc", adc, MAX_ADC)
    lc = np.array(event.last_cells, dtype=np.int64).reshape(-1, 2)
    _check_range("last-cell chip", lc[:, 0], MAX_CHIP)
    _check_range("last cell", lc[:, 1], MAX_CELL)
    hc = np.array(event.hit_counts, dtype=np.int64).reshape(-1, 3)
    _check_range("hit-count card", hc[:, 0], MAX_CARD)
    _check_range("hit-count chip", hc[:, 1], MAX_CHIP)
    _check_range("hit count", hc[:, 2], MAX_CHAN)
    out = np.empty(event_words_bound(len(chans), bins.size, len(lc), len(hc)), dtype=np.uint16)
    n = write_event_kernel(
        out, 0, event.event_type, event.timestamp, event.event_count,
        lc[:, 0].copy(), lc[:, 1].copy(),
        keys[:, 0].copy(), keys[:, 1].copy(), keys[:, 2].copy(), offsets, bins, adc,
        hc[:, 0].copy(), hc[:, 1].copy(), hc[:, 2].copy(),
        bool(zero_suppressed), -1 if eoe_size is None else eoe_size,
    )  # fmt: skip
    if n > 0 and eoe_size is None and 2 * n + EOE_SIZE_OFFSET_BYTES > MAX_EOE_SIZE:
        raise ValueError(f"event of {2 * n} bytes exceeds the 20-bit EOE size field")
    return out[:n]
