"""Corrected waveforms of sparse-processed events, laid out one event at a time on demand.

The monitor shows one sampled event a few times a second; a sparse batch keeps the corrected value
of every strip sample (``corr``) and each strip's background (``bg``), and :class:`SparseWaveforms`
lays out the (strips, 512) waveforms of the event asked for, equal to what the dense path writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.waveforms import (
    N_CARDS,
    N_CHIPS,
    N_INDICES,
    N_SAMPLES,
    FlatBatch,
)


@njit(cache=True, nogil=True)
def lay_out_event(e, chan_start, n_chan, card, chip, channel, sample_start, n_samples, bins,
                  lut, corr, bg, out):  # fmt: skip
    """out (S, 512): every strip at its background, then the corrected samples of event e."""
    n_s = out.shape[0]
    for s in range(n_s):
        out[s, :] = bg[e, s]
    for r in range(chan_start[e], chan_start[e] + n_chan[e]):
        ca, ch, ix = card[r], chip[r], channel[r]
        if ca < 0 or ca >= N_CARDS or ch < 0 or ch >= N_CHIPS or ix < 0 or ix >= N_INDICES:
            continue
        s = lut[ca, ch, ix]
        if s < 0:
            continue
        for i in range(sample_start[r], sample_start[r] + n_samples[r]):
            t = bins[i]
            if t < N_SAMPLES:
                out[s, t] = corr[i]


@dataclass
class SparseWaveforms:
    """Indexable like the dense (n, S, 512) waveforms: ``w[i]`` lays out event i."""

    flat: FlatBatch
    lut: np.ndarray
    corr: np.ndarray  # float32, one per sample of ``flat``
    bg: np.ndarray  # float32 (n, S)

    def __len__(self) -> int:
        return int(self.bg.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self), int(self.bg.shape[1]), N_SAMPLES)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"event {i} of {n}")
        f = self.flat
        out = np.empty(self.shape[1:], np.float32)
        lay_out_event(
            i % n, f.chan_start, f.n_chan, f.card, f.chip, f.channel, f.sample_start,
            f.n_samples, f.bins, self.lut, self.corr, self.bg, out,
        )  # fmt: skip
        return out
