"""The processing of zero-suppressed events on the samples that exist (no 240 x 512 array).

The dense path (:mod:`~agetdaq.readout.datapath.processing.dense`) fills a missing sample with the
strip's fill value (its baseline at the start of the batch), so after the baseline subtraction it
reads ``fill - baseline``: 0, unless a running baseline moved since the batch started. It
estimates the common mode from complete rows only (FPN channels, or the median / mean of quiet
strips) and subtracts it from complete rows (all 512 bins) and, when the chip's FPN channels were
sent whole, from the samples sent of zero-suppressed rows. :func:`sparse_events` gives the same
bits on the flat channel rows:

- a row with missing bins: the pulse search runs over its samples, the missing bins standing for
  the background ``fill - baseline`` (when that background could matter, i.e. above a threshold,
  the row is laid out in a 512-bin buffer and searched as the dense path does);
- complete rows (a full channel in a zero-suppressed event, FPN channels): laid out in a compact
  (rows, 512) array, common mode from them and subtracted from them, as the dense path does;
- the common mode of a chip whose FPN channels were sent whole (card threshold 0) is also
  subtracted from the samples of its zero-suppressed rows (``cm_zero_suppressed``), each at its
  bin; their missing bins stay at the background, as in the dense path;
- a strip not sent: no pulse, unless its background is above its hit threshold (a running
  baseline moved within the batch), then searched as a constant row;
- running baselines move on complete rows only, as in the dense path.

:func:`sparse_check` says whether a batch can take this path: no strip or FPN channel sent twice in
an event, bins strictly increasing within a row. The per-cell pedestals and the per-event
baseline mode stay dense (a missing sample's value depends on the bin or on the row's window).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.baseline import (
    BASELINE_RUNNING,
    any_above,
    any_above_m,
    corrected,
    corrected_m,
    is_quiet,
    window_mean_minus,
)
from agetdaq.readout.datapath.processing.commonmode import (
    CM_FPN,
    CM_MEAN,
    CM_MEDIAN,
    CM_NONE,
    quiet_common_mode_raw,
)
from agetdaq.readout.datapath.processing.hits import row_pulse
from agetdaq.readout.datapath.processing.pedestal import row_window_mean
from agetdaq.readout.datapath.processing.waveforms import N_CARDS, N_CHIPS, N_INDICES, N_SAMPLES


@njit(cache=True, nogil=True)
def _is_complete(bins, lo, n):
    """All 512 bins in order."""
    if n != N_SAMPLES:
        return False
    k = True
    for t in range(N_SAMPLES):
        k &= bins[lo + t] == t
    return k


@njit(cache=True, nogil=True)
def sparse_check(chan_start, n_chan, card, chip, channel, sample_start, n_samples, bins,
                 lut, fpn_lut, n_strips):  # fmt: skip
    """(usable, rows, samples of rows with 512 samples): usable when no event sends a strip or
    an FPN channel twice and every strip row's bins increase strictly."""
    mark = np.zeros(n_strips + N_CHIPS * 4, np.int64)
    rows = 0
    full = 0
    for e in range(chan_start.shape[0]):
        stamp = e + 1
        for r in range(chan_start[e], chan_start[e] + n_chan[e]):
            rows += 1
            ca, ch, ix = card[r], chip[r], channel[r]
            if ca < 0 or ca >= N_CARDS or ch < 0 or ch >= N_CHIPS or ix < 0 or ix >= N_INDICES:
                continue
            lo, n = sample_start[r], n_samples[r]
            full += n == N_SAMPLES
            s = lut[ca, ch, ix]
            if s >= 0:
                if mark[s] == stamp:
                    return False, rows, full
                mark[s] = stamp
                for i in range(lo + 1, lo + n):
                    if bins[i] <= bins[i - 1]:
                        return False, rows, full
                continue
            k = fpn_lut[ca, ch, ix]
            if k >= 0:
                slot = n_strips + ch * 4 + k
                if mark[slot] == stamp:
                    return False, rows, full
                mark[slot] = stamp
    return True, rows, full


@njit(cache=True, nogil=True)
def zs_value(a, b, cmv, mat):
    """A zero-suppressed row's corrected value of raw ``a`` (baseline b, common mode cmv) in the
    dense kernel's order of float32 operations (baseline.py): ((a - b) - cmv) - 0 in a
    materialised event, else (a - cmv) - b; without a common mode (cmv 0) both are a - b."""
    if mat:
        return ((a - b) - cmv) - np.float32(0.0)
    return (a - cmv) - b


