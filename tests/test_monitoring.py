"""MFRAME monitoring replies against hand-written datagrams (PROTOCOL.md §2, §3.6)."""

from __future__ import annotations

import numpy as np
import pytest

from agetdaq.protocol.commands import ProtocolError, encode_cframe, parse_reply
from agetdaq.protocol.monitoring import (
    CMD_STAT_FIELDS,
    SUMMARY_MAX_CHANNELS,
    ChannelSummary,
    CmdStats,
    HistoStats,
    encode_cmd_stat,
    encode_histo_bins,
    encode_histo_math,
    encode_ped_summary,
    encode_pedthr_list,
    parse_cmd_stat,
    parse_histo_bins,
    parse_histo_math,
    parse_ped_summary,
    parse_pedthr_list,
)


def hx(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# cmd stat from fem 2: 1, 2, 3, 4, 5, 6, 0x00012345, 0x00010000, 9 (u32 low word first)
CMD_STAT = hx(
    "0000 0206 2c00 0a00"  # lead, SOF_M fem 2, size 44, CMD_STATISTICS
    "01000000 02000000 03000000 04000000 05000000 06000000"
    "45230100 00000100 09000000"
    "0f00"
)
# list ped, fem 1, asic 2, AGET mode: entry 0 = -5, entry 1 = 255, 70 zeros
LIST_PED = hx("0000 0106 9800 180a fbff ff00" + "0000" * 70 + "0f00")
# list thr (type bit 0 set), fem 1, asics 0 and 3: thr[0][71] = 0x1ff, thr[3][0] = 300
LIST_THR = hx(
    "0000 0106 2a01"  # size 298 = 2 + 2 + 2 * (2 + 144) + 2
    "110a" + "0000" * 71 + "ff01"
    "1d0a" + "2c01" + "0000" * 71 + "0f00"
)
# hped getsummary, fem 0: chip 1 channel 5 mean 250.50 sd 3.25; chip 3 channel 71 mean 0.07 sd 0
SUMMARY = hx(
    "0000 0006 1e00"  # size 30 = 4 + 2 * 12 + 2
    "8540 0c00 da610000 45010000"
    "c741 0c00 07000000 00000000"
    "0f00"
)


def test_cmd_stat_golden() -> None:
    stats = CmdStats(1, 2, 3, 4, 5, 6, 0x12345, 0x10000, 9)
    assert encode_cmd_stat(stats, source_id=2) == CMD_STAT
    assert parse_cmd_stat(CMD_STAT) == stats
    assert parse_cmd_stat(parse_reply(CMD_STAT)).tx_replies == 0x12345


def test_cmd_stat_field_names() -> None:
    assert CMD_STAT_FIELDS == (
        "rx_cmd", "rx_daq", "rx_daq_timeout", "rx_daq_delayed", "daq_missing",
        "cmd_errors", "tx_replies", "tx_daq", "tx_daq_resent",
    )  # fmt: skip


def test_cmd_stat_rejects_other_frames() -> None:
    with pytest.raises(ProtocolError, match="text reply"):
        parse_cmd_stat(encode_cframe("0 Fem(00) ok\n"))
    with pytest.raises(ProtocolError, match="19"):
        parse_cmd_stat(hx("0000 0006 0c00 0a00 0100 0000 0f00"))
    with pytest.raises(ProtocolError, match="CMD_STATISTICS"):
        parse_cmd_stat(hx("0000 0006 0800 0b00 0f00"))


def test_list_ped_golden() -> None:
    values = [-5, 255] + [0] * 70
    assert encode_pedthr_list({2: values}, source_id=1) == LIST_PED
    parsed = parse_pedthr_list(LIST_PED)
    assert (parsed.fem, parsed.thresholds, parsed.after_mode) == (1, False, False)
    assert list(parsed.tables) == [2]
    assert parsed.tables[2].dtype == np.int16
    assert parsed.tables[2].tolist() == values


def test_list_thr_golden_two_asics() -> None:
    thr0 = [0] * 71 + [0x1FF]
    thr3 = [300] + [0] * 71
    assert encode_pedthr_list({0: thr0, 3: thr3}, source_id=1, thresholds=True) == LIST_THR
    parsed = parse_pedthr_list(LIST_THR)
    assert parsed.thresholds and parsed.fem == 1
    assert parsed.tables[0].tolist() == thr0 and parsed.tables[3].tolist() == thr3


def test_list_after_mode_roundtrip() -> None:
    values = list(range(-39, 40))
    parsed = parse_pedthr_list(encode_pedthr_list({1: values}, 4, after_mode=True))
    assert parsed.after_mode and parsed.tables[1].tolist() == values


def test_list_errors() -> None:
    with pytest.raises(ValueError, match="72"):
        encode_pedthr_list({0: [0] * 71})
    with pytest.raises(ProtocolError, match="truncated"):
        parse_pedthr_list(hx("0000 0106 0c00 180a 0000 0000 0f00"))
    with pytest.raises(ProtocolError, match="PEDTHR_LIST"):
        parse_pedthr_list(hx("0000 0106 0800 0000 0f00"))
    with pytest.raises(ProtocolError, match="without"):
        parse_pedthr_list(hx("0000 0106 0600 0f00"))


def test_summary_golden() -> None:
    items = [(1, 5, 250.5, 3.25), (3, 71, 0.07, 0.0)]
    assert encode_ped_summary(items, source_id=0) == SUMMARY
    assert parse_ped_summary(SUMMARY) == [
        ChannelSummary(0, 1, 5, 250.5, 3.25),
        ChannelSummary(0, 3, 71, 0.07, 0.0),
    ]


def test_summary_truncates_at_1400_bytes_like_the_card() -> None:
    assert SUMMARY_MAX_CHANNELS == 117  # 4 + 116 * 12 = 1396 < 1400 <= 4 + 117 * 12
    all_channels = [(c // 72, c % 72, 250.0, 2.0) for c in range(4 * 72)]
    datagram = encode_ped_summary(all_channels, source_id=7)
    parsed = parse_ped_summary(datagram)
    assert len(parsed) == 117
    assert len(datagram) == 2 + 4 + 117 * 12 + 2
    assert (parsed[-1].chip, parsed[-1].channel, parsed[-1].card) == (1, 44, 7)
    one_asic = parse_ped_summary(encode_ped_summary(all_channels[:72]))
    assert len(one_asic) == 72


def test_summary_errors() -> None:
    with pytest.raises(ProtocolError, match="PEDESTAL_H_MD"):
        parse_ped_summary(hx("0000 0006 1200 8540 0d00 da610000 45010000 0f00"))
    with pytest.raises(ProtocolError, match="CHAN_HISTO"):
        parse_ped_summary(hx("0000 0006 0800 0c00 0f00"))
    with pytest.raises(ProtocolError, match="truncated"):
        parse_ped_summary(hx("0000 0006 0e00 8540 0c00 da610000 0f00"))


def test_getmath_golden_and_roundtrip() -> None:
    stats = HistoStats(0, 511, 1, 512, 240, 262, 250.25, 3.5, 51200)
    datagram = encode_histo_math(2, 9, stats, source_id=1)
    expected = hx(
        "0000 0106 2e00"  # size 46 = 2 + 2 + 2 + 2 + 36 + 2
        "0943 0d00"  # CHAN_HISTO card 1 chip 2 chan 9, PEDESTAL_HSTAT
        "00000000 ff010000 01000000 00020000 f0000000 06010000"
        "c1610000 5e010000 00c80000"
        "0f00"
    )
    assert datagram == expected
    parsed = parse_histo_math(datagram)
    assert (parsed.card, parsed.chip, parsed.channel, parsed.stats) == (1, 2, 9, stats)


def test_getbins_golden_and_truncation() -> None:
    counts = [0] * 512
    counts[250], counts[251] = 7, 0x1234
    expected = hx("0000 0006 1000 0340 fa0c 0700 fb0c 3412 0f00")  # chip 0 chan 3
    assert encode_histo_bins(0, 3, counts) == expected
    assert parse_histo_bins(expected).bins == {250: 7, 251: 0x1234}
    full = parse_histo_bins(encode_histo_bins(1, 2, [1] * 512))
    assert len(full.bins) == 349  # 6 + 4 * 349 = 1402 >= 1400 stops the frame
    with pytest.raises(ProtocolError, match="HISTO_BIN_IX"):
        parse_histo_bins(hx("0000 0006 0c00 0340 0000 0100 0f00"))
