"""What the emulated card's data path depends on: the slot map and :class:`CardSettings`.

``SOURCE_ROWS`` and ``SLOT_KIND`` map DAQ channel slots to physics rows; ``CardSettings`` is kept
by the board and flattened into the int vectors (``P_*``, ``C_*`` layouts) the kernels of
:mod:`agetdaq.readout.simulation.emulator.cardkernels` read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agetdaq.protocol import channels as chn

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
