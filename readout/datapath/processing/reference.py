"""Plain Python / numpy reference implementations of every processing kernel.

Written for clarity, not speed; the tests compare the numba kernels against them, and benchmark B2
uses :func:`process_ref` as the numpy baseline. Same conventions as the kernels' modules.
"""

from __future__ import annotations

import numpy as np

from agetdaq.readout.datapath.processing.commonmode import (
    CM_FPN,
    CM_MEAN,
    CM_MEDIAN,
    CM_METHODS,
    CM_NONE,
)
from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE
from agetdaq.readout.datapath.processing.trigger import (
    MUON,
    NOISE,
    OTHER,
    XRAY,
    SelectionConfig,
    TriggerConfig,
)
from agetdaq.readout.datapath.processing.waveforms import N_SAMPLES, FlatBatch, StripLayout

# -- waveforms ------------------------------------------------------------------------------------


def scatter_ref(flat: FlatBatch, layout: StripLayout, fill: np.ndarray, fpn_fill: np.ndarray):
    """(strips, fpn, present, fpn_present, complete, fpn_complete,
    [ignored rows, bad bins, duplicates])."""
    n, n_s = flat.n_events, layout.n_strips
    strips = np.repeat(np.asarray(fill, np.float32)[None, :, None], n, 0).repeat(N_SAMPLES, 2)
    fpn = np.repeat(np.asarray(fpn_fill, np.float32)[None, :, :, None], n, 0).repeat(N_SAMPLES, 3)
    present = np.zeros((n, n_s), bool)
    fpn_present = np.zeros((n, 4, 4), bool)
    complete = np.zeros((n, n_s), bool)
    fpn_complete = np.zeros((n, 4, 4), bool)
    counters = [0, 0, 0]
    for e in range(n):
        for r in range(flat.chan_start[e], flat.chan_start[e] + flat.n_chan[e]):
            ca, ch, ix = int(flat.card[r]), int(flat.chip[r]), int(flat.channel[r])
            valid = 0 <= ca < 32 and 0 <= ch < 4 and 0 <= ix < 79
            s = layout.lut[ca, ch, ix] if valid else -1
            k = layout.fpn_lut[ca, ch, ix] if valid else -1
            if s >= 0:
                dst, pres, full, key = strips[e, s], present, complete, (e, s)
            elif k >= 0:
                dst, pres, full, key = fpn[e, ch, k], fpn_present, fpn_complete, (e, ch, k)
            else:
                counters[0] += 1
                continue
            counters[2] += int(pres[key])
            pres[key] = True
            sl = slice(flat.sample_start[r], flat.sample_start[r] + flat.n_samples[r])
            b, a = flat.bins[sl].astype(np.int64), flat.adc[sl]
            counters[1] += int(np.sum(b >= N_SAMPLES))
            dst[b[b < N_SAMPLES]] = a[b < N_SAMPLES]
            full[key] |= np.array_equal(b, np.arange(N_SAMPLES))
    return strips, fpn, present, fpn_present, complete, fpn_complete, counters


def sampled_ref(flat: FlatBatch, layout: StripLayout) -> np.ndarray:
    """bool (n, S, 512): the bins each strip not sent complete was sent with."""
    *_, complete, _, _ = scatter_ref(flat, layout, np.zeros(layout.n_strips), np.zeros((4, 4)))
    out = np.zeros((flat.n_events, layout.n_strips, N_SAMPLES), bool)
    for e in range(flat.n_events):
        for r in range(flat.chan_start[e], flat.chan_start[e] + flat.n_chan[e]):
            ca, ch, ix = int(flat.card[r]), int(flat.chip[r]), int(flat.channel[r])
            s = layout.lut[ca, ch, ix] if 0 <= ca < 32 and 0 <= ch < 4 and 0 <= ix < 79 else -1
            if s >= 0 and not complete[e, s]:
                b = flat.bins[flat.sample_start[r] : flat.sample_start[r] + flat.n_samples[r]]
                out[e, s, b[b < N_SAMPLES].astype(np.int64)] = True
    return out


# -- pedestals ------------------------------------------------------------------------------------


def window_mean_ref(x: np.ndarray, b0: int, b1: int) -> np.ndarray:
    return x[..., b0:b1].mean(axis=-1, dtype=np.float64).astype(np.float32)


def subtract_pedestal_ref(x: np.ndarray, ped: np.ndarray) -> np.ndarray:
    ped = np.asarray(ped, np.float32)
    return x - (ped[None, :, None] if ped.ndim == 1 else ped[None])