@njit(cache=True, nogil=True)
def sparse_row_pulse(bins, adc, lo, hi, b, cm_row, mat, thr_hit, thr_sample, n_min):
    """row_pulse of a row that has samples lo:hi only (bins increasing), its missing bins at a
    background <= thr_hit and <= thr_sample. Values :func:`zs_value` of each sample with the
    common mode ``cm_row`` (512,) at its bin (zeros: none), as the dense path."""
    amp = np.float32(thr_hit)
    ib = -1
    for i in range(lo, hi):
        t = bins[i]
        if t >= N_SAMPLES:
            break
        v = zs_value(np.float32(adc[i]), b, cm_row[t], mat)
        if v > amp:
            amp = v
            ib = i
    if ib < 0:
        return np.float32(0.0), -1, np.float32(0.0), 0, False
    tb = np.int64(bins[ib])
    if not amp > thr_sample:
        return amp, tb, np.float32(0.0), 0, False
    a = ib
    while (
        a > lo
        and bins[a - 1] == bins[a] - 1
        and zs_value(np.float32(adc[a - 1]), b, cm_row[bins[a - 1]], mat) > thr_sample
    ):
        a -= 1
    z = ib
    while (
        z + 1 < hi
        and bins[z + 1] == bins[z] + 1
        and bins[z + 1] < N_SAMPLES
        and zs_value(np.float32(adc[z + 1]), b, cm_row[bins[z + 1]], mat) > thr_sample
    ):
        z += 1
    integral = np.float32(0.0)
    for i in range(a, z + 1):
        integral += zs_value(np.float32(adc[i]), b, cm_row[bins[i]], mat)
    width = z - a + 1
    return amp, tb, integral, width, width >= n_min


@njit(cache=True, nogil=True)
def _laid_out(bins, adc, lo, hi, bg, b, cm_row, mat, out):
    """A row laid out as the dense path sees it: background bg, samples :func:`zs_value`;
    returns the bins past the last cell."""
    out[:] = bg
    bad = 0
    for i in range(lo, hi):
        t = bins[i]
        if t < N_SAMPLES:
            out[t] = zs_value(np.float32(adc[i]), b, cm_row[t], mat)
        else:
            bad += 1
    return bad


@njit(cache=True, nogil=True)
def _fpn_rows(chan_start, n_chan, card, chip_r, channel, sample_start, n_samples, bins,
              lut, fpn_lut, e, fpn_row):  # fmt: skip
    """fpn_row (C, K): the row of each complete FPN channel of event e, else -1."""
    fpn_row[:, :] = -1
    for r in range(chan_start[e], chan_start[e] + n_chan[e]):
        ca, ch, ix = card[r], chip_r[r], channel[r]
        if ca < 0 or ca >= N_CARDS or ch < 0 or ch >= N_CHIPS or ix < 0 or ix >= N_INDICES:
            continue
        if lut[ca, ch, ix] >= 0:
            continue
        k = fpn_lut[ca, ch, ix]
        if k >= 0 and _is_complete(bins, sample_start[r], n_samples[r]):
            fpn_row[ch, k] = r


@njit(cache=True, nogil=True)
def _fpn_common_mode(fpn_row, sample_start, adc, fbase, cm, ok):
    """cm (C, T): per chip the mean of its complete FPN rows minus their baselines; ok (C,)."""
    n_c, n_k = fpn_row.shape
    for c in range(n_c):
        m = 0
        cm[c, :] = 0.0
        for k in range(n_k):
            r = fpn_row[c, k]
            if r >= 0:
                m += 1
                lo = sample_start[r]
                fb = fbase[c, k]
                for t in range(N_SAMPLES):
                    cm[c, t] += np.float32(adc[lo + t]) - fb
        ok[c] = m > 0
        if m:
            fm = np.float32(m)
            for t in range(N_SAMPLES):
                cm[c, t] /= fm


