"""Numba composer of raw AGET waveforms: pedestal + scaled noise + common mode + signal, clipped.

Called by the physics model (physics.py) once per event; :func:`compose_raw_py` is its
plain-numpy reference.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ADC_MAX = 4095  # 12-bit ADC full scale


@njit(cache=True, nogil=True)
def compose_raw(ped, scale, bank, offsets, cm, sig_index, sig, out):  # pragma: no cover - numba
    """out[c, k, t] = clip(round(ped + scale * bank[offsets + t] + cm[c, t] + sig[row, t])).

    ped, scale: (C, K) float32; bank: 1-D float32; offsets: (C, K) int64; cm: (C, T) float32;
    sig_index: (C, K) int32, row of ``sig`` (R, T) float32 or -1; out: (C, K, T) uint16.
    """
    n_chip, n_chan, n_t = out.shape
    for c in range(n_chip):
        for k in range(n_chan):
            base = ped[c, k]
            s = scale[c, k]
            off = offsets[c, k]
            row = sig_index[c, k]
            for t in range(n_t):
                v = base + s * bank[off + t] + cm[c, t]
                if row >= 0:
                    v = v + sig[row, t]
                x = np.float64(v) + 0.5  # round half up = floor(v + 0.5)
                if x < 1.0:
                    out[c, k, t] = 0
                elif x >= 4095.0:
                    out[c, k, t] = 4095
                else:
                    out[c, k, t] = np.uint16(np.int32(x))


def compose_raw_py(ped, scale, bank, offsets, cm, sig_index, sig, out) -> None:
    """Plain-numpy reference of :func:`compose_raw`."""
    n_t = out.shape[2]
    noise = bank[offsets[:, :, None] + np.arange(n_t)]
    v = ped[:, :, None] + scale[:, :, None] * noise + cm[:, None, :]
    c_ix, k_ix = np.nonzero(sig_index >= 0)
    v[c_ix, k_ix] = v[c_ix, k_ix] + sig[sig_index[c_ix, k_ix]]
    out[...] = np.clip(np.floor(v.astype(np.float64) + 0.5), 0, ADC_MAX).astype(np.uint16)
