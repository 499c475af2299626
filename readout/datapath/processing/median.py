"""The median over strips at every time bin (the common mode without FPN channels), vectorised
over the time bins.

The values are ``raw[s, t] - base[s]``: raw ADC (whole numbers) minus a per-strip baseline. Write
``base[s] = fb[s] + frac[s]`` (``fb`` its floor); then ``raw - base = key - frac`` with the whole
number ``key = raw - fb``, so the values sort by ``key`` first and, among equal keys, by ``frac``
descending (a property of the strip, not of the time bin). :func:`median_rows` finds, for all the
time bins of a tile at once, the key of the wanted order statistic by a bisection of counts (the
bracket starts around the mean and falls back to the tile's whole range), then picks the row
among equal keys in one pass over the keys in ``frac`` order (for each middle of an even
count) and rebuilds its value from the key (``raw = fb + key`` exactly). Floating-point subtraction
is monotonic, so the result is exactly ``np.median`` of the float32 values ``raw - base``.

Every loop runs over the time bins of a tile (int16 counters: the compiler vectorises them).
Rows that are not whole numbers, or keys beyond +-16 000, make it return False: the caller then
uses the per-bin quickselect (:func:`~.commonmode.median_inplace`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

TILE = 128  # time bins per tile: the keys (64 strips x 128 bins, int16) stay in L1
KEY_LIMIT = 16000
HALF_BRACKET = 4  # the first bracket: mean key - 4 .. mean key + 3


@njit(cache=True, nogil=True)
def frac_order(base, rows, m, fb, order):
    """fb[i] = floor(base[rows[i]]); order = 0..m-1 sorted by the fractional part, descending."""
    fr = np.empty(m, np.float32)
    for i in range(m):
        b = base[rows[i]]
        fb[i] = np.floor(b)
        fr[i] = b - fb[i]
        order[i] = i
    for i in range(1, m):
        v = order[i]
        j = i - 1
        while j >= 0 and fr[order[j]] < fr[v]:
            order[j + 1] = order[j]
            j -= 1
        order[j + 1] = v


@njit(cache=True, nogil=True)
def _keys(raw, rows, m, fb, t0, w, keys, mean, dev):
    """keys[i, :w] = raw[rows[i], t0:t0+w] - fb[i] (int16) and their mean per bin; False when a
    value is not a whole number or out of range. Per-bin accumulators, no branch: vectorised."""
    mw, dw = mean[:w], dev[:w]
    mw[:] = 0.0
    dw[:] = 0.0
    lim = np.float32(KEY_LIMIT)
    for i in range(m):
        r = raw[rows[i], t0 : t0 + w]  # slices: an offset index would stop the vectoriser
        f = fb[i]
        kr = keys[i, :w]
        for j in range(w):
            v = r[j] - f
            q = np.int32(v)
            kr[j] = np.int16(q)
            mw[j] += v
            dw[j] += np.abs(v - np.float32(q)) + np.float32(np.abs(v) > lim)
    return np.all(dw == 0.0)  # NaN too: not whole


@njit(cache=True, nogil=True)
def _count_le(keys, m, w, thr, cnt):
    """cnt[j] = number of rows with keys[i, j] <= thr[j]."""
    c = cnt[:w]
    th = thr[:w]
    c[:] = 0
    for i in range(m):
        kr = keys[i, :w]
        for j in range(w):
            c[j] += np.int16(kr[j] <= th[j])


@njit(cache=True, nogil=True)
def _bisect(keys, m, w, k, lo, hi, clo, chi, mid, cnt):
    """Narrow lo < K <= hi to hi - lo == 1 for every bin, where K is the key of the k-th smallest
    (0-based); counts: clo = #(key <= lo) <= k < chi = #(key <= hi)."""
    span = 0
    for j in range(w):
        span = max(span, np.int32(hi[j]) - np.int32(lo[j]))
    while span > 1:
        for j in range(w):
            mid[j] = (np.int32(lo[j]) + np.int32(hi[j])) >> 1
        _count_le(keys, m, w, mid, cnt)
        for j in range(w):  # arithmetic, not selects: these vectorise
            up = np.int16(cnt[j] >= k + 1)
            hi[j] += (mid[j] - hi[j]) * up
            chi[j] += (cnt[j] - chi[j]) * up
            clo[j] = cnt[j] + (clo[j] - cnt[j]) * up
            lo[j] = mid[j] + (lo[j] - mid[j]) * up
        span = (span + 1) >> 1