@njit(cache=True, nogil=True)
def sparse_events(
    chan_start, n_chan, card, chip_r, channel, sample_start, n_samples, bins, adc,
    lut, fpn_lut, chip, ped, fill, fpn_ped, state, fpn_state,
    mode, cm_method, cm_zs, b0, b1, alpha, quiet_lim, thr_hit, thr_sample, n_min,
    amp, tbin, integral, width, hit, corr, bg, write_wf,
):  # fmt: skip
    """The chain of ``process_events`` on flat channel rows (module docstring; the batch passed
    :func:`sparse_check`). Outputs (n, S) come zeroed (tbin -1). With ``write_wf``: ``corr``
    (one per sample) the corrected value of every strip sample, ``bg`` (n, S) each strip's
    background. Returns int64 [ignored rows, bins past the last cell, events with a complete
    strip row]."""
    n = chan_start.shape[0]
    n_s = chip.shape[0]
    n_c, n_k = fpn_ped.shape
    running = mode == BASELINE_RUNNING
    counters = np.zeros(3, np.int64)
    mark = np.zeros(n_s, np.int64)
    fpn_row = np.empty((n_c, n_k), np.int64)
    fbase = np.empty((n_c, n_k), np.float32)
    cm = np.zeros((n_c, N_SAMPLES), np.float32)
    no_cm = np.zeros(N_SAMPLES, np.float32)
    ok = np.zeros(n_c, np.bool_)
    zs_cm = np.zeros(n_c, np.bool_)
    buf = np.empty(N_SAMPLES, np.float32)
    comp_s = np.empty(n_s, np.int64)
    comp_r = np.empty(n_s, np.int64)
    craw = np.empty((0, N_SAMPLES), np.float32)  # complete rows laid out, when there are any
    cbase = np.empty(n_s, np.float32)
    cchip = np.empty(n_s, np.int64)
    cquiet = np.empty(n_s, np.bool_)
    no_cells = np.zeros((1, 1), np.float32)
    moved = False  # a running strip baseline moved: a strip not sent may read above 0
    for e in range(n):
        stamp = e + 1
        _fpn_rows(chan_start, n_chan, card, chip_r, channel, sample_start, n_samples, bins,
                  lut, fpn_lut, e, fpn_row)  # fmt: skip
        ok[:] = False
        if cm_method == CM_FPN:
            for c in range(n_c):
                for k in range(n_k):
                    fbase[c, k] = np.float32(fpn_state[c, k]) if running else fpn_ped[c, k]
            _fpn_common_mode(fpn_row, sample_start, adc, fbase, cm, ok)
        mat = cm_method in (CM_MEDIAN, CM_MEAN) or (cm_method == CM_FPN and not ok.all())
        for c in range(n_c):
            zs_cm[c] = cm_zs and ok[c]
        n_comp = 0
        for r in range(chan_start[e], chan_start[e] + n_chan[e]):
            ca, ch, ix = card[r], chip_r[r], channel[r]
            if ca < 0 or ca >= N_CARDS or ch < 0 or ch >= N_CHIPS or ix < 0 or ix >= N_INDICES:
                counters[0] += 1
                continue
            lo, ns = sample_start[r], n_samples[r]
            full = _is_complete(bins, lo, ns)
            s = lut[ca, ch, ix]
            k = fpn_lut[ca, ch, ix] if s < 0 else -1
            if s < 0 and k < 0:
                counters[0] += 1
                continue
            if not full:  # bins increase: the late ones are at the end
                i = lo + ns - 1
                while i >= lo and bins[i] >= N_SAMPLES:
                    counters[1] += 1
                    i -= 1
            if s < 0:
                continue
            mark[s] = stamp
            if full:  # kept for the complete-row part, in strip order
                j = n_comp
                while j > 0 and comp_s[j - 1] > s:
                    comp_s[j] = comp_s[j - 1]
                    comp_r[j] = comp_r[j - 1]
                    j -= 1
                comp_s[j] = s
                comp_r[j] = r
                n_comp += 1
                continue
            with_cm = zs_cm[chip[s]]
            cm_row = cm[chip[s]] if with_cm else no_cm
            m_s = mat and with_cm
            b = np.float32(state[s]) if running else ped[s]
            c_bg = fill[s] - b
            if write_wf:
                for i in range(lo, lo + ns):
                    t = bins[i]
                    cmv = cm_row[t] if t < N_SAMPLES else np.float32(0.0)
                    corr[i] = zs_value(np.float32(adc[i]), b, cmv, m_s)
            if c_bg <= thr_hit[s] and c_bg <= thr_sample[s]:
                a, tb, q, w, h = sparse_row_pulse(
                    bins, adc, lo, lo + ns, b, cm_row, m_s, thr_hit[s], thr_sample[s], n_min
                )
            else:
                _laid_out(bins, adc, lo, lo + ns, c_bg, b, cm_row, m_s, buf)
                a, tb, q, w, h = row_pulse(buf, thr_hit[s], thr_sample[s], n_min)
            amp[e, s] = a
            tbin[e, s] = tb
            integral[e, s] = q
            width[e, s] = w
            hit[e, s] = h
        if n_comp:
            counters[2] += 1
            if craw.shape[0] == 0:
                craw = np.empty((n_s, N_SAMPLES), np.float32)
            moved |= _complete_rows(
                comp_s, comp_r, n_comp, sample_start, adc, chip, ped, state, running,
                cm_method, mat, b0, b1, alpha, quiet_lim, thr_hit, thr_sample, n_min, craw,
                cbase, cchip, cquiet, cm, ok, no_cells, buf, e, amp, tbin, integral, width, hit,
                corr, write_wf,
            )  # fmt: skip
        if write_wf or moved:
            for s in range(n_s):
                b = np.float32(state[s]) if running else ped[s]
                c_bg = fill[s] - b
                if write_wf:
                    bg[e, s] = c_bg
                if moved and mark[s] != stamp and c_bg > thr_hit[s]:
                    buf[:] = c_bg
                    a, tb, q, w, h = row_pulse(buf, thr_hit[s], thr_sample[s], n_min)
                    amp[e, s] = a
                    tbin[e, s] = tb
                    integral[e, s] = q
                    width[e, s] = w
                    hit[e, s] = h
        if running:
            for c in range(n_c):
                for k in range(n_k):
                    r = fpn_row[c, k]
                    if r >= 0:
                        _row_float(adc, sample_start[r], buf)
                        m = row_window_mean(buf, b0, b1)
                        fpn_state[c, k] += alpha * (m - fpn_state[c, k])
    return counters


