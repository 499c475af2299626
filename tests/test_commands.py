"""Command formatting, CFRAME/MFRAME reply frames and the card command validator."""

from __future__ import annotations

import pytest

from agetdaq.protocol.command_table import COMMANDS, CommandError, Sel, find_spec, validate
from agetdaq.protocol.commands import (
    DAQ_PAUSE,
    ERR_ILLEGAL_PARAMETER,
    ERR_SYNTAX,
    ERR_UNKNOWN,
    ProtocolError,
    encode_cframe,
    encode_mframe,
    format_command,
    format_daq_request,
    parse_reply,
    reply_text,
)

# "0 Fem(00) ok\n" (13 chars, L+1 = 14 is even: no pad NUL), from card 0, error 0
CFRAME_OK = bytes.fromhex(
    "0000"  # lead word
    "0004"  # START_OF_CFRAME, version 0, fem 0
    "0000"  # error 0
    "0d01"  # ASCII_MSG_LEN 13
    "30204665 6d283030 29206f6b 0a"  # "0 Fem(00) ok\n"
    "00"  # NUL
    "0f00"  # END_OF_FRAME
)
# "-2 Fem(05) no\n" (14 chars, L+1 = 15 is odd: one pad NUL), from card 5, error -2
CFRAME_ERR = bytes.fromhex(
    "0000 0504 feff 0e01 2d322046 656d2830 3529206e 6f0a 0000 0f00".replace(" ", "")
)
MFRAME_EMPTY = bytes.fromhex("0000 0306 0600 0f00".replace(" ", ""))  # fem 3, no payload


def test_error_codes() -> None:
    assert (ERR_UNKNOWN, ERR_ILLEGAL_PARAMETER, ERR_SYNTAX) == (-1, -2, -10)


def test_format_daq_request() -> None:
    assert format_daq_request(16, "F", 5) == "daq 0x000010 F 0x05"
    assert format_daq_request(0x4000, "B") == "daq 0x004000 B"
    assert format_daq_request(DAQ_PAUSE, "F") == "daq 0xffffff F"
    assert format_daq_request(1, seq=255) == "daq 0x000001 F 0xff"
    for bad in ((0x1000000, "F", None), (-1, "F", None), (1, "X", None), (1, "F", 256)):
        with pytest.raises(ValueError):
            format_daq_request(*bad)


def test_format_daq_request_passes_the_validator() -> None:
    parsed = validate(format_daq_request(0x123, "B", 0x7F))
    assert parsed.args == {"amount": 0x123, "unit": "B", "seq": 0x7F, "pause": False}


def test_format_command() -> None:
    assert format_command("aget", "*", "gain", "*", 1) == "aget * gain * 0x1"
    assert format_command("sca", "cnt", 512) == "sca cnt 0x200"
    assert format_command("ped", 0, 3, -5) == "ped 0x0 0x3 -5"
    assert format_command("hped", "setthr", "*", "*", "250", 5.0) == "hped setthr * * 250 5.0"
    with pytest.raises(ValueError):
        format_command("sca", "cnt 1")


def test_reply_text() -> None:
    assert reply_text(0, 0, "ok") == "0 Fem(00) ok\n"
    assert reply_text(-2, 5, "no") == "-2 Fem(05) no\n"


def test_encode_cframe_golden() -> None:
    assert encode_cframe(reply_text(0, 0, "ok")) == CFRAME_OK
    assert encode_cframe(reply_text(-2, 5, "no"), error=-2, source_id=5) == CFRAME_ERR


def test_encode_mframe_golden() -> None:
    assert encode_mframe([], source_id=3) == MFRAME_EMPTY
    assert encode_mframe([0x1234], 0) == bytes.fromhex("0000 0006 0800 3412 0f00".replace(" ", ""))


