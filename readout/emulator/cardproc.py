"""Card-side processing of one event, as the BEC firmware does it (PROTOCOL.md §2, §4).

Input is the analogue picture of the four AGETs from the physics model: ``raw`` uint16
(4, 68, 512), rows 0..63 = physical channels 1..64, rows 64..67 = FPN 1..4. The card:

1. decides which DAQ channel slots it reads (:func:`read_mask_kernel`): reset slots with
   ``keep_rst``; all channels with ``aget mode 1`` or ``forceon_all``; otherwise the channels whose
   discriminator fired (hit register), FPN slots with ``aget fpn 1``; ``forceon``/``forceoff``
   rules apply when ``modify_hit_reg 1``; chips whose ``asic_mask`` bit is set are not read;
2. adds the signed pedestal-equalisation constant (``subtract_ped 1``) and clamps to 12 bits;
3. zero-suppresses (``zero_suppress 1``): keeps samples beyond ``thr`` (above for ZS polarity 0,
   below for 1) plus ``pre`` bins before and ``post`` bins after; the last 4 bins never start a run;
4. writes the event body words (:func:`encode_body_kernel`): 4 LAST_CELL_READ words
   (``emit_lst_cell_rd``), then per chip its channels and, right after the chip's last channel,
   its HIT_CNT word (``emit_hit_cnt``); hit counts of chips without channels go last. The layout
   is the one of :mod:`protocol.encode`, so the SOE header and EOE are added by the framer.

Choices [I]: reset slots carry a copy of the chip's FPN 1 row; the hit count counts the signal
channels whose discriminator fired; ``sca cnt`` below 512 reads the first ``cnt`` cells.
:func:`reference_event` is the plain-Python twin the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from protocol import channels as chn
from protocol.event import Channel, Event

N_CHIPS = 4
N_ROWS = 68  # physics rows: 64 physical + 4 FPN
N_SLOTS = chn.N_LUT_INDICES  # DAQ indices 0..78
ZS_IGNORED_LAST_BINS = 4

# params vector layout
(
    P_CARD,
    P_NBINS,
    P_RST_LEN,
    P_KEEP_RST,
    P_SUB_PED,
    P_ZS,
    P_PRE,
    P_POST,
    P_EMIT_HIT_CNT,
    P_EMIT_EMPTY,
    P_EMIT_LCR,
    P_FORCEON_ALL,
    P_MODIFY_HIT,
    P_ASIC_MASK,
    N_PARAMS,
) = range(15)
# chip_params columns
C_ALL, C_FPN, C_ZS_POL, N_CHIP_PARAMS = range(4)


def _source_rows() -> np.ndarray:
    """``SOURCE_ROWS[rst_len, daq_index]``: physics row read at a slot, -1 = not an AGET slot."""
    rows = np.full((2, N_SLOTS), -1, dtype=np.int16)
    for rst_len in (0, 1):
        for phys in range(1, 65):
            rows[rst_len, chn.daq_index(phys, rst_len)] = phys - 1
        for k, ix in enumerate(chn.fpn_indices(rst_len)):
            rows[rst_len, ix] = 64 + k
        for ix in chn.reset_indices(rst_len):
            rows[rst_len, ix] = 64  # [I] reset slots carry the FPN 1 waveform
    rows.setflags(write=False)
    return rows


SOURCE_ROWS = _source_rows()
SLOT_KIND = chn.INDEX_KIND_LUT.astype(np.int16)


@dataclass
class CardSettings:
    """Everything the card's data path depends on; the board keeps it, the kernels read it."""

    card_id: int = 0
    sca_cnt: int = 512
    rst_len: int = 0
    keep_rst: int = 0
    subtract_ped: int = 0
    zero_suppress: int = 0
    zs_pre: int = 0
    zs_post: int = 0
    emit_hit_cnt: int = 0
    emit_empty_ch: int = 0
    emit_lst_cell_rd: int = 0
    forceon_all: int = 0
    modify_hit_reg: int = 0
    asic_mask: int = 0
    aget_mode: np.ndarray = field(default_factory=lambda: np.zeros(N_CHIPS, np.int64))
    aget_fpn: np.ndarray = field(default_factory=lambda: np.zeros(N_CHIPS, np.int64))
    zs_polarity: np.ndarray = field(default_factory=lambda: np.zeros(N_CHIPS, np.int64))
    ped: np.ndarray = field(default_factory=lambda: np.zeros((N_CHIPS, N_SLOTS), np.int16))
    thr: np.ndarray = field(default_factory=lambda: np.zeros((N_CHIPS, N_SLOTS), np.int16))
    forceon: np.ndarray = field(default_factory=lambda: np.zeros((N_CHIPS, N_SLOTS), np.bool_))
    forceoff: np.ndarray = field(default_factory=lambda: np.zeros((N_CHIPS, N_SLOTS), np.bool_))

    @property
    def n_bins(self) -> int:
        return max(1, min(int(self.sca_cnt), 512))

    def params(self) -> np.ndarray:
        p = np.zeros(N_PARAMS, dtype=np.int64)
        p[P_CARD] = self.card_id
        p[P_NBINS] = self.n_bins
        p[P_RST_LEN] = self.rst_len
        p[P_KEEP_RST] = self.keep_rst
        p[P_SUB_PED] = self.subtract_ped
        p[P_ZS] = self.zero_suppress
        p[P_PRE] = self.zs_pre
        p[P_POST] = self.zs_post
        p[P_EMIT_HIT_CNT] = self.emit_hit_cnt
        p[P_EMIT_EMPTY] = self.emit_empty_ch
        p[P_EMIT_LCR] = self.emit_lst_cell_rd
        p[P_FORCEON_ALL] = self.forceon_all
        p[P_MODIFY_HIT] = self.modify_hit_reg
        p[P_ASIC_MASK] = self.asic_mask
        return p

    def chip_params(self) -> np.ndarray:
        c = np.zeros((N_CHIPS, N_CHIP_PARAMS), dtype=np.int64)
        c[:, C_ALL] = self.aget_mode
        c[:, C_FPN] = self.aget_fpn
        c[:, C_ZS_POL] = self.zs_polarity
        return c


