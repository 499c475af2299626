"""The decoder kernel: one pass of the state machine over a batch of data datagrams.

Semantics and the tables it fills are described in :mod:`agetdaq.protocol.decode_kernel`; the table
layout and row writers are in :mod:`agetdaq.protocol.decode_tables`, the frame and ADC-run scans in
:mod:`agetdaq.protocol.decode_scan`.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from agetdaq.protocol.decode_scan import _ADC_X4, _ALL_BITS, _NIBBLES, _frame_body_end
from agetdaq.protocol.decode_tables import (
    _E_BIN_OOR,
    _E_CHAN_OOR,
    _E_DUP,
    _E_FOREIGN,
    _E_FSIZE,
    _E_FTRUNC,
    _E_MISSING_EOE,
    _E_NOT_DATA,
    _E_ORPHAN,
    _E_OVERFLOW,
    _E_REJECTED,
    _E_SEQ,
    _E_SHORT,
    _E_TRAILING,
    _E_UNEXPECTED,
    _E_UNKNOWN,
    _E_WINDOW,
    _F_BAD,
    _F_FTRUNC,
    _F_OOR,
    _F_OVERFLOW,
    _F_SEQ,
    _F_TRUNCATED,
    _K_EOE,
    _K_HIT_CNT,
    _K_LAST_CELL,
    _K_NULL,
    _K_SOE,
    _K_TIME_BIN_IX,
    _K_UNKNOWN,
    C_AUX,
    C_CHANNELS,
    C_EVENTS,
    C_SAMPLES,
    CH_CARD,
    CH_CHANNEL,
    CH_CHIP,
    CH_N_SAMPLES,
    CH_SAMPLE_START,
    CHAN_DROPPED,
    CHAN_NONE,
    EV_COUNT,
    EV_FLAGS,
    EV_TIMESTAMP,
    MAX_DAQ_CHANNEL,
    N_EV_COLS,
    N_TIME_BINS,
    PEND_EOE,
    PEND_NONE,
    PEND_SOE,
    RESYNC_RUN,
    SOE_RAW_WORDS,
    ST_CHAN_ROW,
    ST_DATAGRAM,
    ST_EOE_HI,
    ST_EV_ROW,
    ST_EV_WORDS,
    ST_IN_EVENT,
    ST_LAST_LEAD,
    ST_NEXT_BIN,
    ST_OOW_LEAD,
    ST_OOW_RUN,
    ST_PEND_KIND,
    ST_PEND_LEFT,
    ST_SYNCED,
    V_DECODED,
    V_DUPLICATE,
    V_OUT_OF_WINDOW,
    V_REJECTED,
    V_SKIPPED,
    _close_event,
    _end_event,
    _event_header,
    _open_event,
    _outside_error,
    _write_aux,
)


@njit(cache=True, nogil=True)
def decode_batch(
    buf: np.ndarray,
    quads: np.ndarray,
    lengths: np.ndarray,
    has_lead: bool,
    check_seq: bool,
    eoe_offset: int,
    lut: np.ndarray,
    state: np.ndarray,
    counts: np.ndarray,
    ev: np.ndarray,
    ch: np.ndarray,
    tbin: np.ndarray,
    adc: np.ndarray,
    aux: np.ndarray,
    errors: np.ndarray,
    validate: bool,
    card_id: int,
    window: int,
    verdict: np.ndarray,
) -> None:
    """Decode datagrams ``buf[d, :lengths[d] // 2]`` (uint16 rows), appending to the tables.

    ``quads`` is :func:`~agetdaq.protocol.decode_scan.quad_view` of ``buf`` (or an empty uint64
    array).

    ``counts`` (rows already used: events, channels, samples, aux) and ``state`` are updated in
    place; ``errors`` is incremented by DecodeError index. An event still open at the end stays
    the last row of ``ev`` (``state[ST_IN_EVENT] == 1``) with its channel/aux counts updated.
    With ``validate`` a datagram is judged as a whole (``card_id`` >= 0: the board's card, any
    otherwise; ``window``: the board's sequence window) and, if bad, undone: the tables and the
    state are as if it never came. ``verdict[d]`` says what became of datagram ``d`` (``V_*``).
    """
    n_dg = min(buf.shape[0], lengths.shape[0])
    stride = buf.shape[1]
    cap_ev = ev.shape[0]
    cap_ch = ch.shape[0]
    cap_s = min(tbin.shape[0], adc.shape[0])
    cap_aux = aux.shape[0]
    n_quads = quads.shape[0]
    in_ev = state[ST_IN_EVENT] != 0
    er = state[ST_EV_ROW]
    pk = state[ST_PEND_KIND]
    pl = state[ST_PEND_LEFT]
    cur = state[ST_CHAN_ROW]
    nb = state[ST_NEXT_BIN]
    last_lead = state[ST_LAST_LEAD]
    dg0 = state[ST_DATAGRAM]
    nw = state[ST_EV_WORDS]
    eoe_hi = state[ST_EOE_HI]
    nev = counts[C_EVENTS]
    nch = counts[C_CHANNELS]
    ns = counts[C_SAMPLES]
    naux = counts[C_AUX]
    synced = state[ST_SYNCED]
    oow_lead = state[ST_OOW_LEAD]
    oow_run = state[ST_OOW_RUN]
    off = 1 if has_lead else 0
    track = has_lead and check_seq
    saved = np.empty(N_EV_COLS, np.int64)  # the open event's row as it was before a datagram

    for d in range(n_dg):
        dgi = dg0 + d
        row = buf[d]
        length = max(lengths[d], 0)
        avail = min(length, 2 * stride) // 2
        if length & 1:
            errors[_E_SHORT] += 1
        nfw = avail - off
        verdict[d] = V_SKIPPED
        if nfw < 2:
            if not length & 1:
                errors[_E_SHORT] += 1
            continue
        sof = np.int64(row[off])
        if (sof & 0xFE00) != 0x0800:
            errors[_E_NOT_DATA] += 1
            continue
        src = sof & 0x1F
        if validate and card_id >= 0 and src != card_id:
            errors[_E_FOREIGN] += 1
            errors[_E_REJECTED] += 1
            verdict[d] = V_REJECTED
            continue
        lead = np.int64(row[0]) & 0x1FF
        if track:
            if lead == last_lead:
                errors[_E_DUP] += 1
                verdict[d] = V_DUPLICATE
                continue
            if validate and lead < 0x100 and last_lead >= 0:
                ahead = (lead - last_lead - 1) & 0xFF
                if window <= ahead < 256 - window:
                    oow_run = oow_run + 1 if lead == ((oow_lead + 1) & 0xFF) else 1
                    oow_lead = lead
                    if oow_run < RESYNC_RUN:
                        errors[_E_WINDOW] += 1
                        verdict[d] = V_OUT_OF_WINDOW
                        continue
                    # numbers in step among themselves: the board's (its first reply was
                    # lost); followed as after a gap
                oow_run = 0
        # what a rejected datagram must leave as it was
        s_in_ev, s_er, s_pk, s_pl, s_cur, s_nb = in_ev, er, pk, pl, cur, nb
        s_last, s_nw, s_hi, s_synced = last_lead, nw, eoe_hi, synced
        s_nev, s_nch, s_ns, s_naux = nev, nch, ns, naux
        s_cur_n = 0
        if validate:
            if in_ev:
                for c in range(N_EV_COLS):
                    saved[c] = ev[er, c]
            if cur >= 0:
                s_cur_n = ch[cur, CH_N_SAMPLES]
        bad = 0
        restart = track and lead >= 0x100  # the board restarted its sequence (a reboot cuts)
        if track:
            if lead < 0x100 and last_lead >= 0 and lead != ((last_lead + 1) & 0xFF):
                errors[_E_SEQ] += 1
                if in_ev:
                    _close_event(ev, er, nch, naux, nw, dgi, _F_TRUNCATED | _F_SEQ)
                    in_ev = False
                cur = CHAN_NONE
                pk = PEND_NONE
                pl = 0
                synced = 0
            last_lead = lead
        b0 = off + 2
        frame_errors = errors[_E_FSIZE] + errors[_E_FTRUNC] + errors[_E_TRAILING]
        b1, truncated = _frame_body_end(row, off, avail, length, 2 * stride, errors)
        if errors[_E_FSIZE] + errors[_E_FTRUNC] + errors[_E_TRAILING] != frame_errors:
            bad += synced

        i = b0
        while i < b1:
            w = np.int64(row[i])
            if pl > 0:  # raw words after SOE / EOE
                if pk == PEND_SOE:
                    if in_ev:
                        k = SOE_RAW_WORDS - pl
                        if k < 3:
                            ev[er, EV_TIMESTAMP] |= w << (16 * k)
                        else:
                            ev[er, EV_COUNT] |= w << (16 * (k - 3))
                        nw += 1
                elif in_ev:
                    nw += 1
                    _end_event(ev, er, eoe_hi, w, nw, eoe_offset, nch, naux, dgi, errors)
                    in_ev = False
                    synced = 1 if track else 0
                    cur = CHAN_NONE
                pl -= 1
                i += 1
                continue

            if w >= 0xC000:  # channel header
                if in_ev:
                    nw += 1
                    chn = w & 0x7F
                    if chn > MAX_DAQ_CHANNEL:
                        errors[_E_CHAN_OOR] += 1
                        ev[er, EV_FLAGS] |= _F_OOR
                        cur = CHAN_DROPPED
                        bad += synced
                    elif validate and card_id >= 0 and ((w >> 9) & 0x1F) != card_id:
                        errors[_E_FOREIGN] += 1
                        cur = CHAN_DROPPED
                        bad += synced
                    elif nch < cap_ch:
                        ch[nch, CH_CARD] = (w >> 9) & 0x1F
                        ch[nch, CH_CHIP] = (w >> 7) & 0x3
                        ch[nch, CH_CHANNEL] = chn
                        ch[nch, CH_SAMPLE_START] = ns
                        ch[nch, CH_N_SAMPLES] = 0
                        cur = nch
                        nch += 1
                        nb = 0
                        if i + 1 < b1 and (row[i + 1] & 0xFE00) == 0x0E00:  # ZS: its first bin
                            nb = np.int64(row[i + 1]) & 0x1FF
                            nw += 1
                            i += 1
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                        cur = CHAN_DROPPED
                else:
                    errors[_E_ORPHAN] += 1
                    bad += synced
                i += 1
                continue

            if (w & 0xF000) == 0x3000:  # ADC sample: copy the whole run
                if not in_ev:
                    errors[_E_ORPHAN] += 1
                    bad += synced
                    i += 1
                    continue
                if cur >= 0:
                    room = min(cap_s - ns, N_TIME_BINS - nb)
                    if room > 0:
                        lim = min(b1, i + room)
                        # _adc_run_end written out: an inlined call refcounts its arrays
                        j = i + 1
                        base = d * stride
                        q = (base + j) >> 2
                        if j < lim and q < n_quads:
                            y = ((quads[np.uint64(q)] & _NIBBLES) ^ _ADC_X4) & (
                                _ALL_BITS << np.uint64(16 * ((base + j) & 3))
                            )
                            if y == 0:
                                q += 1
                                while 4 * q + 16 <= base + lim and q + 4 <= n_quads:
                                    u = np.uint64(q)
                                    z = (
                                        ((quads[u] & _NIBBLES) ^ _ADC_X4)
                                        | ((quads[u + 1] & _NIBBLES) ^ _ADC_X4)
                                        | ((quads[u + 2] & _NIBBLES) ^ _ADC_X4)
                                        | ((quads[u + 3] & _NIBBLES) ^ _ADC_X4)
                                    )
                                    if z != 0:
                                        break
                                    q += 4
                                while 4 * q < base + lim and q < n_quads:
                                    y = (quads[np.uint64(q)] & _NIBBLES) ^ _ADC_X4
                                    if y != 0:
                                        break
                                    q += 1
                            if y != 0:
                                j = min(4 * q + (trailing_zeros(y) >> 4) - base, lim)
                            else:
                                j = min(4 * q - base, lim)
                        while j < lim and (row[j] >> 12) == 3:
                            j += 1
                        run = j - i
                        for k in range(np.uint64(run)):  # no views: they would be refcounted
                            adc[np.uint64(ns) + k] = row[np.uint64(i) + k] & 0xFFF
                            tbin[np.uint64(ns) + k] = np.uint64(nb) + k
                        ch[cur, CH_N_SAMPLES] += run
                        ns += run
                        nb += run
                        nw += run
                        i = j
                        continue
                    if nb >= N_TIME_BINS:
                        errors[_E_BIN_OOR] += 1
                        ev[er, EV_FLAGS] |= _F_OOR
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                    nb += 1
                elif cur == CHAN_NONE:
                    errors[_E_UNEXPECTED] += 1
                    ev[er, EV_FLAGS] |= _F_BAD
                    bad += synced
                nw += 1
                i += 1
                continue

            if (w & 0xFE00) == 0x0E00 and in_ev and cur >= 0:  # TIME_BIN_IX (ZS), fast path
                nb = w & 0x1FF
                nw += 1
                i += 1
                continue

            kind = lut[w]
            i += 1
            if not in_ev:
                if kind != _K_SOE:  # an SOE is opened below
                    if kind != _K_NULL:
                        e = _outside_error(kind)
                        errors[e] += 1
                        bad += synced
                    if kind == _K_EOE:
                        pk = PEND_EOE
                        pl = 1
                    continue
            else:
                nw += 1
                if kind == _K_EOE:
                    eoe_hi = w & 0xF
                    if i < b1:  # the size word is in this frame
                        nw += 1
                        _end_event(
                            ev, er, eoe_hi, np.int64(row[i]), nw, eoe_offset, nch, naux, dgi, errors
                        )
                        i += 1
                        in_ev = False
                        synced = 1 if track else 0
                        cur = CHAN_NONE
                    else:
                        pk = PEND_EOE
                        pl = 1
                    continue
                if kind == _K_TIME_BIN_IX:
                    if cur >= 0:
                        nb = w & 0x1FF
                    elif cur == CHAN_NONE:
                        errors[_E_UNEXPECTED] += 1
                        ev[er, EV_FLAGS] |= _F_BAD
                        bad += synced
                    continue
                if kind in (_K_HIT_CNT, _K_LAST_CELL):
                    cur = CHAN_NONE
                    if (
                        validate
                        and card_id >= 0
                        and kind == _K_HIT_CNT
                        and ((w >> 9) & 0x1F) != card_id
                    ):
                        errors[_E_FOREIGN] += 1
                        bad += synced
                        continue
                    if naux < cap_aux:
                        _write_aux(aux, naux, kind == _K_HIT_CNT, w)
                        naux += 1
                    else:
                        errors[_E_OVERFLOW] += 1
                        ev[er, EV_FLAGS] |= _F_OVERFLOW
                    continue
                if kind == _K_NULL:
                    continue
                if kind != _K_SOE:
                    errors[_E_UNKNOWN if kind == _K_UNKNOWN else _E_UNEXPECTED] += 1
                    ev[er, EV_FLAGS] |= _F_BAD
                    bad += synced
                    continue
                errors[_E_MISSING_EOE] += 1
                if not restart:
                    bad += synced
                _close_event(ev, er, nch, naux, nw - 1, dgi, _F_TRUNCATED)
                in_ev = False

            # START_OF_EVENT (outside an event now)
            pk = PEND_SOE
            pl = SOE_RAW_WORDS
            cur = CHAN_NONE
            nb = 0
            if nev < cap_ev:
                er = nev
                nev += 1
                _open_event(ev, er, w, src, nch, naux, dgi)
                in_ev = True
                nw = 1
                if i + SOE_RAW_WORDS <= b1:  # the 5 words are in this frame
                    _event_header(ev, er, row, i)
                    nw += SOE_RAW_WORDS
                    i += SOE_RAW_WORDS
                    pk = PEND_NONE
                    pl = 0
            else:
                errors[_E_OVERFLOW] += 1

        if truncated:  # the words that followed are lost: resync at the next frame
            if in_ev:
                ev[er, EV_FLAGS] |= _F_FTRUNC
                cur = CHAN_NONE
                if pk == PEND_EOE and pl > 0:
                    _close_event(ev, er, nch, naux, nw, dgi, _F_TRUNCATED)
                    in_ev = False
            pk = PEND_NONE
            pl = 0

        if validate and bad:  # undo the datagram: nothing of it joins the stream
            if s_in_ev:
                for c in range(N_EV_COLS):
                    ev[s_er, c] = saved[c]
            if s_cur >= 0:
                ch[s_cur, CH_N_SAMPLES] = s_cur_n
            in_ev, er, pk, pl, cur, nb = s_in_ev, s_er, s_pk, s_pl, s_cur, s_nb
            last_lead, nw, eoe_hi, synced = s_last, s_nw, s_hi, s_synced
            nev, nch, ns, naux = s_nev, s_nch, s_ns, s_naux
            errors[_E_REJECTED] += 1
            verdict[d] = V_REJECTED
        else:
            verdict[d] = V_DECODED

    if in_ev:
        _close_event(ev, er, nch, naux, nw, dg0 + n_dg - 1, 0)
    state[ST_IN_EVENT] = 1 if in_ev else 0
    state[ST_EV_ROW] = er
    state[ST_PEND_KIND] = pk
    state[ST_PEND_LEFT] = pl
    state[ST_CHAN_ROW] = cur
    state[ST_NEXT_BIN] = nb
    state[ST_LAST_LEAD] = last_lead
    state[ST_DATAGRAM] = dg0 + n_dg
    state[ST_EV_WORDS] = nw
    state[ST_EOE_HI] = eoe_hi
    state[ST_SYNCED] = synced
    state[ST_OOW_LEAD] = oow_lead
    state[ST_OOW_RUN] = oow_run
    counts[C_EVENTS] = nev
    counts[C_CHANNELS] = nch
    counts[C_SAMPLES] = ns
    counts[C_AUX] = naux
