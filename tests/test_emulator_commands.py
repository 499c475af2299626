"""Emulator commands: feminos-daq style scripts over UDP, replies, error codes, MFRAMEs."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from agetdaq.protocol import monitoring as mon
from agetdaq.protocol.commands import ERR_ILLEGAL_PARAMETER, ERR_SYNTAX, ERR_UNKNOWN, parse_reply
from agetdaq.protocol.script import parse_script_text
from agetdaq.readout.simulation.emulator.hped import PedestalHistos
from agetdaq.readout.simulation.emulator.server import Emulator

# Written in the style of the feminos-daq configs: startup, pedestal and data-taking scripts.
STARTUP = """
# cold start
power_inv 0
fec_enable 0
DAQ 0
daq 0xFFFFFF B
sca enable 0
serve_target 0
rbf getpnd
rbf timed 1
rbf timeval 2
rbf resume
mode aget
polarity * 0
fec_enable 1
asic_mask 0x0
"""

PEDESTAL = """
sca wckdiv 4
sca cnt 0x200
sca autostart 1
rst_len 1
keep_fco 0
test_enable 0
tdata A 0x40
aget * autoreset_bank 0x1
aget * vicm 0x1
aget * polarity 0x0
aget * mode 0x1
aget * gain * 0x2
aget * time 0x4
aget * dac 0x1
modify_hit_reg 0
emit_hit_cnt 1
emit_empty_ch 1
keep_rst 1
skip_rst 0
forceon_all 1
forceoff * * 0x0
forceon * * 0x1
ped * * 0x0
subtract_ped 0
zero_suppress 0
zs_pre_post 0 0
thr * * 0x0
event_limit 0x2
trig_rate 2 20
trig_enable 0x1
hped offset * * 0
hped clr * *
serve_target 2
sca enable 1
sleep 0.5
sca enable 0
hped getsummary 0 *
hped getsummary 1 *
hped getsummary 2 *
hped getsummary 3 *
hped centermean * * 250
subtract_ped 1
hped clr * *
sca enable 1
sleep 0.5
sca enable 0
hped getsummary 0 *
hped getsummary 1 *
hped getsummary 2 *
hped getsummary 3 *
hped setthr * * 250 5.0
serve_target 1
"""

RUN = """
eof_on_eoe 1
event_builder 1
DAQ 0
credits restore 8 1 F
daq 0xFFFFFF F
sca enable 0
serve_target 0
sca cnt 0x200
sca autostart 1
rst_len 1
modify_hit_reg 0
erase_hit_ena 0
erase_hit_thr * 2
emit_hit_cnt 1
emit_empty_ch 0
emit_lst_cell_rd 1
keep_rst 0
skip_rst 1
aget * mode 0x0
aget * tst_digout 0
aget * dac 0x1
aget * threshold * 0x0
forceon_all 0
forceon * * 0
forceoff * * 0
subtract_ped 1
zero_suppress 1
zs_pre_post 8 4
mult_thr * 31
mult_limit * 50
mult_trig_ena 1
event_limit 0x0
trig_rate 1 50
trig_enable 0x0
serve_target 1
hbusy clr
hhit clr *
sca enable 1
LOOP 2
DAQ
sleep 0.2
NEXT
sca enable 0
hbusy get
hhit get 0
cmd stat
list ped 0
list thr *
"""


class Client:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def cmd(self, line: str, timeout: float = 10.0):
        self.sock.sendto(line.encode(), self.addr)
        end = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            d = self.sock.recv(65536)
            if d[3] & 0xFE != 0x08:  # skip data frames
                return parse_reply(d)


def run_script(c: Client, text: str) -> list[tuple[str, object]]:
    """Send the board lines of a script, honour (shortened) sleeps, return (line, reply)."""
    out = []
    for step in parse_script_text(text):
        if step.kind == "sleep":
            time.sleep(min(step.args["seconds"], 0.5))
        elif step.kind == "board":
            if step.text.startswith("daq 0x") and not step.text.startswith("daq 0xFFFFFF"):
                c.sock.sendto(step.text.encode(), c.addr)  # data requests get no reply
                continue
            out.append((step.text, c.cmd(step.text)))
    return out


@pytest.fixture(scope="module")
def emu():
    with Emulator(scenario="default", port=0, seed=2, bank=0) as e:
        yield e


def test_startup_pedestal_and_run_scripts_get_the_right_replies(emu: Emulator) -> None:
    c = Client(emu.address)
    replies = run_script(c, STARTUP) + run_script(c, PEDESTAL) + run_script(c, RUN)
    bad = [(line, r.error, r.text) for line, r in replies if r.error != 0]
    assert bad == []
    for line, r in replies:
        assert r.source_id == 0
        if line.startswith(("hped getsummary", "cmd stat", "list ", "hbusy get", "hhit get")):
            assert r.kind == "M", line
        else:
            assert r.kind == "C" and r.text.startswith("0 Fem(00) "), line
    summaries = [mon.parse_ped_summary(r) for line, r in replies if "getsummary" in line]
    assert len(summaries) == 8
    # second pass: after centermean and subtract_ped the signal channels sit at 250
    second = [s for summary in summaries[4:] for s in summary]
    means = np.array([s.mean for s in second if s.stddev > 0])
    assert means.size >= 4 * 64 and abs(float(np.median(means)) - 250) < 1.0
    first = [s for summary in summaries[:4] for s in summary]
    ped = emu.card.physics.pedestal
    # physical channel 1 is DAQ index 4 with rst_len 1 (PROTOCOL.md §4)
    ch1 = [s.mean for s in first if s.channel == 4]
    assert np.allclose(ch1, ped[:, 0], atol=1.5)
    thr = mon.parse_pedthr_list(dict(replies)["list thr *"])
    assert thr.thresholds and sorted(thr.tables) == [0, 1, 2, 3]
    noise = emu.card.physics.noise
    assert abs(int(thr.tables[2][4]) - (250 + round(5.0 * noise[2, 0]))) <= 3
    stats = mon.parse_cmd_stat(dict(replies)["cmd stat"])
    n_before = [line for line, _ in replies].index("cmd stat") + 1
    assert stats.rx_cmd >= n_before and stats.cmd_errors == 0
    assert stats.tx_replies == stats.rx_cmd  # both daq lines are pauses, which reply


def test_read_back_without_value(emu: Emulator) -> None:
    c = Client(emu.address)
    assert c.cmd("sca wckdiv 8").error == 0
    assert c.cmd("sca wckdiv").text == "0 Fem(00) sca wckdiv: 8 (12.50 MHz)\n"
    c.cmd("sca wckdiv 4")
    c.cmd("ped 2 13 0x0")
    c.cmd("ped 2 10:12 -7")
    assert c.cmd("ped 2 11").text.strip().endswith("Ped(2,11): -7")
    assert c.cmd("ped 2 13").text.strip().endswith("Ped(2,13): 0")
    c.cmd("aget 1 gain 5 0x3")
    assert c.cmd("aget 1 gain 5").text.strip().endswith(": 3")
    assert c.cmd("trig_rate").text.strip().endswith("range 1 rate 50 (500 Hz)")
    ped_list = mon.parse_pedthr_list(c.cmd("list ped 2"))
    assert ped_list.tables[2][10:13].tolist() == [-7, -7, -7]
    assert c.cmd("daq").text.strip().endswith("send_credits: 0 F")


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("bogus", ERR_UNKNOWN),
        ("sca frobnicate 1", ERR_UNKNOWN),
        ("sca cnt zz", ERR_SYNTAX),
        ("ped 0", ERR_SYNTAX),
        ("ped 9 0 1", ERR_ILLEGAL_PARAMETER),
        ("ped * * ", ERR_ILLEGAL_PARAMETER),  # wildcard read-back
        ("daq 0x12 F", ERR_SYNTAX),
        ("mode after", ERR_UNKNOWN),  # not emulated
        ("flash erase", ERR_UNKNOWN),
    ],
)
def test_error_codes(emu: Emulator, line: str, code: int) -> None:
    r = Client(emu.address).cmd(line)
    assert r.kind == "C" and r.error == code
    assert r.text.startswith(f"{code} Fem(00) ")


def test_cmd_stat_counts_errors_and_clr(emu: Emulator) -> None:
    c = Client(emu.address)
    assert c.cmd("cmd clr").error == 0
    c.cmd("bogus")
    c.cmd("version")
    s = mon.parse_cmd_stat(c.cmd("cmd stat"))
    assert (s.rx_cmd, s.cmd_errors, s.tx_replies) == (3, 1, 4)  # the clr reply counts


def test_emu_stat_is_an_emulator_extension(emu: Emulator) -> None:
    r = Client(emu.address).cmd("emu stat")
    assert r.error == 0 and "events=" in r.text and "datagrams=" in r.text


def test_hped_histogram_arithmetic() -> None:
    h = PedestalHistos()
    h.set_offset([1], [5], 100)
    h.counts[1, 5, [140, 150, 160]] = [1, 2, 1]  # values 240, 250, 260
    n, mean, sd = h.moments(1, 5)
    assert (n, mean) == (4, 250.0) and sd == pytest.approx(np.sqrt(50.0))
    ped = np.zeros((4, 79), dtype=np.int16)
    assert h.centermean([1], [5, 6], 300, ped) == 1  # channel 6 empty: unchanged
    assert ped[1, 5] == 50 and ped[1, 6] == 0
    thr = np.zeros((4, 79), dtype=np.int16)
    h.setthr([1], [5], 250, 5.0, np.array([0, 0, 0, 0]), thr)
    assert thr[1, 5] == 250 + round(5 * np.sqrt(50.0))
    h.setthr([1], [5], 250, 5.0, np.array([0, 1, 0, 0]), thr)
    assert thr[1, 5] == 250 - round(5 * np.sqrt(50.0))
    m = h.math(1, 5)
    assert (m.min_value, m.max_value, m.entries, m.min_bin) == (240, 260, 4, 100)
    h.counts[2, 3, 0] = 10**6
    big = np.zeros((4, 79), dtype=np.int16)
    h.centermean([2], [3], 250, big)
    assert big[2, 3] == 250  # 250 - 0
    h.counts[2, 3, 0] = 0
    h.counts[2, 3, 511] = 5
    h.centermean([2], [3], 0, big)
    assert big[2, 3] == -256  # clamped


def test_hped_getbins_and_getmath_over_udp(emu: Emulator) -> None:
    c = Client(emu.address)
    assert c.cmd("hped clr 3 7").error == 0
    emu.card.board.hped.counts[3, 7, 250:253] = [4, 9, 4]
    bins = mon.parse_histo_bins(c.cmd("hped getbins 3 7"))
    assert (bins.chip, bins.channel, bins.bins) == (3, 7, {250: 4, 251: 9, 252: 4})
    math = mon.parse_histo_math(c.cmd("hped getmath 3 7"))
    assert math.stats.entries == 17 and math.stats.mean == pytest.approx(251.0)
    assert c.cmd("hped clr 3 7").error == 0
    assert mon.parse_histo_bins(c.cmd("hped getbins 3 7")).bins == {}