# ---- kernels ------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def discriminate_kernel(
    raw: np.ndarray, base: np.ndarray, level: np.ndarray, up: bool, n_bins: int, hit: np.ndarray
) -> None:
    """AGET discriminators: ``hit[c, r]`` when the row leaves ``base`` by more than ``level``
    in the signal direction (``up``: above the baseline) anywhere in the first n_bins cells."""
    for c in range(raw.shape[0]):
        for r in range(raw.shape[1]):
            b = base[c, r]
            lv = level[c, r]
            fired = False
            for k in range(n_bins):
                d = raw[c, r, k] - b
                if (d > lv) if up else (-d > lv):
                    fired = True
                    break
            hit[c, r] = fired


@njit(cache=True, nogil=True)
def read_mask_kernel(
    hit: np.ndarray,
    forceon: np.ndarray,
    forceoff: np.ndarray,
    params: np.ndarray,
    chip_params: np.ndarray,
    source_rows: np.ndarray,
    slot_kind: np.ndarray,
    mask: np.ndarray,
) -> None:
    """Which (chip, DAQ slot) the card reads this event (rules in the module docstring)."""
    rst = params[P_RST_LEN]
    for c in range(mask.shape[0]):
        masked = (params[P_ASIC_MASK] >> c) & 1
        all_ch = chip_params[c, C_ALL] != 0 or params[P_FORCEON_ALL] != 0
        for i in range(mask.shape[1]):
            kind = slot_kind[rst, i]
            take = False
            if masked == 0 and kind != 0:
                if params[P_MODIFY_HIT] != 0 and forceoff[c, i]:
                    take = False
                elif kind == 3:
                    take = params[P_KEEP_RST] != 0
                elif all_ch or (params[P_MODIFY_HIT] != 0 and forceon[c, i]):
                    take = True
                elif kind == 2:
                    take = chip_params[c, C_FPN] != 0
                else:
                    take = hit[c, source_rows[rst, i]]
            mask[c, i] = take


@njit(cache=True, nogil=True)
def _sample(raw: np.ndarray, c: int, row: int, k: int, ped: int, sub: bool) -> int:
    v = int(raw[c, row, k])
    if sub:
        v += ped
    if v < 0:
        return 0
    if v > 4095:
        return 4095
    return v


