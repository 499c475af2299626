"""Per-chip common-mode (fixed-pattern-noise) correction.

Each AGET adds a component shared by all its channels at each time bin. Two estimators per event,
chip and time bin:

- ``fpn``: the mean of the chip's FPN channels present in the event, each minus its own baseline;
- ``median`` / ``mean``: the median or mean of the chip's *quiet* strips (pedestal-subtracted,
  max |x| below a limit, so pulses are left out).

A chip without any estimate (no FPN channel sent, or no quiet strip) is flagged ``ok = False`` and
left uncorrected by :func:`subtract_common_mode`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.median import median_rows

CM_NONE = 0
CM_FPN = 1
CM_MEDIAN = 2
CM_MEAN = 3
CM_METHODS = {"none": CM_NONE, "fpn": CM_FPN, "median": CM_MEDIAN, "mean": CM_MEAN}


@njit(cache=True, nogil=True)
def median_inplace(a, n):
    """Median of a[:n] (np.median semantics), partially reordering a. n must be >= 1."""
    k = n // 2
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    upper = a[k]
    if n % 2 == 1:
        return upper
    lower = a[0]
    for i in range(1, k):
        if a[i] > lower:
            lower = a[i]
    return 0.5 * (lower + upper)


@njit(cache=True, nogil=True)
def fpn_common_mode_event(fpn_e, present_e, fpn_base, cm_e, ok_e):
    """cm_e (C, T) = mean over present FPN channels k of fpn_e[c, k] - fpn_base[c, k]."""
    n_chips, n_fpn, n_t = fpn_e.shape
    for c in range(n_chips):
        m = 0
        for k in range(n_fpn):
            if present_e[c, k]:
                m += 1
        ok_e[c] = m > 0
        if m == 0:
            cm_e[c, :] = 0.0
            continue
        cm_e[c, :] = 0.0
        for k in range(n_fpn):
            if present_e[c, k]:
                row = fpn_e[c, k]
                b = fpn_base[c, k]
                for t in range(n_t):
                    cm_e[c, t] += row[t] - b
        fm = np.float32(m)
        for t in range(n_t):
            cm_e[c, t] /= fm


@njit(cache=True, nogil=True)
def fpn_common_mode(fpn, fpn_present, fpn_base):
    """Batch FPN estimate: fpn (n, C, K, T), fpn_present (n, C, K), fpn_base (C, K).

    Returns cm float32 (n, C, T) and ok bool (n, C).
    """
    n, n_chips, _, n_t = fpn.shape
    cm = np.empty((n, n_chips, n_t), dtype=np.float32)
    ok = np.empty((n, n_chips), dtype=np.bool_)
    for e in range(n):
        fpn_common_mode_event(fpn[e], fpn_present[e], fpn_base, cm[e], ok[e])
    return cm, ok


@njit(cache=True, nogil=True)
def quiet_strips(x, limit):
    """bool (n, S): strips whose pedestal-subtracted samples all have |x| < limit[s]."""
    n, n_s, n_t = x.shape
    quiet = np.empty((n, n_s), dtype=np.bool_)
    for e in range(n):
        for s in range(n_s):
            hi = np.float32(-np.inf)
            lo = np.float32(np.inf)
            for t in range(n_t):
                hi = max(hi, x[e, s, t])
                lo = min(lo, x[e, s, t])
            quiet[e, s] = hi < limit[s] and -lo < limit[s]
    return quiet


@njit(cache=True, nogil=True)
def quiet_common_mode_event(x_e, chip, quiet_e, use_median, cm_e, ok_e, only_missing):
    """cm_e (C, T) from the quiet strips of each chip (median or mean over strips).

    x_e (S, T) is pedestal-subtracted. With ``only_missing`` only chips with ok_e False are
    computed (fallback after the FPN estimate).
    """
    n_s, n_t = x_e.shape
    n_chips = cm_e.shape[0]
    members = np.empty(n_s, dtype=np.int64)
    scratch = np.empty(n_s, dtype=np.float32)
    for c in range(n_chips):
        if only_missing and ok_e[c]:
            continue
        m = 0
        for s in range(n_s):
            if chip[s] == c and quiet_e[s]:
                members[m] = s
                m += 1
        ok_e[c] = m > 0
        if m == 0:
            cm_e[c, :] = 0.0
            continue
        if use_median:
            for t in range(n_t):
                for i in range(m):
                    scratch[i] = x_e[members[i], t]
                cm_e[c, t] = median_inplace(scratch, m)
        else:
            cm_e[c, :] = 0.0
            for i in range(m):
                row = x_e[members[i]]
                for t in range(n_t):
                    cm_e[c, t] += row[t]
            fm = np.float32(m)
            for t in range(n_t):
                cm_e[c, t] /= fm


@njit(cache=True, nogil=True)
def quiet_common_mode(x, chip, quiet, use_median, n_chips):
    """Batch quiet-strip estimate: returns cm float32 (n, C, T) and ok bool (n, C)."""
    n, _, n_t = x.shape
    cm = np.empty((n, n_chips, n_t), dtype=np.float32)
    ok = np.zeros((n, n_chips), dtype=np.bool_)
    for e in range(n):
        quiet_common_mode_event(x[e], chip, quiet[e], use_median, cm[e], ok[e], False)
    return cm, ok


@njit(cache=True, nogil=True)
def subtract_common_mode(x, cm, chip, ok):
    """In place: x[e, s, t] -= cm[e, chip[s], t] for chips with ok[e, chip[s]]."""
    n, n_s, n_t = x.shape
    for e in range(n):
        for s in range(n_s):
            c = chip[s]
            if ok[e, c]:
                for t in range(n_t):
                    x[e, s, t] -= cm[e, c, t]


@njit(cache=True, nogil=True)
def quiet_common_mode_chip(raw, cells, base, use_cells, members, m, use_median, cm_c, scratch):
    """cm_c (T,) of one chip from its quiet strips ``members[:m]`` (ascending), on x = raw -
    baseline (``cells`` (S, T) when ``use_cells``, else ``base`` (S,)) computed on the fly: no
    corrected copy of the event. The median goes through
    :func:`~agetdaq.readout.datapath.processing.median.median_rows` (vectorised over the time
    bins) and falls back to the quickselect per bin. Returns whether there was a quiet strip."""
    n_t = raw.shape[1]
    if m == 0:
        cm_c[:] = 0.0
        return False
    if use_median:
        if not use_cells and median_rows(raw, base, members, m, cm_c):
            return True
        for t in range(n_t):
            for i in range(m):
                s = members[i]
                scratch[i] = raw[s, t] - (cells[s, t] if use_cells else base[s])
            cm_c[t] = median_inplace(scratch, m)
    else:
        cm_c[:] = 0.0
        for i in range(m):
            s = members[i]
            r = raw[s]
            if use_cells:
                cr = cells[s]
                for t in range(n_t):
                    cm_c[t] += r[t] - cr[t]
            else:
                b = base[s]
                for t in range(n_t):
                    cm_c[t] += r[t] - b
        fm = np.float32(m)
        for t in range(n_t):
            cm_c[t] /= fm
    return True


@njit(cache=True, nogil=True)
def quiet_common_mode_raw(
    raw, cells, base, use_cells, chip, quiet, use_median, cm, ok, only_missing
):
    """:func:`quiet_common_mode_chip` for every chip (only those without an estimate when
    ``only_missing``): cm (C, T), ok (C,)."""
    n_s = raw.shape[0]
    n_chips = cm.shape[0]
    members = np.empty(n_s, dtype=np.int64)
    scratch = np.empty(n_s, dtype=np.float32)
    for c in range(n_chips):
        if only_missing and ok[c]:
            continue
        m = 0
        for s in range(n_s):
            if chip[s] == c and quiet[s]:
                members[m] = s
                m += 1
        ok[c] = quiet_common_mode_chip(raw, cells, base, use_cells, members, m, use_median,
                                       cm[c], scratch)  # fmt: skip