def test_parse_reply_cframes() -> None:
    ok = parse_reply(CFRAME_OK)
    assert (ok.kind, ok.error, ok.source_id, ok.text, ok.ok) == ("C", 0, 0, "0 Fem(00) ok\n", True)
    err = parse_reply(CFRAME_ERR)
    assert (err.kind, err.error, err.source_id, err.text) == ("C", -2, 5, "-2 Fem(05) no\n")
    assert not err.ok


def test_parse_reply_mframe() -> None:
    reply = parse_reply(bytes.fromhex("0000 0106 0a00 3412 cdab 0f00".replace(" ", "")))
    assert (reply.kind, reply.source_id, reply.payload, reply.error) == (
        "M",
        1,
        (0x1234, 0xABCD),
        0,
    )


def test_cframe_roundtrip_long_text() -> None:
    text = "0 Fem(31) " + "x" * 240
    reply = parse_reply(encode_cframe(text, error=-10, source_id=31))
    assert (reply.text, reply.error, reply.source_id) == (text, -10, 31)
    with pytest.raises(ValueError):
        encode_cframe("y" * 256)


@pytest.mark.parametrize(
    "datagram, fragment",
    [
        (CFRAME_OK[:-1], "odd"),
        (bytes.fromhex("0000 0004"), "too short"),
        (CFRAME_OK[:-2] + bytes.fromhex("0e00"), "END_OF_FRAME"),
        (CFRAME_OK + bytes.fromhex("0000"), "after"),
        (CFRAME_OK[:6] + bytes.fromhex("ff01") + CFRAME_OK[8:], "past"),
        (CFRAME_OK[:6] + bytes.fromhex("0000") + CFRAME_OK[8:], "ASCII_MSG_LEN"),
        (CFRAME_OK[:6] + bytes.fromhex("0c01") + CFRAME_OK[8:], "NUL"),
        (bytes.fromhex("0000 0006 0800 0f00"), "size word"),
        (bytes.fromhex("0000 0006 0600 0e00"), "END_OF_FRAME"),
        (bytes.fromhex("0500 0008 0600 0f00"), "data frame"),
        (bytes.fromhex("0000 3412 0000 0f00"), "frame header"),
        (bytes.fromhex("0000 0004 0000 0201 c3a9 0000 0f00"), "ASCII"),
    ],
)
def test_parse_reply_rejects_malformed(datagram: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        parse_reply(datagram)


# ---- validator: accepted forms ----------------------------------------------------------------

ACCEPTED = [
    # sca and readout
    "sca cnt 0x200", "sca cnt", "sca wckdiv 4", "sca wckdiv", "sca enable 1", "sca enable",
    "sca autostart 1", "sca start", "sca stop", "mode aget", "mode after", "mode", "rst_len 1",
    "keep_rst 0", "skip_rst 3", "emit_hit_cnt 1", "emit_empty_ch 0", "emit_lst_cell_rd 1",
    "eof_on_eoe 1", "forceon_all 1", "modify_hit_reg 0", "asic_mask 0xF", "erase_hit_ena 0",
    "erase_hit_thr * 2", "erase_hit_thr 1", "subtract_ped 1", "zero_suppress 1",
    "zs_pre_post 8 4", "zs_pre_post 15 16", "zs_pre_post", "polarity * 0", "polarity 2",
    # LUT entries
    "ped * * 0x0", "ped 0 3", "ped 1 0:78 -5", "thr 3 70 0x1FF", "thr 0:1 * 400",
    "forceon * * 1", "forceoff 2 10 0", "forceon 0 4:30 0x1",
    # pedestal histograms and lists
    "hped clr * *", "hped offset * * 0", "hped offset 0:3 0 3584", "hped centermean * * 250",
    "hped setthr * * 250 5.0", "hped setthr 1 2:40 250", "hped getbins 0 3", "hped getmath 3 71",
    "hped getsummary 0 *", "list ped *", "list thr 2",
    # AGET
    "aget * gain * 0x1", "aget 0 gain 1", "aget 0:1 threshold 1:64 ++", "aget * threshold * --",
    "aget 2 threshold 64 0xF", "aget * inhibit 3 2", "aget * hitprob * 100", "aget 3 read 8",
    "aget * write 5 0x1", "aget 1 wrchk 1 0x0 0x8", "aget 0 write 3 1 2 3",
    "aget * write 10 1 2 3 4", "aget 0 wrchk 9 1 2 3 4 5 6 7 8", "aget * wrhit 0 0 0 0 0",
    "aget 1 rdhit", "aget * icsa 1", "aget * time 0x4", "aget 0 time", "aget * test 3",
    "aget * mode 1", "aget * fpn 0", "aget * polarity 1", "aget * vicm 2", "aget * dac 15",
    "aget * trigger_veto 2", "aget * synchro_discri 1", "aget * tot 0", "aget * range_tw 1",
    "aget * trig_width 3", "aget * rd_from_0 1", "aget * tst_digout 1", "aget * en_mkr_rst 0",
    "aget * rst_level 1", "aget * cur_ra 3", "aget * cur_buf 2", "aget * short_read 0",
    "aget * dis_multiplicity_out 0", "aget * autoreset_bank 1", "aget * in_dyn_range 1",
    # triggers
    "trig_enable 0x9", "trig_rate 1 50", "trig_rate", "trig_delay 0xFFFF", "event_limit 7",
    "gen_use_limit 1", "mult_thr * 31", "mult_limit 0 255", "mult_trig_ena 1", "snd_mult_ena 0",
    "pul_enable 1", "pul_delay 0xFFF", "pul_amp 0x800", "pul_load",
    # time and counters
    "clr tstamp", "clr evcnt", "tstamp_init 0x0 0x1 0xFFFF", "tstamp_isset", "tstamp_isset clr",
    # data path
    "serve_target 2", "daq", "daq 0x000010 F", "daq 0x004000 B 0x00", "daq 0xFFFFFF F",
    "rbf config", "rbf suspend", "rbf resume", "rbf reset", "rbf getpnd", "rbf timed 1",
    "rbf timeval 2", "rbf timeval", "loss_policy 2", "cred_wait_time 200",
    # monitoring
    "hbusy clr", "hbusy get", "hhit clr *", "hhit clr 3", "hhit get 0", "shisto clr 0 *",
    "cmd clr", "cmd stat", "state", "version", "help", "etherstat", "etherstat clr",
    "fec T", "fec V", "fec A", "fec I", "fec ID", "tcm rx", "tcm err", "tcm tx", "tcm ignore 1",
    "tcm ignore", "tcm clr", "tcm_bert 1", "dcbal_enc 1", "dcbal_dec",
    # service
    "reg 5", "reg 5 0x12345678", "reg 0 4096", "tdata 12", "tdata 12 0x800", "tdata A 0x40",
    "test_enable 0", "test_mode 1", "test_zbt 0", "keep_fco 0", "fec_enable 1", "power_inv 0",
    "minibios show", "mars 1 2", "flash read 0", "after * read 1",
]  # fmt: skip


@pytest.mark.parametrize("line", ACCEPTED)
def test_validator_accepts(line: str) -> None:
    parsed = validate(line)
    assert parsed.text == line
    assert line.startswith(parsed.name)


def test_validator_parses_values() -> None:
    p = validate("aget 0:1  threshold 1:64 ++\n")
    assert (p.name, p.action, p.read, p.text) == (
        "aget",
        "threshold",
        False,
        "aget 0:1 threshold 1:64 ++",
    )
    assert p.args == {"ids": Sel(0, 1, True), "channel": Sel(1, 64, True), "value": "++"}
    p = validate("ped 1 0:78 -5")
    assert p.args["value"] == -5 and p.args["channel"].indices() == range(79)
    assert validate("sca cnt 010").args["value"] == 8  # C %i: leading 0 is octal
    assert validate("hped setthr * * 250 5.0").args == {
        "asic": Sel(0, 3, True), "channel": Sel(0, 71, True), "target": 250, "factor": 5.0,
    }  # fmt: skip
    assert validate("hped clr 0 78", after_mode=True).args["channel"] == Sel(78, 78, False)
    assert validate("zs_pre_post 8 4").args == {"pre": 8, "post": 4}
    assert validate("daq 0xFFFFFF B").args["pause"] is True
    assert validate("aget * write 10 1 2 3 4").args["v3"] == 1


def test_validator_read_back_flags() -> None:
    assert validate("sca wckdiv").read and not validate("sca wckdiv 4").read
    assert validate("ped 0 3").read and not validate("ped 0 3 1").read
    assert validate("aget 0 gain 1").read and validate("cmd stat").read
    assert validate("daq").read and not validate("daq 0x000001 F").read


def test_prefix_order_matches_the_card() -> None:
    assert find_spec("forceon_all 1").name == "forceon_all"
    assert find_spec("forceon * * 1").name == "forceon"
    assert find_spec("tcm_bert 1").name == "tcm_bert"
    assert find_spec("fec ID").name == "fec ID"
    assert find_spec("fec_enable 1").name == "fec_enable"
    assert find_spec("trig_enable 1").name == "trig_enable"
    names = [spec.name for spec in COMMANDS]
    assert names.index("forceon_all") < names.index("forceon")
    assert names.index("tstamp_isset") < names.index("tstamp_init")


# ---- validator: rejected forms with the card's error class ------------------------------------

REJECTED = [
    ("", ERR_SYNTAX), ("foo 1", ERR_UNKNOWN), ("DAQ 100", ERR_UNKNOWN), ("clr", ERR_UNKNOWN),
    ("busy_resol 1", ERR_UNKNOWN), ("asic mask 0x0", ERR_UNKNOWN), ("LOOP 3", ERR_UNKNOWN),
    ("sca foo", ERR_UNKNOWN), ("sca", ERR_SYNTAX), ("sca cnt 0", ERR_ILLEGAL_PARAMETER),
    ("sca cnt 0x400", ERR_ILLEGAL_PARAMETER), ("sca cnt x", ERR_SYNTAX), ("sca cnt 08", ERR_SYNTAX),
    ("sca cnt 1 2", ERR_SYNTAX), ("sca wckdiv 64", ERR_ILLEGAL_PARAMETER),
    ("sca enable 2", ERR_ILLEGAL_PARAMETER), ("mode foo", ERR_SYNTAX),
    ("skip_rst 4", ERR_ILLEGAL_PARAMETER), ("pedestal 0 0 1", ERR_SYNTAX),
    ("ped * *", ERR_ILLEGAL_PARAMETER), ("ped 0", ERR_SYNTAX), ("ped 4 0 1", ERR_ILLEGAL_PARAMETER),
    ("ped 0 79 1", ERR_ILLEGAL_PARAMETER), ("thr 0 0 -1", ERR_ILLEGAL_PARAMETER),
    ("forceon 0 0 2", ERR_ILLEGAL_PARAMETER), ("ped 0 x 1", ERR_SYNTAX),
    ("hped foo 0 0", ERR_UNKNOWN), ("hped clr 0", ERR_SYNTAX), ("hped clr 0x1 *", ERR_SYNTAX),
    ("hped clr 0 72", ERR_ILLEGAL_PARAMETER), ("hped getmath 0 *", ERR_ILLEGAL_PARAMETER),
    ("hped setthr * * 250 x", ERR_SYNTAX), ("hped clr * * 250", ERR_SYNTAX),
    ("list foo *", ERR_UNKNOWN), ("list ped", ERR_SYNTAX),
    ("aget", ERR_SYNTAX), ("aget *", ERR_SYNTAX), ("aget 4 time 1", ERR_ILLEGAL_PARAMETER),
    ("aget 0 bogus 1", ERR_UNKNOWN), ("aget * time", ERR_ILLEGAL_PARAMETER),
    ("aget * time 16", ERR_ILLEGAL_PARAMETER), ("aget * gain 0 1", ERR_ILLEGAL_PARAMETER),
    ("aget * gain 65 1", ERR_ILLEGAL_PARAMETER), ("aget * gain * 4", ERR_ILLEGAL_PARAMETER),
    ("aget * gain *", ERR_ILLEGAL_PARAMETER), ("aget * gain * ++", ERR_SYNTAX),
    ("aget * threshold * 16", ERR_ILLEGAL_PARAMETER), ("aget * read 8", ERR_ILLEGAL_PARAMETER),
    ("aget 0 read 0", ERR_ILLEGAL_PARAMETER), ("aget 0 read", ERR_SYNTAX),
    ("aget * write 0 1", ERR_ILLEGAL_PARAMETER), ("aget * write 8 1 2", ERR_SYNTAX),
    ("aget * write 5 1 2", ERR_SYNTAX), ("aget * wrhit 0 0 0 0", ERR_SYNTAX),
    ("aget * rdhit", ERR_ILLEGAL_PARAMETER),
    ("trig_rate 1", ERR_SYNTAX), ("trig_rate 4 1", ERR_ILLEGAL_PARAMETER),
    ("trig_rate 1 128", ERR_ILLEGAL_PARAMETER), ("trig_enable 0x10", ERR_ILLEGAL_PARAMETER),
    ("event_limit 8", ERR_ILLEGAL_PARAMETER), ("mult_thr * 256", ERR_ILLEGAL_PARAMETER),
    ("mult_thr *", ERR_ILLEGAL_PARAMETER), ("polarity", ERR_SYNTAX),
    ("zs_pre_post 16 0", ERR_ILLEGAL_PARAMETER), ("zs_pre_post 0 17", ERR_ILLEGAL_PARAMETER),
    ("zs_pre_post 8", ERR_SYNTAX), ("pul_amp", ERR_SYNTAX), ("tstamp_init 1 2", ERR_SYNTAX),
    ("tstamp_isset foo", ERR_SYNTAX), ("serve_target 4", ERR_ILLEGAL_PARAMETER),
    ("loss_policy 3", ERR_ILLEGAL_PARAMETER), ("rbf", ERR_SYNTAX), ("rbf foo", ERR_UNKNOWN),
    ("rbf timeval 4", ERR_ILLEGAL_PARAMETER), ("daq 0x10 F", ERR_SYNTAX),
    ("daq 0x000010", ERR_ILLEGAL_PARAMETER), ("daq 0x000010 X", ERR_ILLEGAL_PARAMETER),
    ("daq 16 F", ERR_SYNTAX), ("daq 0x000010 F 0x1", ERR_SYNTAX),
    ("hbusy", ERR_SYNTAX), ("hhit get *", ERR_SYNTAX), ("hhit get 4", ERR_ILLEGAL_PARAMETER),
    ("cmd foo", ERR_UNKNOWN), ("fec X", ERR_UNKNOWN), ("tcm", ERR_SYNTAX),
    ("reg", ERR_SYNTAX), ("reg 10", ERR_ILLEGAL_PARAMETER), ("tdata A", ERR_SYNTAX),
    ("tdata 0x10", ERR_SYNTAX), ("version 2", ERR_SYNTAX), ("clr tstamp now", ERR_SYNTAX),
    ("sca cnt 0x200 # cells", ERR_SYNTAX), ("sca cnt \u00e9", ERR_SYNTAX),
]  # fmt: skip


@pytest.mark.parametrize("line, code", REJECTED)
def test_validator_rejects(line: str, code: int) -> None:
    with pytest.raises(CommandError) as info:
        validate(line)
    assert info.value.code == code, info.value.message
    assert info.value.message


def test_error_message_names_the_line() -> None:
    with pytest.raises(CommandError, match=r"aget \* time 16: value=16 out of range 0\.\.15"):
        validate("aget * time 16")
