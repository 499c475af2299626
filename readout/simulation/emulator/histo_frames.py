"""MFRAME replies of the emulated card's histograms: ``hbusy get`` and ``hhit get``."""

from __future__ import annotations

import numpy as np

from agetdaq.protocol import words as w
from agetdaq.protocol.commands import encode_mframe
from agetdaq.readout.simulation.emulator.card_histos import HBUSY_BIN_US


def _stats9(values: np.ndarray, bin_width: float) -> list[int]:
    nz = np.flatnonzero(values)
    n = int(values.sum())
    centers = np.arange(values.size) * bin_width
    mean = float((values * centers).sum() / n) if n else 0.0
    sd = float(np.sqrt((values * (centers - mean) ** 2).sum() / n)) if n else 0.0
    lo, hi = (int(nz[0]), int(nz[-1])) if nz.size else (0, 0)
    return [
        0,
        values.size - 1,
        int(bin_width),
        values.size,
        lo,
        hi,
        int(mean * 100),
        int(sd * 100),
        n,
    ]


def encode_latency_histo(prefix: int, hist: np.ndarray, card_id: int) -> bytes:
    """``hbusy get`` MFRAME: prefix, null word, 9 x u32 stats, non-empty bins as
    (LAT_HISTO_BIN | bin, u32 count) (PROTOCOL.md §1.2); bins of HBUSY_BIN_US [I]."""
    payload = [prefix, 0]
    for v in _stats9(hist, HBUSY_BIN_US):
        payload += w.u32_words(v)
    for b in np.flatnonzero(hist)[:300]:
        payload += [w.lat_histo_bin(int(b)), *w.u32_words(int(hist[b]))]
    return encode_mframe(payload, card_id)


def encode_hit_histo(chip: int, hist: np.ndarray, card_id: int) -> bytes:
    """``hhit get`` MFRAME: CH_HIT_CNT_HISTO | chip, null word, 9 x u32 stats, u32 per bin."""
    payload = [w.CH_HIT_CNT_HISTO | chip, 0]
    for v in _stats9(hist, 1.0):
        payload += w.u32_words(v)
    for v in hist:
        payload += w.u32_words(int(v))
    return encode_mframe(payload, card_id)
