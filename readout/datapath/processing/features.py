"""Per-event features from the per-strip hits: energies, clusters, centroids, balance, timing.

Clusters are formed per axis over hit strips ordered by strip number; two hits belong to the same
cluster when their strip numbers differ by at most ``1 + max_gap`` (max_gap = 1 bridges one
silent strip). The *main* cluster of an axis is the one with the largest amplitude sum; centroid
(mm) and sigma (mm, amplitude-weighted RMS) are those of the main cluster, ``size`` its number of
hit strips. Energies are sums of hit amplitudes in ADC over the whole axis. An axis without hits
gives NaN centroid/sigma; an event without hits gives NaN balance.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.schema import FEATURE_COLUMNS, EventClass

# the event table's feature columns (agetdaq.readout.schema, the file format) + the batch position
FEATURES_DTYPE = np.dtype([("event", np.int64), *FEATURE_COLUMNS])


def axis_order(axis: np.ndarray, strip: np.ndarray) -> np.ndarray:
    """int64 (2, n): global strip indices of each axis sorted by strip number, padded with -1."""
    n = max(int(np.sum(axis == a)) for a in (0, 1))
    order = np.full((2, n), -1, dtype=np.int64)
    for a in (0, 1):
        idx = np.flatnonzero(axis == a)
        idx = idx[np.argsort(strip[idx], kind="stable")]
        order[a, : idx.size] = idx
    return order


@njit(cache=True, nogil=True)
def _axis_clusters(amp_e, hit_e, order_a, strip, pos, max_gap):
    """(energy, n hits, n clusters, main size, main centroid, main sigma) of one axis."""
    energy = 0.0
    n_hit = 0
    n_cl = 0
    best_e = -1.0
    best_size = 0
    best_c = np.nan
    best_s = np.nan
    cur_e = 0.0
    cur_n = 0
    cur_wx = 0.0
    cur_wx2 = 0.0
    last = 0
    for i in range(order_a.shape[0] + 1):
        s = order_a[i] if i < order_a.shape[0] else -1
        if s >= 0 and not hit_e[s]:
            continue
        if s < 0 or (cur_n > 0 and strip[s] - last > 1 + max_gap):
            if cur_n > 0 and cur_e > best_e:
                best_e = cur_e
                best_size = cur_n
                c = cur_wx / cur_e if cur_e > 0 else np.nan
                best_c = c
                best_s = np.sqrt(max(0.0, cur_wx2 / cur_e - c * c)) if cur_e > 0 else np.nan
            if s < 0:
                break
            cur_e = 0.0
            cur_n = 0
            cur_wx = 0.0
            cur_wx2 = 0.0
        a = np.float64(amp_e[s])
        if cur_n == 0:
            n_cl += 1
        cur_n += 1
        cur_e += a
        cur_wx += a * pos[s]
        cur_wx2 += a * pos[s] * pos[s]
        energy += a
        n_hit += 1
        last = strip[s]
    return energy, n_hit, n_cl, best_size, best_c, best_s


@njit(cache=True, nogil=True)
def event_features_into(amp_e, tbin_e, width_e, hit_e, order, strip, pos, max_gap, rec):
    """Fill one FEATURES_DTYPE record from one event's hit arrays (S,)."""
    ex, nx, cx, sx, x_mm, sig_x = _axis_clusters(amp_e, hit_e, order[0], strip, pos, max_gap)
    ey, ny, cy, sy, y_mm, sig_y = _axis_clusters(amp_e, hit_e, order[1], strip, pos, max_gap)
    tmin = 1 << 30
    tmax = -1
    width_max = 0
    amp_max = 0.0
    wt = 0.0
    w = 0.0
    for s in range(hit_e.shape[0]):
        if hit_e[s]:
            t = tbin_e[s]
            tmin = min(tmin, t)
            tmax = max(tmax, t)
            width_max = max(width_max, width_e[s])
            amp_max = max(amp_max, amp_e[s])
            wt += amp_e[s] * t
            w += amp_e[s]
    rec.n_hits = nx + ny
    rec.nx = nx
    rec.ny = ny
    rec.ex = ex
    rec.ey = ey
    rec.energy = ex + ey
    rec.balance = abs(ex - ey) / (ex + ey) if ex + ey > 0 else np.nan
    rec.ncl_x = cx
    rec.ncl_y = cy
    rec.size_x = sx
    rec.size_y = sy
    rec.x_mm = x_mm
    rec.y_mm = y_mm
    rec.sigma_x = sig_x
    rec.sigma_y = sig_y
    rec.t_spread = tmax - tmin if tmax >= 0 else 0
    rec.t_mean = wt / w if w > 0 else np.nan
    rec.width_max = width_max
    rec.amp_max = amp_max


@njit(cache=True, nogil=True)
def event_features(amp, tbin, width, hit, order, strip, pos, max_gap, out):
    """Fill ``out`` (n,) FEATURES_DTYPE from hit arrays (n, S); cls/trig/event are left alone."""
    for e in range(amp.shape[0]):
        event_features_into(amp[e], tbin[e], width[e], hit[e], order, strip, pos, max_gap, out[e])


def compute_features(
    amp: np.ndarray,
    tbin: np.ndarray,
    width: np.ndarray,
    hit: np.ndarray,
    order: np.ndarray,
    strip: np.ndarray,
    pos: np.ndarray,
    max_gap: int = 1,
    events: np.ndarray | None = None,
) -> np.ndarray:
    """FEATURES_DTYPE array (n,) for a batch (cls = 3, trig = False until classified)."""
    n = amp.shape[0]
    out = np.zeros(n, dtype=FEATURES_DTYPE)
    out["event"] = np.arange(n) if events is None else events
    out["cls"] = EventClass.OTHER
    event_features(amp, tbin, width, hit, order, strip, pos, max_gap, out)
    return out