@njit(cache=True, nogil=True)
def _bracket(keys, m, w, k, mean, lo, hi, clo, chi):
    """lo / hi / clo / chi around the mean when the bracket holds the k-th key for every bin of the
    tile, else around the tile's whole range."""
    for j in range(w):
        g = np.floor(mean[j] / m + np.float32(0.5))
        lo[j] = np.int16(g) - HALF_BRACKET
        hi[j] = np.int16(g) + HALF_BRACKET - 1
    _count_le(keys, m, w, lo, clo)
    _count_le(keys, m, w, hi, chi)
    held = True
    for j in range(w):
        held &= (clo[j] <= k) & (chi[j] >= k + 1)
    if held:
        return
    kmin = np.int16(KEY_LIMIT)
    kmax = np.int16(-KEY_LIMIT)
    for i in range(m):
        kr = keys[i, :w]
        for j in range(w):
            kmin = min(kmin, kr[j])
            kmax = max(kmax, kr[j])
    for j in range(w):
        lo[j] = kmin - 1
        hi[j] = kmax
        clo[j] = 0
        chi[j] = m


@njit(cache=True, nogil=True)
def _pick(keys, order, m, w, key, rank, seen, idx):
    """idx[j] = the row index i of the rank[j]-th row (in frac order) whose key is key[j]. Keys
    only: the value is rebuilt from the key (raw = fb + key exactly)."""
    kw, rw, sw, iw = key[:w], rank[:w], seen[:w], idx[:w]
    sw[:] = 0
    iw[:] = 0
    for o in range(m):
        i = np.int16(order[o])
        kr = keys[order[o], :w]
        for j in range(w):
            e = kr[j] == kw[j]
            iw[j] += i * np.int16(e & (sw[j] == rw[j]))  # one row matches: a sum, not a select
            sw[j] += np.int16(e)


@njit(cache=True, nogil=True)
def median_rows(raw, base, rows, m, out):
    """out[t] = np.median over i < m of (raw[rows[i], t] - base[rows[i]]) in float32, for every
    t; False (out undefined) when a value is not a whole number: use the quickselect then."""
    n_t = raw.shape[1]
    if m < 1:
        return False
    fb = np.empty(m, np.float32)
    order = np.empty(m, np.int64)
    frac_order(base, rows, m, fb, order)
    keys = np.empty((m, TILE), np.int16)
    mean = np.empty(TILE, np.float32)
    dev = np.empty(TILE, np.float32)
    lo = np.empty(TILE, np.int16)
    hi = np.empty(TILE, np.int16)
    clo = np.empty(TILE, np.int16)
    chi = np.empty(TILE, np.int16)
    mid = np.empty(TILE, np.int16)
    cnt = np.empty(TILE, np.int16)
    k2 = np.empty(TILE, np.int16)
    r1 = np.empty(TILE, np.int16)
    r2 = np.empty(TILE, np.int16)
    s1 = np.empty(TILE, np.int16)
    s2 = np.empty(TILE, np.int16)
    i1 = np.zeros(TILE, np.int16)
    i2 = np.zeros(TILE, np.int16)
    k = (m - 1) // 2  # the lower middle for an even m, the middle for an odd one
    even = m % 2 == 0
    half = np.float32(0.5)
    for t0 in range(0, n_t, TILE):
        w = min(TILE, n_t - t0)
        if not _keys(raw, rows, m, fb, t0, w, keys, mean, dev):
            return False
        _bracket(keys, m, w, k, mean, lo, hi, clo, chi)
        _bisect(keys, m, w, k, lo, hi, clo, chi, mid, cnt)
        for j in range(w):
            r1[j] = k - clo[j]
        if even:  # the upper middle: the same key again, or the next key up
            for j in range(w):
                mid[j] = KEY_LIMIT
            nxt = mid[:w]
            top = hi[:w]
            for i in range(m):
                kr = keys[i, :w]
                for j in range(w):
                    v = kr[j]
                    nxt[j] = min(nxt[j], v + (KEY_LIMIT - v) * np.int16(v <= top[j]))
            for j in range(w):
                same = chi[j] >= k + 2
                k2[j] = hi[j] if same else mid[j]
                r2[j] = r1[j] + 1 if same else 0
        _pick(keys, order, m, w, hi, r1, s1, i1)
        if even:
            _pick(keys, order, m, w, k2, r2, s2, i2)
        for j in range(w):
            a = i1[j]
            x1 = (fb[a] + np.float32(hi[j])) - base[rows[a]]  # = raw - base, bit for bit
            if even:
                b = i2[j]
                x2 = (fb[b] + np.float32(k2[j])) - base[rows[b]]
                out[t0 + j] = half * (x1 + x2)
            else:
                out[t0 + j] = x1
    return True


def median_rows_ref(raw: np.ndarray, base: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`median_rows`."""
    x = raw[rows] - base[rows, None].astype(np.float32)
    return np.median(x, axis=0).astype(np.float32)
