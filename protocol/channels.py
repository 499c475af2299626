"""AGET channel numbering: physical channels 1..64 <-> DAQ channel indices (PROTOCOL.md §4).

The card reads an AGET as a sequence of *DAQ channel indices*: first the reset cycles, then the
64 physical channels with the 4 fixed-pattern-noise (FPN) channels interleaved.

=========  ===========  ===============  ==================  ==========  =========
rst_len    reset        FPN              signals             last index  n_indices
=========  ===========  ===============  ==================  ==========  =========
0 (2 cyc)  0-1          13, 24, 47, 58   physical 1..64 at   69          70
                                         2-12, 14-23, 25-46,
                                         48-57, 59-69
1 (4 cyc)  0-3          15, 26, 49, 60   everything + 2      71          72
=========  ===========  ===============  ==================  ==========  =========

``n_indices`` counts the indices one AGET produces: reset (2 or 4) + 64 signals + 4 FPN = 70 or 72,
so the last index is 69 or 71 (the firmware constant MAX_CHAN_INDEX_AGET = 71 is the last index with
``rst_len 1``; a PEDTHR_LIST reply carries 72 entries, enough for both). Indices above the last one
(up to 78, the AFTER range) are neither signal, FPN nor reset in AGET mode.
"""

from __future__ import annotations

import numpy as np

N_PHYSICAL = 64
MAX_DAQ_INDEX = 78  # AFTER mode uses 0..78; the channel LUTs cover this range
N_LUT_INDICES = MAX_DAQ_INDEX + 1
N_RESET = {0: 2, 1: 4}

# Kind codes of :data:`INDEX_KIND_LUT`.
KIND_UNUSED = 0
KIND_SIGNAL = 1
KIND_FPN = 2
KIND_RESET = 3

# (first physical channel, offset added to get the DAQ index with rst_len 0)
_SEGMENTS = ((1, 1), (12, 2), (22, 3), (44, 4), (54, 5))
_FPN_RST0 = (13, 24, 47, 58)


def _check_rst_len(rst_len: int) -> int:
    if rst_len not in (0, 1):
        raise ValueError(f"rst_len must be 0 or 1, not {rst_len!r}")
    return 2 * rst_len


def daq_index(physical: int, rst_len: int = 0) -> int:
    """DAQ channel index of AGET physical channel 1..64."""
    shift = _check_rst_len(rst_len)
    if not 1 <= physical <= N_PHYSICAL:
        raise ValueError(f"physical AGET channel must be 1..64, not {physical!r}")
    offset = 0
    for first, off in _SEGMENTS:
        if physical >= first:
            offset = off
    return physical + offset + shift


def physical_channel(index: int, rst_len: int = 0) -> int | None:
    """Physical AGET channel 1..64 read at a DAQ index, or None for reset/FPN/unused indices."""
    _check_rst_len(rst_len)
    if not 0 <= index <= MAX_DAQ_INDEX:
        raise ValueError(f"DAQ channel index must be 0..{MAX_DAQ_INDEX}, not {index!r}")
    value = int(PHYSICAL_LUT[rst_len, index])
    return value if value > 0 else None


def fpn_indices(rst_len: int = 0) -> tuple[int, ...]:
    """The four FPN channel indices."""
    shift = _check_rst_len(rst_len)
    return tuple(i + shift for i in _FPN_RST0)


def reset_indices(rst_len: int = 0) -> tuple[int, ...]:
    """The reset channel indices (2 or 4, starting at 0)."""
    _check_rst_len(rst_len)
    return tuple(range(N_RESET[rst_len]))


def n_indices(rst_len: int = 0) -> int:
    """Number of DAQ indices one AGET produces: reset + 64 signals + 4 FPN (70 or 72)."""
    _check_rst_len(rst_len)
    return N_RESET[rst_len] + N_PHYSICAL + len(_FPN_RST0)


def signal_indices(rst_len: int = 0) -> np.ndarray:
    """DAQ indices of physical channels 1..64, in physical order (int16, length 64)."""
    _check_rst_len(rst_len)
    return DAQ_INDEX_LUT[rst_len, 1:].copy()


def _kind(index: int, rst_len: int) -> int:
    _check_rst_len(rst_len)
    if not 0 <= index <= MAX_DAQ_INDEX:
        return KIND_UNUSED
    return int(INDEX_KIND_LUT[rst_len, index])


def is_signal(index: int, rst_len: int = 0) -> bool:
    return _kind(index, rst_len) == KIND_SIGNAL


def is_fpn(index: int, rst_len: int = 0) -> bool:
    return _kind(index, rst_len) == KIND_FPN


def is_reset(index: int, rst_len: int = 0) -> bool:
    return _kind(index, rst_len) == KIND_RESET


def _build_luts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    to_index = np.full((2, N_PHYSICAL + 1), -1, dtype=np.int16)
    to_physical = np.zeros((2, N_LUT_INDICES), dtype=np.int8)
    kind = np.zeros((2, N_LUT_INDICES), dtype=np.uint8)
    for rst_len in (0, 1):
        for phys in range(1, N_PHYSICAL + 1):
            ix = daq_index(phys, rst_len)
            to_index[rst_len, phys] = ix
            to_physical[rst_len, ix] = phys
            kind[rst_len, ix] = KIND_SIGNAL
        kind[rst_len, list(fpn_indices(rst_len))] = KIND_FPN
        kind[rst_len, list(reset_indices(rst_len))] = KIND_RESET
    for lut in (to_index, to_physical, kind):
        lut.setflags(write=False)
    return to_index, to_physical, kind


DAQ_INDEX_LUT, PHYSICAL_LUT, INDEX_KIND_LUT = _build_luts()
"""``DAQ_INDEX_LUT[rst_len, physical]`` -> DAQ index (int16; column 0 = -1);
``PHYSICAL_LUT[rst_len, index]`` -> physical channel 1..64 or 0 (int8, 79 columns);
``INDEX_KIND_LUT[rst_len, index]`` -> KIND_* code (uint8, 79 columns). All read-only."""
