"""AGET channel numbering against the table of PROTOCOL.md §4."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.protocol import channels as ch

# (physical channel, DAQ index with rst_len 0): every segment boundary of the §4 table
BOUNDARIES = [(1, 2), (11, 12), (12, 14), (21, 23), (22, 25), (43, 46), (44, 48), (53, 57),
              (54, 59), (64, 69)]  # fmt: skip


@pytest.mark.parametrize("physical, index", BOUNDARIES)
def test_daq_index_boundaries(physical: int, index: int) -> None:
    assert ch.daq_index(physical) == index
    assert ch.daq_index(physical, rst_len=1) == index + 2
    assert ch.physical_channel(index) == physical
    assert ch.physical_channel(index + 2, rst_len=1) == physical


def test_fpn_and_reset_indices() -> None:
    assert ch.fpn_indices(0) == (13, 24, 47, 58)
    assert ch.fpn_indices(1) == (15, 26, 49, 60)
    assert ch.reset_indices(0) == (0, 1)
    assert ch.reset_indices(1) == (0, 1, 2, 3)
    for rst_len in (0, 1):
        for i in ch.fpn_indices(rst_len) + ch.reset_indices(rst_len):
            assert ch.physical_channel(i, rst_len) is None


def test_index_counts_and_last_index() -> None:
    assert (ch.n_indices(0), ch.n_indices(1)) == (70, 72)
    assert max(ch.daq_index(p, 0) for p in range(1, 65)) == 69
    assert max(ch.daq_index(p, 1) for p in range(1, 65)) == 71
    for rst_len in (0, 1):  # every index below n_indices is exactly one of reset, signal, FPN
        kinds = [
            (ch.is_reset(i, rst_len), ch.is_signal(i, rst_len), ch.is_fpn(i, rst_len))
            for i in range(ch.n_indices(rst_len))
        ]
        assert all(sum(k) == 1 for k in kinds)
        assert sum(k[1] for k in kinds) == 64
        for i in range(ch.n_indices(rst_len), 79):
            assert not (
                ch.is_signal(i, rst_len) or ch.is_fpn(i, rst_len) or ch.is_reset(i, rst_len)
            )


def test_unused_indices() -> None:
    assert ch.physical_channel(70) is None and ch.physical_channel(71) is None
    assert ch.physical_channel(78, 1) is None
    assert not ch.is_signal(200) and not ch.is_fpn(-1)


def test_round_trip_all_channels() -> None:
    for rst_len in (0, 1):
        indices = [ch.daq_index(p, rst_len) for p in range(1, 65)]
        assert len(set(indices)) == 64 and indices == sorted(indices)
        assert [ch.physical_channel(i, rst_len) for i in indices] == list(range(1, 65))


def test_luts_agree_with_functions() -> None:
    assert ch.DAQ_INDEX_LUT.shape == (2, 65) and ch.DAQ_INDEX_LUT.dtype == np.int16
    assert ch.PHYSICAL_LUT.shape == (2, 79) and ch.INDEX_KIND_LUT.shape == (2, 79)
    for rst_len in (0, 1):
        assert ch.DAQ_INDEX_LUT[rst_len, 0] == -1
        assert ch.signal_indices(rst_len).tolist() == [
            ch.daq_index(p, rst_len) for p in range(1, 65)
        ]
        for i in range(79):
            phys = ch.physical_channel(i, rst_len)
            assert ch.PHYSICAL_LUT[rst_len, i] == (phys or 0)
    assert ch.INDEX_KIND_LUT[0, 13] == ch.KIND_FPN and ch.INDEX_KIND_LUT[1, 3] == ch.KIND_RESET
    with pytest.raises(ValueError):
        ch.DAQ_INDEX_LUT[0, 1] = 5  # read-only


@pytest.mark.parametrize(
    "call",
    [
        lambda: ch.daq_index(0),
        lambda: ch.daq_index(65),
        lambda: ch.daq_index(1, rst_len=2),
        lambda: ch.physical_channel(79),
        lambda: ch.physical_channel(-1),
        lambda: ch.fpn_indices(3),
        lambda: ch.n_indices(-1),
    ],
)
def test_bad_arguments(call) -> None:
    with pytest.raises(ValueError):
        call()