def subtract_event_baseline_ref(x: np.ndarray, b0: int, b1: int) -> np.ndarray:
    return x - window_mean_ref(x, b0, b1)[..., None]


def running_baseline_ref(x, state, b0, b1, alpha, limit):
    """(x minus the running baseline, final state): same rule as subtract_running_baseline."""
    state = np.array(state, np.float64)
    out = np.empty_like(x)
    means = window_mean_ref(x, b0, b1)
    for e in range(x.shape[0]):
        state = np.where(np.isnan(state), means[e], state)
        quiet = np.abs(means[e] - state) < limit
        out[e] = x[e] - state.astype(np.float32)[:, None]
        state = np.where(quiet, state + alpha * (means[e] - state), state)
    return out, state


def row_stats_ref(x: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per strip: (samples counted, mean, population RMS) over the used rows."""
    n_s = x.shape[1]
    count, mean, sigma = np.zeros(n_s, np.int64), np.zeros(n_s), np.zeros(n_s)
    for s in range(n_s):
        v = x[use[:, s], s].astype(np.float64)
        count[s] = v.size
        if v.size:
            mean[s], sigma[s] = v.mean(), v.std()
    return count, mean, sigma


def cell_stats_ref(x: np.ndarray, use: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per strip and cell: (mean, RMS) over the used events."""
    mean = np.zeros(x.shape[1:])
    sigma = np.zeros(x.shape[1:])
    for s in range(x.shape[1]):
        v = x[use[:, s], s].astype(np.float64)
        if v.size:
            mean[s], sigma[s] = v.mean(axis=0), v.std(axis=0)
    return mean, sigma


# -- common mode ----------------------------------------------------------------------------------


def fpn_common_mode_ref(fpn, fpn_present, fpn_base):
    """fpn_base (C, K) or per event (n, C, K)."""
    base = np.asarray(fpn_base, np.float32)
    base = base[..., None] if base.ndim == 3 else base[None, :, :, None]
    dev = (fpn - base) * fpn_present[..., None]
    m = fpn_present.sum(axis=2)
    cm = dev.sum(axis=2, dtype=np.float32) / np.maximum(m, 1)[..., None].astype(np.float32)
    return cm.astype(np.float32), m > 0


def quiet_strips_ref(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
    return np.abs(x).max(axis=-1) < limit[None, :]


def quiet_common_mode_ref(x, chip, quiet, use_median, n_chips):
    n, _, n_t = x.shape
    cm = np.zeros((n, n_chips, n_t), np.float32)
    ok = np.zeros((n, n_chips), bool)
    for e in range(n):
        for c in range(n_chips):
            rows = x[e, (chip == c) & quiet[e]]
            if rows.shape[0]:
                ok[e, c] = True
                cm[e, c] = np.median(rows, axis=0) if use_median else rows.mean(axis=0)
    return cm, ok


def subtract_common_mode_ref(x, cm, chip, ok):
    return x - cm[:, chip, :] * ok[:, chip, None]


# -- hits -----------------------------------------------------------------------------------------


def find_hits_ref(x, thr_hit, thr_sample, n_min):
    """(amplitude, peak bin, integral, width, hit), vectorised over the batch."""
    n_t = x.shape[-1]
    amp = x.max(axis=-1)
    tb = x.argmax(axis=-1)
    cand = amp > thr_hit[None, :]
    below = ~(x > thr_sample[None, :, None])
    idx = np.arange(n_t)
    lo = np.where(below & (idx < tb[..., None]), idx, -1).max(axis=-1) + 1
    hi = np.where(below & (idx > tb[..., None]), idx, n_t).min(axis=-1) - 1
    peak_above = ~np.take_along_axis(below, tb[..., None], -1)[..., 0]
    width = np.where(cand & peak_above, hi - lo + 1, 0)
    inside = (idx >= lo[..., None]) & (idx <= hi[..., None]) & (width[..., None] > 0)
    integral = np.where(inside, x, 0).sum(axis=-1, dtype=np.float32)
    hit = cand & (width >= n_min)
    return (
        np.where(cand, amp, 0).astype(np.float32),
        np.where(cand, tb, -1).astype(np.int16),
        np.where(cand, integral, 0).astype(np.float32),
        width.astype(np.int16),
        hit,
    )


# -- features, classification, trigger ------------------------------------------------------------


def _clusters_ref(strips: list[tuple[int, float, float]], max_gap: int):
    """Clusters of (strip number, amplitude, position) sorted by strip number."""
    clusters: list[list[tuple[int, float, float]]] = []
    for item in sorted(strips):
        if clusters and item[0] - clusters[-1][-1][0] <= 1 + max_gap:
            clusters[-1].append(item)
        else:
            clusters.append([item])
    return clusters


def features_ref(amp, tbin, width, hit, axis, strip, pos, max_gap=1) -> np.ndarray:
    n = amp.shape[0]
    out = np.zeros(n, FEATURES_DTYPE)
    out["event"] = np.arange(n)
    out["cls"] = OTHER
    for e in range(n):
        f = out[e]
        hs = np.flatnonzero(hit[e])
        for a, name in ((0, "x"), (1, "y")):
            items = [(int(strip[s]), float(amp[e, s]), float(pos[s])) for s in hs if axis[s] == a]
            cl = _clusters_ref(items, max_gap)
            f["n" + name] = len(items)
            f["e" + name] = sum(i[1] for i in items)
            f["ncl_" + name] = len(cl)
            f[name + "_mm"] = f["sigma_" + name] = np.nan
            if cl:
                main = max(cl, key=lambda c: sum(i[1] for i in c))
                w = np.array([i[1] for i in main])
                p = np.array([i[2] for i in main])
                c = np.sum(w * p) / np.sum(w)
                f["size_" + name] = len(main)
                f[name + "_mm"] = c
                f["sigma_" + name] = np.sqrt(max(0.0, np.sum(w * p * p) / np.sum(w) - c * c))
        f["n_hits"] = hs.size
        f["energy"] = f["ex"] + f["ey"]
        total = float(f["ex"]) + float(f["ey"])
        f["balance"] = abs(float(f["ex"]) - float(f["ey"])) / total if total > 0 else np.nan
        if hs.size:
            t = tbin[e, hs].astype(np.int64)
            f["t_spread"] = t.max() - t.min()
            f["t_mean"] = np.sum(amp[e, hs] * t) / np.sum(amp[e, hs])
            f["width_max"] = width[e, hs].max()
            f["amp_max"] = amp[e, hs].max()
        else:
            f["t_mean"] = np.nan
    return out


def classify_ref(features: np.ndarray, cfg: SelectionConfig) -> np.ndarray:
    out = np.empty(features.shape, np.int8)
    for i, f in enumerate(features):
        if f["n_hits"] <= cfg.noise_max_hits:
            out[i] = NOISE
        elif (
            f["n_hits"] >= cfg.muon_min_hits
            or max(f["nx"], f["ny"]) >= cfg.muon_min_axis_hits
            or f["t_spread"] >= cfg.muon_min_t_spread
            or (cfg.muon_min_width > 0 and f["width_max"] >= cfg.muon_min_width)
        ):
            out[i] = MUON
        elif (
            f["ncl_x"] == 1
            and f["ncl_y"] == 1
            and all(cfg.xray_min_size <= f[k] <= cfg.xray_max_size for k in ("size_x", "size_y"))
            and f["balance"] < cfg.xray_max_balance
            and all(
                cfg.xray_min_sigma_mm <= f[k] <= cfg.xray_max_sigma_mm
                for k in ("sigma_x", "sigma_y")
            )
            and f["t_spread"] <= cfg.xray_max_t_spread
        ):
            out[i] = XRAY
        else:
            out[i] = OTHER
    return out


def trigger_ref(features: np.ndarray, cfg: TriggerConfig) -> np.ndarray:
    out = np.zeros(features.shape, bool)
    for i, f in enumerate(features):
        out[i] = (
            f["n_hits"] >= cfg.min_hits
            and (cfg.max_hits <= 0 or f["n_hits"] <= cfg.max_hits)
            and (not cfg.require_xy or (f["nx"] > 0 and f["ny"] > 0))
            and cfg.energy_min <= f["energy"] <= cfg.energy_max
            and int(f["cls"]) in cfg.classes
        )
    return out


# -- whole chain ----------------------------------------------------------------------------------


def process_ref(proc, strips, fpn, fpn_complete, complete, sampled=None):
    """The chain of a ``Processor`` in numpy; updates ``proc.state`` / ``proc.fpn_state``.
    ``sampled`` (n, S, T) (default none): the bins the zero-suppressed rows were sent with.

    Returns (features, hit, amplitude, peak bin, integral, width, corrected waveforms).
    """
    cfg = proc.config
    sampled = np.zeros(strips.shape, bool) if sampled is None else sampled & ~complete[..., None]
    if cfg.baseline == "running":  # sequential: each event sees the state left by the previous
        parts = [
            _chain_ref(proc, strips[e : e + 1], fpn[e : e + 1], fpn_complete[e : e + 1],
                       complete[e : e + 1], sampled[e : e + 1])
            for e in range(strips.shape[0])
        ]  # fmt: skip
        x, amp, tb, q, w, hit = (np.concatenate(p) for p in zip(*parts))
    else:
        x, amp, tb, q, w, hit = _chain_ref(proc, strips, fpn, fpn_complete, complete, sampled)
    feats = features_ref(amp, tb, w, hit, proc.layout.axis, proc.strip, proc.pos, cfg.max_gap)
    feats["cls"] = classify_ref(feats, cfg.selection)
    feats["trig"] = trigger_ref(feats, cfg.trigger)
    return feats, hit, amp, tb, q, w, x


def _baselines_ref(proc, strips, fpn, b0, b1):
    """Per-event strip (n, S) and FPN (n, C, K) baselines of the configured mode."""
    cfg = proc.config
    n = strips.shape[0]
    if cfg.baseline == "table":
        return (
            np.broadcast_to(proc.table.mean, strips.shape[:2]),
            np.broadcast_to(proc.table.fpn_mean, fpn.shape[:3]),
        )
    wm, fwm = window_mean_ref(strips, b0, b1), window_mean_ref(fpn, b0, b1)
    if cfg.baseline == "event":
        return wm, fwm
    assert n == 1
    proc.state[:] = np.where(np.isnan(proc.state), wm[0], proc.state)
    proc.fpn_state[:] = np.where(np.isnan(proc.fpn_state), fwm[0], proc.fpn_state)
    return proc.state.astype(np.float32)[None], proc.fpn_state.astype(np.float32)[None]


def _chain_ref(proc, strips, fpn, fpn_complete, complete, sampled):
    cfg, chip = proc.config, proc.chip
    b0, b1 = cfg.window
    cm_m = CM_METHODS[cfg.cm_method]
    n, _, n_t = strips.shape
    use_cells = cfg.baseline == "table" and proc.cells.shape[0] == strips.shape[1]
    base, fbase = _baselines_ref(proc, strips, fpn, b0, b1)
    if use_cells:
        base = np.zeros(strips.shape[:2], np.float32)
    cm = np.zeros((n, 4, n_t), np.float32)
    ok = np.zeros((n, 4), bool)
    if cm_m == CM_FPN:
        cm, ok = fpn_common_mode_ref(fpn, fpn_complete, fbase)
    # the samples that take the common mode: complete rows; the bins zero-suppressed rows were
    # sent with, where the chip's estimate came from its FPN channels
    zs = sampled & (ok[:, chip] & cfg.cm_zero_suppressed)[..., None]
    with_cm = complete[..., None] | zs
    materialised = np.full(n, use_cells or cm_m in (CM_MEDIAN, CM_MEAN)) | ~ok.all(axis=1)
    xp = strips - (proc.cells[None] if use_cells else base[..., None])
    if cm_m != CM_NONE and materialised.any():
        quiet = quiet_strips_ref(xp, proc.quiet_lim) & complete
        cmq, okq = quiet_common_mode_ref(xp, chip, quiet, cm_m == CM_MEDIAN, 4)
        cm = np.where(ok[..., None], cm, cmq)
        ok |= okq
    cm[~ok] = 0.0
    cms = cm[:, chip, :] * with_cm
    x = np.where(materialised[:, None, None], xp - cms, (strips - cms) - base[..., None])
    amp, tb, q, w, hit = find_hits_ref(x, proc.thr_hit, proc.thr_sample, cfg.n_min)
    if cfg.baseline == "running":
        m = (strips[0, :, b0:b1] - cms[0, :, b0:b1]).mean(axis=-1, dtype=np.float64)
        st = proc.state
        upd = complete[0] & ~hit[0] & (np.abs(m - st) < proc.quiet_lim)
        st[:] = np.where(upd, st + cfg.alpha * (m - st), st)
        fm = window_mean_ref(fpn, b0, b1)[0].astype(np.float64)
        fs = proc.fpn_state
        fs[:] = np.where(fpn_complete[0], fs + cfg.alpha * (fm - fs), fs)
    return x, amp, tb, q, w, hit
