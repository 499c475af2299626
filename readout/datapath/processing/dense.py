"""The fused processing kernel over dense events (n, strips, 512): baseline -> common mode -> hits,
event by event so that each event's waveforms stay in cache (see :class:`Processor`).

The per-row helpers are in :mod:`~agetdaq.readout.datapath.processing.baseline`; the sparse
kernel (:mod:`~agetdaq.readout.datapath.processing.sparse`) follows the same rules on the samples
that exist.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.readout.datapath.processing.baseline import (
    BASELINE_RUNNING,
    BASELINE_TABLE,
    any_above,
    any_above_m,
    corrected,
    corrected_m,
    fpn_baselines,
    is_quiet,
    strip_baseline,
    window_mean_minus,
)
from agetdaq.readout.datapath.processing.commonmode import (
    CM_FPN,
    CM_MEAN,
    CM_MEDIAN,
    CM_NONE,
    fpn_common_mode_event,
    quiet_common_mode_chip,
)
from agetdaq.readout.datapath.processing.hits import row_pulse
from agetdaq.readout.datapath.processing.pedestal import row_window_mean


@njit(cache=True, nogil=True)
def running_fpn_update(fpn_e, fpn_ok_e, b0, b1, alpha, fpn_state):
    """Move the FPN running baselines towards this event's complete FPN rows."""
    n_c, n_k = fpn_state.shape
    for c in range(n_c):
        for k in range(n_k):
            if fpn_ok_e[c, k]:
                m = row_window_mean(fpn_e[c, k], b0, b1)
                fpn_state[c, k] += alpha * (m - fpn_state[c, k])


@njit(cache=True, nogil=True)
def process_events(
    strips, complete, zs_slot, zs_mask, fpn, fpn_ok, chip, ped, cells, fpn_ped, state, fpn_state,
    mode, cm_method, cm_zs, b0, b1, alpha, quiet_lim, thr_hit, thr_sample, n_min,
    amp, tbin, integral, width, hit, wf_out, write_wf,
):  # fmt: skip
    """Fused chain over a batch, event by event and in an event chip by chip (see Processor).

    ``cells`` (S, T) replaces ``ped`` when its first dimension is S (table mode). Complete rows
    get the common mode subtracted; with ``cm_zs`` also the zero-suppressed rows (``zs_slot``
    (n, S) >= 0) of a chip whose common mode came from its complete FPN rows, at the bins they
    were sent with (``zs_mask``, see waveforms.scatter_batch). ``state`` / ``fpn_state``
    (float64) are updated in running mode from complete, hit-free strips whose window mean is
    within ``quiet_lim`` of the state.
    Outputs (n, S): amp, tbin, integral, width, hit; corrected waveforms if ``write_wf``.
    A materialised event (see baseline.py) computes raw - baseline on the fly: no corrected copy
    of the event is written unless the waveforms are asked for.
    """
    n, n_s, n_t = strips.shape
    n_c, n_k = fpn_ped.shape
    use_cells = mode == BASELINE_TABLE and cells.shape[0] == n_s
    base = np.empty(n_s, np.float32)
    fbase = np.empty((n_c, n_k), np.float32)
    cm = np.zeros((n_c, n_t), np.float32)
    no_cm = np.zeros(n_t, np.float32)
    ok = np.zeros(n_c, np.bool_)
    zs_cm = np.zeros(n_c, np.bool_)
    cm_zs_row = np.zeros(n_t, np.float32)  # a zero-suppressed row's: 0 at its missing bins
    buf = np.empty(n_t, np.float32)
    members = np.empty(n_s, np.int64)
    scratch = np.empty(n_s, np.float32)
    # the strips chip by chip (ascending within a chip): a chip's rows stay in cache from the
    # quiet test through the common mode to the hits
    by_chip = np.argsort(chip, kind="mergesort")
    first = np.zeros(n_c + 1, np.int64)
    for s in range(n_s):
        first[chip[s] + 1] += 1
    for c in range(n_c):
        first[c + 1] += first[c]
    for e in range(n):
        raw = strips[e]
        fpn_baselines(fpn[e], mode, fpn_ped, fpn_state, b0, b1, fbase)
        ok[:] = False
        if cm_method == CM_FPN:
            fpn_common_mode_event(fpn[e], fpn_ok[e], fbase, cm, ok)
        for c in range(n_c):
            zs_cm[c] = cm_zs and ok[c]  # an FPN estimate: zero-suppressed rows take it too
        materialised = use_cells or cm_method in (CM_MEDIAN, CM_MEAN)
        if cm_method == CM_FPN and not ok.all():
            materialised = True
        for c in range(n_c):
            for o in range(first[c], first[c + 1]):
                s = by_chip[o]
                base[s] = strip_baseline(raw, s, mode, ped, use_cells, state, b0, b1)
            if materialised and cm_method != CM_NONE and not ok[c]:
                m = 0
                for o in range(first[c], first[c + 1]):
                    s = by_chip[o]
                    if complete[e, s] and is_quiet(
                        raw[s], cells[s % cells.shape[0]], base[s], use_cells, quiet_lim[s]
                    ):
                        members[m] = s
                        m += 1
                ok[c] = quiet_common_mode_chip(raw, cells, base, use_cells, members, m,
                                               cm_method == CM_MEDIAN, cm[c], scratch)  # fmt: skip
            if not ok[c]:
                cm[c, :] = 0.0
            for o in range(first[c], first[c + 1]):
                s = by_chip[o]
                r = raw[s]
                cr = cells[s % cells.shape[0]]
                b = base[s]
                if complete[e, s]:
                    cm_row = cm[c]
                elif zs_cm[c] and zs_slot[e, s] >= 0:
                    sent = zs_mask[zs_slot[e, s]]
                    for t in range(n_t):
                        cm_zs_row[t] = cm[c, t] if sent[t] else np.float32(0.0)
                    cm_row = cm_zs_row
                else:
                    cm_row = no_cm
                if materialised:
                    above = write_wf or any_above_m(r, cr, b, use_cells, cm_row, thr_hit[s])
                else:
                    above = write_wf or any_above(r, cm_row, b, thr_hit[s])
                if above:
                    out = wf_out[e, s] if write_wf else buf
                    if materialised:
                        corrected_m(r, cr, b, use_cells, cm_row, out)
                    else:
                        corrected(r, cm_row, b, out)
                    a, tb, q, w, h = row_pulse(out, thr_hit[s], thr_sample[s], n_min)
                else:
                    a, tb, q, w, h = np.float32(0.0), -1, np.float32(0.0), 0, False
                amp[e, s] = a
                tbin[e, s] = tb
                integral[e, s] = q
                width[e, s] = w
                hit[e, s] = h
                if mode == BASELINE_RUNNING and complete[e, s] and not h:
                    m_w = window_mean_minus(r, cm_row, b0, b1)
                    if abs(m_w - state[s]) < quiet_lim[s]:
                        state[s] += alpha * (m_w - state[s])
        if mode == BASELINE_RUNNING:
            running_fpn_update(fpn[e], fpn_ok[e], b0, b1, alpha, fpn_state)
