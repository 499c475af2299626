"""numba kernels of the emulated card's data path (the steps of
:mod:`agetdaq.readout.simulation.emulator.cardproc`).

Discriminators, the read mask, the event body writer (pedestal equalisation, zero suppression,
hit counts) and the pedestal histograms; the plain-Python twin is
:func:`agetdaq.readout.simulation.emulator.cardproc.reference_event`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.simulation.emulator.cardsettings import (
    C_ALL,
    C_FPN,
    C_ZS_POL,
    N_CHIPS,
    N_SLOTS,
    P_ASIC_MASK,
    P_CARD,
    P_EMIT_EMPTY,
    P_EMIT_HIT_CNT,
    P_EMIT_LCR,
    P_FORCEON_ALL,
    P_KEEP_RST,
    P_MODIFY_HIT,
    P_NBINS,
    P_POST,
    P_PRE,
    P_RST_LEN,
    P_SUB_PED,
    P_ZS,
    ZS_IGNORED_LAST_BINS,
)


@njit(cache=True, nogil=True)
def discriminate_kernel(
    raw: np.ndarray, base: np.ndarray, level: np.ndarray, up: bool, n_bins: int, hit: np.ndarray
) -> None:
    """AGET discriminators: ``hit[c, r]`` when the row leaves ``base`` by more than ``level``
    in the signal direction (``up``: above the baseline) anywhere in the first n_bins cells."""
    for c in range(raw.shape[0]):
        for r in range(raw.shape[1]):
            b = base[c, r]
            lv = level[c, r]
            fired = False
            for k in range(n_bins):
                d = raw[c, r, k] - b
                if (d > lv) if up else (-d > lv):
                    fired = True
                    break
            hit[c, r] = fired


@njit(cache=True, nogil=True)
def read_mask_kernel(
    hit: np.ndarray,
    forceon: np.ndarray,
    forceoff: np.ndarray,
    params: np.ndarray,
    chip_params: np.ndarray,
    source_rows: np.ndarray,
    slot_kind: np.ndarray,
    mask: np.ndarray,
) -> None:
    """Which (chip, DAQ slot) the card reads this event (rules: the cardproc docstring)."""
    rst = params[P_RST_LEN]
    for c in range(mask.shape[0]):
        masked = (params[P_ASIC_MASK] >> c) & 1
        all_ch = chip_params[c, C_ALL] != 0 or params[P_FORCEON_ALL] != 0
        for i in range(mask.shape[1]):
            kind = slot_kind[rst, i]
            take = False
            if masked == 0 and kind != 0:
                if params[P_MODIFY_HIT] != 0 and forceoff[c, i]:
                    take = False
                elif kind == 3:
                    take = params[P_KEEP_RST] != 0
                elif all_ch or (params[P_MODIFY_HIT] != 0 and forceon[c, i]):
                    take = True
                elif kind == 2:
                    take = chip_params[c, C_FPN] != 0
                else:
                    take = hit[c, source_rows[rst, i]]
            mask[c, i] = take


@njit(cache=True, nogil=True)
def _sample(raw: np.ndarray, c: int, row: int, k: int, ped: int, sub: bool) -> int:
    v = int(raw[c, row, k])
    if sub:
        v += ped
    if v < 0:
        return 0
    if v > 4095:
        return 4095
    return v


@njit(cache=True, nogil=True)
def encode_body_kernel(
    raw: np.ndarray,
    hit: np.ndarray,
    mask: np.ndarray,
    ped: np.ndarray,
    thr: np.ndarray,
    params: np.ndarray,
    chip_params: np.ndarray,
    source_rows: np.ndarray,
    slot_kind: np.ndarray,
    last_cells: np.ndarray,
    out: np.ndarray,
    pos: int,
    stats: np.ndarray,
) -> int:
    """Write the event body (between the SOE words and EOE) at ``out[pos:]``; return the end.

    ``stats[c, 0]`` = slots read of chip c (for the dead time), ``stats[c, 1]`` = hit count.
    ``out`` must hold 4 + 4 + 4 x 79 x (1 + 2 x n_bins) words past ``pos`` (worst case).
    """
    card = params[P_CARD] & 0x1F
    rst = params[P_RST_LEN]
    nb = params[P_NBINS]
    sub = params[P_SUB_PED] != 0
    zs = params[P_ZS] != 0
    pre = params[P_PRE]
    post = params[P_POST]
    keep = np.zeros(nb, dtype=np.bool_)
    p = pos
    if params[P_EMIT_LCR] != 0:
        for c in range(4):
            out[p] = 0x1000 | (c << 10) | (last_cells[c] & 0x3FF)
            p += 1
    deferred = np.zeros(mask.shape[0], dtype=np.bool_)
    for c in range(mask.shape[0]):
        if (params[P_ASIC_MASK] >> c) & 1:
            stats[c, 0] = 0
            stats[c, 1] = 0
            continue
        n_hit = 0
        for i in range(mask.shape[1]):
            if slot_kind[rst, i] == 1 and hit[c, source_rows[rst, i]]:
                n_hit += 1
        stats[c, 1] = n_hit
        pol = chip_params[c, C_ZS_POL]
        n_read = 0
        n_written = 0
        for i in range(mask.shape[1]):
            if not mask[c, i]:
                continue
            n_read += 1
            row = source_rows[rst, i]
            pd = int(ped[c, i])
            header = 0xC000 | (card << 9) | (c << 7) | (i & 0x7F)
            if not zs:
                out[p] = header
                p += 1
                for k in range(nb):
                    out[p] = 0x3000 | _sample(raw, c, row, k, pd, sub)
                    p += 1
                n_written += 1
                continue
            th = int(thr[c, i])
            keep[:] = False
            any_kept = False
            for k in range(nb - ZS_IGNORED_LAST_BINS):
                v = _sample(raw, c, row, k, pd, sub)
                over = v > th if pol == 0 else v < th
                if over:
                    lo = max(0, k - pre)
                    hi = min(nb - 1, k + post)
                    for j in range(lo, hi + 1):
                        keep[j] = True
                    any_kept = True
            if not any_kept and params[P_EMIT_EMPTY] == 0:
                continue
            out[p] = header
            p += 1
            n_written += 1
            prev = -2
            for k in range(nb):
                if keep[k]:
                    if k != prev + 1:
                        out[p] = 0x0E00 | k
                        p += 1
                    out[p] = 0x3000 | _sample(raw, c, row, k, pd, sub)
                    p += 1
                    prev = k
        stats[c, 0] = n_read
        if params[P_EMIT_HIT_CNT] != 0:
            if n_written > 0:
                out[p] = 0x8000 | (card << 9) | (c << 7) | min(n_hit, 127)
                p += 1
            else:
                deferred[c] = True
    for c in range(mask.shape[0]):
        if deferred[c]:
            out[p] = 0x8000 | (card << 9) | (c << 7) | min(stats[c, 1], 127)
            p += 1
    return p


def body_words_bound(n_bins: int = 512) -> int:
    """Worst-case body words of one event."""
    return 8 + N_CHIPS * N_SLOTS * (1 + 2 * n_bins)


@njit(cache=True, nogil=True)
def fill_pedestal_histos_kernel(
    raw: np.ndarray,
    mask: np.ndarray,
    ped: np.ndarray,
    params: np.ndarray,
    source_rows: np.ndarray,
    offset: np.ndarray,
    counts: np.ndarray,
) -> None:
    """serve_target 2: add every sample of every read slot (after ``subtract_ped``) to its
    histogram: ``counts[c, i, v - offset[c, i]]`` for bins inside 0..counts.shape[2]-1."""
    rst = params[P_RST_LEN]
    nb = params[P_NBINS]
    sub = params[P_SUB_PED] != 0
    n_hbins = counts.shape[2]
    for c in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if not mask[c, i]:
                continue
            row = source_rows[rst, i]
            pd = int(ped[c, i])
            off = int(offset[c, i])
            for k in range(nb):
                b = _sample(raw, c, row, k, pd, sub) - off
                if 0 <= b < n_hbins:
                    counts[c, i, b] += 1
