"""Do the pedestals in use fit the data? Per-strip baseline offsets read from the channel rows.

Each strip row of an event gives one estimate of where its baseline sits, minus the baseline the
processing subtracts (the pedestal table, or the running baseline):

- a complete row (512 bins in order: full readout) gives the mean of its pre-trigger window;
- a zero-suppressed row gives its first sample: the card keeps ``zs_pre`` bins before the first
  sample above its threshold (8 in the shipped scripts), so that sample is on the baseline
  whatever the pulse's size (a row without pre-samples reads ~5 sigma high).

The last ``depth`` estimates of every strip are kept in a ring; :func:`offsets` gives their median
per strip. With a table that fits, a strip reads within ~1 noise sigma of 0 (complete rows within a
fraction of an ADC); a table measured before an upload of the card's pedestal equalisation (or a
board that lost its equalisation) puts strips tens of ADC away.
"""

from __future__ import annotations

import numpy as np
from numba import njit

N_SAMPLES = 512


@njit(cache=True, nogil=True)
def baseline_offsets(
    chan_start, n_chan, card, chip, channel, sample_start, n_samples, bins, adc,
    lut, base, b0, b1, vals, count,
):  # fmt: skip
    """Push (row estimate - base[s]) of every strip row into vals[s, count[s] % depth] and count
    it. Rows outside the layout (FPN, reset, unknown addresses) are skipped."""
    n_cards, n_chips, n_idx = lut.shape
    depth = vals.shape[1]
    for e in range(chan_start.shape[0]):
        for r in range(chan_start[e], chan_start[e] + n_chan[e]):
            ca, ch, ix = card[r], chip[r], channel[r]
            if ca < 0 or ca >= n_cards or ch < 0 or ch >= n_chips or ix < 0 or ix >= n_idx:
                continue
            s = lut[ca, ch, ix]
            if s < 0:
                continue
            lo, n = sample_start[r], n_samples[r]
            if n <= 0:
                continue
            if n == N_SAMPLES and bins[lo] == 0 and bins[lo + n - 1] == N_SAMPLES - 1:
                acc = 0.0
                for t in range(b0, b1):
                    acc += adc[lo + t]
                est = acc / (b1 - b0)
            else:
                est = float(adc[lo])
            vals[s, count[s] % depth] = est - base[s]
            count[s] += 1


def baseline_offsets_ref(flat, lut, base, window, vals, count) -> None:
    """Plain-Python twin of :func:`baseline_offsets` (``flat``: a FlatBatch)."""
    b0, b1 = window
    depth = vals.shape[1]
    for e in range(flat.n_events):
        for r in range(flat.chan_start[e], flat.chan_start[e] + flat.n_chan[e]):
            ca, ch, ix = int(flat.card[r]), int(flat.chip[r]), int(flat.channel[r])
            if not (0 <= ca < lut.shape[0] and 0 <= ch < lut.shape[1] and 0 <= ix < lut.shape[2]):
                continue
            s = int(lut[ca, ch, ix])
            lo, n = int(flat.sample_start[r]), int(flat.n_samples[r])
            if s < 0 or n <= 0:
                continue
            b = flat.bins[lo : lo + n]
            a = flat.adc[lo : lo + n].astype(np.float64)
            complete = n == N_SAMPLES and b[0] == 0 and b[-1] == N_SAMPLES - 1
            est = a[b0:b1].mean() if complete else a[0]
            vals[s, count[s] % depth] = est - base[s]
            count[s] += 1


def offsets(vals: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median offset per strip over its kept estimates (NaN for a strip never seen)."""
    depth = vals.shape[1]
    n = np.minimum(count, depth)
    out = np.full(vals.shape[0], np.nan)
    for k in np.unique(n[n > 0]):
        rows = n == k
        out[rows] = np.median(vals[rows, :k], axis=1)
    return out