@njit(cache=True, nogil=True)
def encode_body_kernel(
    raw: np.ndarray,
    hit: np.ndarray,
    mask: np.ndarray,
    ped: np.ndarray,
    thr: np.ndarray,
    params: np.ndarray,
    chip_params: np.ndarray,
    source_rows: np.ndarray,
    slot_kind: np.ndarray,
    last_cells: np.ndarray,
    out: np.ndarray,
    pos: int,
    stats: np.ndarray,
) -> int:
    """Write the event body (between the SOE words and EOE) at ``out[pos:]``; return the end.

    ``stats[c, 0]`` = slots read of chip c (for the dead time), ``stats[c, 1]`` = hit count.
    ``out`` must hold 4 + 4 + 4 x 79 x (1 + 2 x n_bins) words past ``pos`` (worst case).
    """
    card = params[P_CARD] & 0x1F
    rst = params[P_RST_LEN]
    nb = params[P_NBINS]
    sub = params[P_SUB_PED] != 0
    zs = params[P_ZS] != 0
    pre = params[P_PRE]
    post = params[P_POST]
    keep = np.zeros(nb, dtype=np.bool_)
    p = pos
    if params[P_EMIT_LCR] != 0:
        for c in range(4):
            out[p] = 0x1000 | (c << 10) | (last_cells[c] & 0x3FF)
            p += 1
    deferred = np.zeros(mask.shape[0], dtype=np.bool_)
    for c in range(mask.shape[0]):
        if (params[P_ASIC_MASK] >> c) & 1:
            stats[c, 0] = 0
            stats[c, 1] = 0
            continue
        n_hit = 0
        for i in range(mask.shape[1]):
            if slot_kind[rst, i] == 1 and hit[c, source_rows[rst, i]]:
                n_hit += 1
        stats[c, 1] = n_hit
        pol = chip_params[c, C_ZS_POL]
        n_read = 0
        n_written = 0
        for i in range(mask.shape[1]):
            if not mask[c, i]:
                continue
            n_read += 1
            row = source_rows[rst, i]
            pd = int(ped[c, i])
            header = 0xC000 | (card << 9) | (c << 7) | (i & 0x7F)
            if not zs:
                out[p] = header
                p += 1
                for k in range(nb):
                    out[p] = 0x3000 | _sample(raw, c, row, k, pd, sub)
                    p += 1
                n_written += 1
                continue
            th = int(thr[c, i])
            keep[:] = False
            any_kept = False
            for k in range(nb - ZS_IGNORED_LAST_BINS):
                v = _sample(raw, c, row, k, pd, sub)
                over = v > th if pol == 0 else v < th
                if over:
                    lo = max(0, k - pre)
                    hi = min(nb - 1, k + post)
                    for j in range(lo, hi + 1):
                        keep[j] = True
                    any_kept = True
            if not any_kept and params[P_EMIT_EMPTY] == 0:
                continue
            out[p] = header
            p += 1
            n_written += 1
            prev = -2
            for k in range(nb):
                if keep[k]:
                    if k != prev + 1:
                        out[p] = 0x0E00 | k
                        p += 1
                    out[p] = 0x3000 | _sample(raw, c, row, k, pd, sub)
                    p += 1
                    prev = k
        stats[c, 0] = n_read
        if params[P_EMIT_HIT_CNT] != 0:
            if n_written > 0:
                out[p] = 0x8000 | (card << 9) | (c << 7) | min(n_hit, 127)
                p += 1
            else:
                deferred[c] = True
    for c in range(mask.shape[0]):
        if deferred[c]:
            out[p] = 0x8000 | (card << 9) | (c << 7) | min(stats[c, 1], 127)
            p += 1
    return p


def body_words_bound(n_bins: int = 512) -> int:
    """Worst-case body words of one event."""
    return 8 + N_CHIPS * N_SLOTS * (1 + 2 * n_bins)


@njit(cache=True, nogil=True)
def fill_pedestal_histos_kernel(
    raw: np.ndarray,
    mask: np.ndarray,
    ped: np.ndarray,
    params: np.ndarray,
    source_rows: np.ndarray,
    offset: np.ndarray,
    counts: np.ndarray,
) -> None:
    """serve_target 2: add every sample of every read slot (after ``subtract_ped``) to its
    histogram: ``counts[c, i, v - offset[c, i]]`` for bins inside 0..counts.shape[2]-1."""
    rst = params[P_RST_LEN]
    nb = params[P_NBINS]
    sub = params[P_SUB_PED] != 0
    n_hbins = counts.shape[2]
    for c in range(mask.shape[0]):
        for i in range(mask.shape[1]):
            if not mask[c, i]:
                continue
            row = source_rows[rst, i]
            pd = int(ped[c, i])
            off = int(offset[c, i])
            for k in range(nb):
                b = _sample(raw, c, row, k, pd, sub) - off
                if 0 <= b < n_hbins:
                    counts[c, i, b] += 1


# ---- Python wrapper and reference ----------------------------------------------------------------


