"""Golden vectors for every word kind of PROTOCOL.md §1.2, written by hand as hex literals."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.protocol import words as W
from agetdaq.protocol.words import KIND_LUT, Kind, classify, classify_nb

# (first word, last word, kind) of every contiguous range of the 16-bit space, from the table.
RANGES = [
    (0x0000, 0x0000, Kind.NULL),
    (0x0001, 0x0005, Kind.UNKNOWN),
    (0x0006, 0x0006, Kind.SOBE_SIZE),
    (0x0007, 0x0007, Kind.EVPERIOD_HSTAT_BINS),
    (0x0008, 0x0008, Kind.END_OF_BUILT_EVENT),
    (0x0009, 0x0009, Kind.START_OF_BUILT_EVENT),
    (0x000A, 0x000A, Kind.CMD_STATISTICS),
    (0x000B, 0x000B, Kind.SHISTO_BINS),
    (0x000C, 0x000C, Kind.PEDESTAL_H_MD),
    (0x000D, 0x000D, Kind.PEDESTAL_HSTAT),
    (0x000E, 0x000E, Kind.DEADTIME_HSTAT_BINS),
    (0x000F, 0x000F, Kind.END_OF_FRAME),
    (0x0010, 0x007B, Kind.UNKNOWN),
    (0x007C, 0x007F, Kind.CH_HIT_CNT_HISTO),
    (0x0080, 0x00DF, Kind.UNKNOWN),
    (0x00E0, 0x00EF, Kind.END_OF_EVENT),
    (0x00F0, 0x00FF, Kind.START_OF_EVENT),
    (0x0100, 0x01FF, Kind.ASCII_MSG_LEN),
    (0x0200, 0x03FF, Kind.UNKNOWN),
    (0x0400, 0x05FF, Kind.START_OF_CFRAME),
    (0x0600, 0x07FF, Kind.START_OF_MFRAME),
    (0x0800, 0x09FF, Kind.START_OF_DFRAME),
    (0x0A00, 0x0BFF, Kind.PEDTHR_LIST),
    (0x0C00, 0x0DFF, Kind.HISTO_BIN_IX),
    (0x0E00, 0x0FFF, Kind.TIME_BIN_IX),
    (0x1000, 0x1FFF, Kind.LAST_CELL_READ),
    (0x2000, 0x2FFF, Kind.LAT_HISTO_BIN),
    (0x3000, 0x3FFF, Kind.ADC_SAMPLE),
    (0x4000, 0x7FFF, Kind.CHAN_HISTO),
    (0x8000, 0xBFFF, Kind.CHAN_HIT_CNT),
    (0xC000, 0xFFFF, Kind.CHAN_HIT_IX),
]


def test_ranges_cover_the_word_space_once() -> None:
    covered = sum(hi - lo + 1 for lo, hi, _ in RANGES)
    assert covered == 0x10000
    assert all(RANGES[k][1] + 1 == RANGES[k + 1][0] for k in range(len(RANGES) - 1))


@pytest.mark.parametrize(("lo", "hi", "kind"), RANGES)
def test_classify_range_boundaries(lo: int, hi: int, kind: Kind) -> None:
    for w in {lo, hi, (lo + hi) // 2}:
        assert classify(w) == kind, hex(w)
        assert classify_nb(w) == int(kind), hex(w)
        assert KIND_LUT[w] == int(kind), hex(w)


def test_every_kind_appears() -> None:
    assert {k for _, _, k in RANGES} == set(Kind)


def test_lut_and_numba_agree_with_table_on_all_words() -> None:
    expected = np.zeros(0x10000, dtype=np.uint8)
    for lo, hi, kind in RANGES:
        expected[lo : hi + 1] = int(kind)
    assert np.array_equal(KIND_LUT, expected)
    sample = range(0, 0x10000, 7)
    assert [classify_nb(w) for w in sample] == [int(expected[w]) for w in sample]


# ---- builders: hand-computed words from the bit layout in §1.2 -----------------------------


def test_channel_header_and_fields() -> None:
    assert W.chan_header(3, 2, 17) == 0xC711
    assert W.chan_header(0, 0, 0) == 0xC000
    assert W.chan_header(31, 3, 127) == 0xFFFF
    assert W.chan_header(15, 1, 68) == 0xDEC4
    assert W.chan_header_fields(0xC711) == (3, 2, 17)
    assert W.chan_header_fields(0xDEC4) == (15, 1, 68)


def test_hit_count_and_histo_headers() -> None:
    assert W.hit_count(3, 2, 17) == 0x8711
    assert W.hit_count(0, 3, 64) == 0x81C0
    assert W.chan_header(1, 0, 5, W.CHAN_HISTO) == 0x4205
    assert classify(0x8711) == Kind.CHAN_HIT_CNT
    assert classify(0x4205) == Kind.CHAN_HISTO


def test_sample_and_bin_words() -> None:
    assert W.adc_sample(0xABC) == 0x3ABC
    assert W.adc_sample(0) == 0x3000
    assert W.adc_value(0x3FFF) == 0xFFF
    assert W.time_bin_ix(0) == 0x0E00
    assert W.time_bin_ix(511) == 0x0FFF
    assert W.time_bin_value(0x0E2A) == 42
    assert W.histo_bin_ix(0x1A) == 0x0C1A
    assert W.lat_histo_bin(0x123) == 0x2123


def test_last_cell_read() -> None:
    assert W.last_cell_read(2, 0x155) == 0x1955
    assert W.last_cell_read(3, 0x3FF) == 0x1FFF
    assert W.last_cell_read(0, 0) == 0x1000
    assert W.last_cell_fields(0x1955) == (2, 0x155)
    assert W.last_cell_fields(0x1C00) == (3, 0)


def test_frame_starts() -> None:
    assert W.start_of_frame(W.START_OF_DFRAME, 7) == 0x0807
    assert W.start_of_frame(W.START_OF_DFRAME, 7, version=1) == 0x0887
    assert W.start_of_frame(W.START_OF_MFRAME, 2) == 0x0602
    assert W.start_of_frame(W.START_OF_CFRAME, 31) == 0x041F
    assert W.start_of_frame_fields(0x0887) == (1, 7)
    with pytest.raises(ValueError):
        W.start_of_frame(0x0E00, 0)


def test_pedthr_list_and_ascii() -> None:
    assert W.pedthr_list(5, 3, after_mode=False, thresholds=True) == 0x0A5D
    assert W.pedthr_list(0, 0, after_mode=True) == 0x0A02
    assert W.pedthr_list_fields(0x0A5D) == (5, 3, False, True)
    assert W.ascii_msg_len(0x2A) == 0x012A


def test_event_words() -> None:
    assert W.start_of_event(5) == 0x00F5
    ts, cnt = 0x0123_4567_89AB, 0xDEAD_BEEF
    assert W.soe_words(5, ts, cnt) == [0x00F5, 0x89AB, 0x4567, 0x0123, 0xBEEF, 0xDEAD]
    assert W.soe_fields(0x89AB, 0x4567, 0x0123, 0xBEEF, 0xDEAD) == (ts, cnt)
    assert W.eoe_words(0x12345) == [0x00E1, 0x2345]
    assert W.eoe_words(0x20) == [0x00E0, 0x0020]
    assert W.eoe_size(0x00E1, 0x2345) == 0x12345
    assert W.event_type_value(0x00F7) == 7


def test_lead_and_u32() -> None:
    assert W.lead_word(5, first=True) == 0x0105
    assert W.lead_word(260) == 0x0004
    assert W.lead_fields(0x01FF) == (255, True)
    assert W.u32_words(0x1234_5678) == [0x5678, 0x1234]


@pytest.mark.parametrize(
    ("builder", "args"),
    [
        (W.chan_header, (32, 0, 0)),
        (W.chan_header, (0, 4, 0)),
        (W.chan_header, (0, 0, 128)),
        (W.adc_sample, (0x1000,)),
        (W.time_bin_ix, (512,)),
        (W.last_cell_read, (0, 0x400)),
        (W.start_of_event, (8,)),
        (W.eoe_words, (0x100000,)),
        (W.soe_words, (0, 1 << 48, 0)),
    ],
)
def test_builders_reject_out_of_range(builder, args) -> None:
    with pytest.raises(ValueError):
        builder(*args)


def test_round_trips_over_field_ranges() -> None:
    for card in (0, 1, 15, 31):
        for chip in range(4):
            for chan in (0, 1, 78, 127):
                assert W.chan_header_fields(W.chan_header(card, chip, chan)) == (card, chip, chan)
    for chip in range(4):
        for cell in (0, 1, 511, 1023):
            assert W.last_cell_fields(W.last_cell_read(chip, cell)) == (chip, cell)
    for size in (0, 1, 0xFFFF, 0x10000, 0xFFFFF):
        hi, lo = W.eoe_words(size)
        assert classify(hi) == Kind.END_OF_EVENT
        assert W.eoe_size(hi, lo) == size
