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
   is the one of :mod:`agetdaq.protocol.encode`, so the SOE header and EOE are added by the framer.

Choices [I]: reset slots carry a copy of the chip's FPN 1 row; the hit count counts the signal
channels whose discriminator fired; ``sca cnt`` below 512 reads the first ``cnt`` cells.
:func:`reference_event` is the plain-Python twin the tests compare against. The settings and slot
map are in :mod:`agetdaq.readout.simulation.emulator.cardsettings`, the kernels in
:mod:`agetdaq.readout.simulation.emulator.cardkernels`.
"""

from __future__ import annotations

import numpy as np

from agetdaq.protocol import channels as chn
from agetdaq.protocol.event import Channel, Event
from agetdaq.readout.simulation.emulator.cardkernels import (
    body_words_bound,
    discriminate_kernel,
    encode_body_kernel,
    fill_pedestal_histos_kernel,
    read_mask_kernel,
)
from agetdaq.readout.simulation.emulator.cardsettings import (
    N_CHIPS,
    N_ROWS,
    N_SLOTS,
    SLOT_KIND,
    SOURCE_ROWS,
    ZS_IGNORED_LAST_BINS,
    CardSettings,
)


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