class CardProcessor:
    """Runs the kernels for one event with the current :class:`CardSettings`."""

    def __init__(self, settings: CardSettings) -> None:
        self.settings = settings
        self.refresh()
        self.hit = np.zeros((N_CHIPS, N_ROWS), dtype=np.bool_)
        self.mask = np.zeros((N_CHIPS, N_SLOTS), dtype=np.bool_)
        self.stats = np.zeros((N_CHIPS, 2), dtype=np.int64)
        self._out = np.empty(body_words_bound(), dtype=np.uint16)

    def refresh(self) -> None:
        """Re-read the settings (call after any configuration change)."""
        self.params = self.settings.params()
        self.chip_params = self.settings.chip_params()

    def discriminate(self, raw: np.ndarray, base: np.ndarray, level: np.ndarray, up: bool) -> None:
        discriminate_kernel(raw, base, level, up, self.settings.n_bins, self.hit)

    def select(self) -> np.ndarray:
        s = self.settings
        read_mask_kernel(
            self.hit,
            s.forceon,
            s.forceoff,
            self.params,
            self.chip_params,
            SOURCE_ROWS,
            SLOT_KIND,
            self.mask,
        )
        return self.mask

    def body(self, raw: np.ndarray, last_cells: np.ndarray) -> np.ndarray:
        """Body words of one event (a fresh array); call discriminate() first."""
        self.select()
        s = self.settings
        end = encode_body_kernel(
            raw,
            self.hit,
            self.mask,
            s.ped,
            s.thr,
            self.params,
            self.chip_params,
            SOURCE_ROWS,
            SLOT_KIND,
            last_cells,
            self._out,
            0,
            self.stats,
        )
        return self._out[:end].copy()

    def fill_histos(self, raw: np.ndarray, offset: np.ndarray, counts: np.ndarray) -> None:
        self.select()
        fill_pedestal_histos_kernel(
            raw, self.mask, self.settings.ped, self.params, SOURCE_ROWS, offset, counts
        )


def reference_event(
    raw: np.ndarray,
    hit: np.ndarray,
    s: CardSettings,
    last_cells: np.ndarray,
    event_type: int = 0,
    timestamp: int = 0,
    event_count: int = 0,
) -> Event:
    """Plain-Python twin of discriminator-output -> read mask -> ped -> ZS, as an Event."""
    ev = Event(event_type=event_type, timestamp=timestamp, event_count=event_count)
    nb = s.n_bins
    if s.emit_lst_cell_rd:
        ev.last_cells = [(c, int(last_cells[c]) & 0x3FF) for c in range(N_CHIPS)]
    tail_counts = []
    for c in range(N_CHIPS):
        if (s.asic_mask >> c) & 1:
            continue
        n_hit = sum(
            1
            for i in range(N_SLOTS)
            if SLOT_KIND[s.rst_len, i] == chn.KIND_SIGNAL and hit[c, SOURCE_ROWS[s.rst_len, i]]
        )
        written = 0
        for i in range(N_SLOTS):
            kind = int(SLOT_KIND[s.rst_len, i])
            row = int(SOURCE_ROWS[s.rst_len, i])
            if kind == chn.KIND_UNUSED:
                continue
            if s.modify_hit_reg and s.forceoff[c, i]:
                continue
            if kind == chn.KIND_RESET:
                take = bool(s.keep_rst)
            elif s.aget_mode[c] or s.forceon_all or (s.modify_hit_reg and s.forceon[c, i]):
                take = True
            elif kind == chn.KIND_FPN:
                take = bool(s.aget_fpn[c])
            else:
                take = bool(hit[c, row])
            if not take:
                continue
            vals = raw[c, row, :nb].astype(np.int64)
            if s.subtract_ped:
                vals = vals + int(s.ped[c, i])
            vals = np.clip(vals, 0, 4095)
            if not s.zero_suppress:
                bins = np.arange(nb)
            else:
                th = int(s.thr[c, i])
                keep = set()
                for k in range(nb - ZS_IGNORED_LAST_BINS):
                    over = vals[k] > th if s.zs_polarity[c] == 0 else vals[k] < th
                    if over:
                        keep.update(range(max(0, k - s.zs_pre), min(nb - 1, k + s.zs_post) + 1))
                bins = np.array(sorted(keep), dtype=np.int64)
                if bins.size == 0 and not s.emit_empty_ch:
                    continue
            ev.channels.append(
                Channel(s.card_id, c, i, bins.astype(np.uint16), vals[bins].astype(np.uint16))
            )
            written += 1
        if s.emit_hit_cnt:
            entry = (s.card_id, c, min(n_hit, 127))
            (ev.hit_counts if written else tail_counts).append(entry)
    ev.hit_counts.extend(tail_counts)
    return ev
