"""Per-row helpers the dense and the sparse processing kernels share: baselines of a strip and of
the FPN channels, the quiet test, and the corrected values of a row (small numba functions).

A row's corrected value is ``((raw - baseline) - common mode) - 0`` when the event is
*materialised* (per-cell pedestals, a quiet-strip common mode, or an FPN estimate missing for a
chip) and ``(raw - common mode) - baseline`` otherwise: both kernels keep that order of the
float32 operations, so that they give the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.pedestal import row_window_mean

BASELINE_TABLE, BASELINE_EVENT, BASELINE_RUNNING = 0, 1, 2
BASELINE_MODES = {"table": BASELINE_TABLE, "event": BASELINE_EVENT, "running": BASELINE_RUNNING}


@njit(cache=True, nogil=True)
def any_above(row, cm_row, off, thr):
    """Whether any (row - cm_row) - off > thr: an OR reduction vectorises, a max does not."""
    k = False
    for t in range(row.shape[0]):
        k |= (row[t] - cm_row[t]) - off > thr
    return k


@njit(cache=True, nogil=True)
def any_above_m(raw, cells, b, use_cells, cm_row, thr):
    """Materialised: whether any ((raw - baseline) - cm_row) - 0 > thr (baseline: cells or b)."""
    k = False
    zero = np.float32(0.0)
    if use_cells:
        for t in range(raw.shape[0]):
            k |= ((raw[t] - cells[t]) - cm_row[t]) - zero > thr
    else:
        for t in range(raw.shape[0]):
            k |= ((raw[t] - b) - cm_row[t]) - zero > thr
    return k


@njit(cache=True, nogil=True)
def corrected(raw, cm_row, off, out):
    """out = (raw - cm_row) - off."""
    for t in range(raw.shape[0]):
        out[t] = (raw[t] - cm_row[t]) - off


@njit(cache=True, nogil=True)
def corrected_m(raw, cells, b, use_cells, cm_row, out):
    """Materialised: out = ((raw - baseline) - cm_row) - 0."""
    zero = np.float32(0.0)
    if use_cells:
        for t in range(raw.shape[0]):
            out[t] = ((raw[t] - cells[t]) - cm_row[t]) - zero
    else:
        for t in range(raw.shape[0]):
            out[t] = ((raw[t] - b) - cm_row[t]) - zero


@njit(cache=True, nogil=True)
def is_quiet(raw, cells, b, use_cells, lim):
    """No |raw - baseline| >= lim (a row of a quiet strip, for the common-mode estimate)."""
    k = False
    if use_cells:
        for t in range(raw.shape[0]):
            k |= np.abs(raw[t] - cells[t]) >= lim
    else:
        for t in range(raw.shape[0]):
            k |= np.abs(raw[t] - b) >= lim
    return not k


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def window_mean_minus(row, cm_row, b0, b1):
    """Mean of row[b0:b1] - cm_row[b0:b1] (float64 accumulation, any order)."""
    acc = 0.0
    for t in range(b0, b1):
        acc += row[t] - cm_row[t]
    return acc / (b1 - b0)


@njit(cache=True, nogil=True)
def fpn_baselines(fpn_e, mode, fpn_ped, fpn_state, b0, b1, fbase):
    """This event's FPN baselines (C, K); a NaN running state starts here."""
    n_c, n_k = fbase.shape
    for c in range(n_c):
        for k in range(n_k):
            if mode == BASELINE_TABLE:
                fbase[c, k] = fpn_ped[c, k]
            elif mode == BASELINE_EVENT:
                fbase[c, k] = row_window_mean(fpn_e[c, k], b0, b1)
            else:
                if np.isnan(fpn_state[c, k]):
                    fpn_state[c, k] = row_window_mean(fpn_e[c, k], b0, b1)
                fbase[c, k] = fpn_state[c, k]


@njit(cache=True, nogil=True)
def strip_baseline(raw, s, mode, ped, use_cells, state, b0, b1):
    """Baseline of strip s in this event (0 with per-cell pedestals); NaN running states start."""
    if mode == BASELINE_TABLE:
        return np.float32(0.0) if use_cells else ped[s]
    if mode == BASELINE_EVENT:
        return np.float32(row_window_mean(raw[s], b0, b1))
    if np.isnan(state[s]):
        state[s] = row_window_mean(raw[s], b0, b1)
    return np.float32(state[s])