@njit(cache=True, nogil=True)
def _row_float(adc, lo, out):
    for t in range(N_SAMPLES):
        out[t] = np.float32(adc[lo + t])


@njit(cache=True, nogil=True)
def _complete_rows(
    comp_s, comp_r, n_comp, sample_start, adc, chip, ped, state, running, cm_method,
    materialised, b0, b1, alpha, quiet_lim, thr_hit, thr_sample, n_min,
    craw, cbase, cchip, cquiet, cm, ok, no_cells, buf,
    e, amp, tbin, integral, width, hit, corr, write_wf,
):  # fmt: skip
    """The complete strip rows of event e as the dense path treats them (common mode ``cm`` /
    ``ok`` from the complete FPN rows, the quiet complete strips for the chips without); True
    when a running baseline moved."""
    n_c = cm.shape[0]
    for j in range(n_comp):
        s = comp_s[j]
        _row_float(adc, sample_start[comp_r[j]], craw[j])
        cbase[j] = np.float32(state[s]) if running else ped[s]
        cchip[j] = chip[s]
    if materialised and cm_method != CM_NONE:
        for j in range(n_comp):
            s = comp_s[j]
            cquiet[j] = is_quiet(craw[j], no_cells[0], cbase[j], False, quiet_lim[s])
        quiet_common_mode_raw(craw[:n_comp], no_cells, cbase[:n_comp], False, cchip[:n_comp],
                              cquiet[:n_comp], cm_method == CM_MEDIAN, cm, ok,
                              cm_method == CM_FPN)  # fmt: skip
    for c in range(n_c):
        if not ok[c]:
            cm[c, :] = 0.0
    moved = False
    for j in range(n_comp):
        s = comp_s[j]
        r = craw[j]
        b = cbase[j]
        cm_row = cm[chip[s]]
        if materialised:
            above = write_wf or any_above_m(r, no_cells[0], b, False, cm_row, thr_hit[s])
        else:
            above = write_wf or any_above(r, cm_row, b, thr_hit[s])
        if above:
            if materialised:
                corrected_m(r, no_cells[0], b, False, cm_row, buf)
            else:
                corrected(r, cm_row, b, buf)
            a, tb, q, w, h = row_pulse(buf, thr_hit[s], thr_sample[s], n_min)
        else:
            a, tb, q, w, h = np.float32(0.0), -1, np.float32(0.0), 0, False
        amp[e, s] = a
        tbin[e, s] = tb
        integral[e, s] = q
        width[e, s] = w
        hit[e, s] = h
        if write_wf:
            lo = sample_start[comp_r[j]]
            for t in range(N_SAMPLES):
                corr[lo + t] = buf[t]
        if running and not h:
            m = window_mean_minus(r, cm_row, b0, b1)
            if abs(m - state[s]) < quiet_lim[s]:
                state[s] += alpha * (m - state[s])
                moved = True
    return moved
