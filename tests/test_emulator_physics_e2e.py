"""Emulator physics end to end: card processing vs its reference, decoded data vs the truth file,
the 55Fe spectrum, pedestal runs and zero suppression, all through a real UDP socket."""

from __future__ import annotations

import dataclasses
import re
import socket
import time

import numpy as np
import pytest

from agetdaq.protocol import monitoring as mon
from agetdaq.protocol.channels import daq_index, physical_channel
from agetdaq.protocol.commands import parse_reply
from agetdaq.protocol.decode import decode_datagrams
from agetdaq.protocol.event_block import event_words
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.simulation.emulator.cardproc import (
    CardProcessor,
    CardSettings,
    reference_event,
)
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.simulation.emulator.truth import read_truth

# ---- card processing: numba kernel == plain-Python reference -----------------------------------

CASES = [
    dict(),
    dict(zero_suppress=1, subtract_ped=1, zs_pre=3, zs_post=2, emit_hit_cnt=1),
    dict(zero_suppress=1, zs_pre=8, zs_post=4, emit_empty_ch=1, rst_len=1, keep_rst=1),
    dict(forceon_all=1, emit_lst_cell_rd=1, asic_mask=0b0101, sca_cnt=100),
    dict(modify_hit_reg=1, emit_hit_cnt=1, zero_suppress=1, zs_post=16),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_card_processing_kernel_matches_reference(case: int) -> None:
    rng = np.random.default_rng(case)
    raw = np.clip(250 + rng.normal(0, 4, (4, 68, 512)), 0, 4095).astype(np.uint16)
    raw[1, 10, 300:330] += 500
    raw[3, 40, 0:6] += 300  # at the window start: pre clipped at bin 0
    raw[2, 5, 505:512] += 300  # in the last 4 bins: ignored by the comparison
    s = CardSettings(card_id=9, **CASES[case])
    s.ped[:] = rng.integers(-20, 20, s.ped.shape)
    s.thr[:] = 275
    s.zs_polarity[2] = case % 2
    s.aget_fpn[0] = 1
    s.aget_mode[3] = 1
    hit_ix = daq_index(11, s.rst_len)  # raw row 10
    s.forceon[0, 20] = s.forceoff[1, hit_ix] = s.forceoff[2, 30] = True
    proc = CardProcessor(s)
    level = np.full((4, 68), 30.0, dtype=np.float32)
    proc.discriminate(raw, np.full((4, 68), 250.0, np.float32), level, True)
    cells = np.array([5, 6, 7, 511])
    body = proc.body(raw, cells)
    ref = reference_event(raw, proc.hit, s, cells, event_type=1, timestamp=7, event_count=3)
    words = event_words(ref, zero_suppressed=bool(s.zero_suppress))
    assert body.tolist() == words[6:-2].tolist()
    keys = {(c.chip, c.channel) for c in ref.channels}
    # forceoff only counts with modify_hit_reg: it then removes the hit channel
    assert ((1, hit_ix) in keys) == (case != 4)


# ---- over UDP -------------------------------------------------------------------------------


class Client:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.data: list[bytes] = []

    def cmd(self, line: str):
        self.sock.sendto(line.encode(), self.addr)
        self.sock.settimeout(10.0)
        while True:
            d = self.sock.recv(65536)
            if d[3] & 0xFE == 0x08:
                self.data.append(d)
            else:
                return parse_reply(d)

    def run(self, lines: list[str]) -> list:
        return [self.cmd(line) for line in lines]

    def take(self, seconds: float) -> list[bytes]:
        """Grant credit and collect data for ``seconds``; with ``seconds == 0`` drain until quiet.

        A card that is still triggering never goes quiet (a loaded machine makes the emulator
        catch up on its real-time backlog), so a timed take stops at its deadline; the caller
        stops the card and drains it with ``take(0.0)``, which is bounded too.
        """
        self.sock.sendto(b"daq 0xfffff0 F", self.addr)
        start = time.monotonic()
        end = start + seconds
        limit = start + 30.0
        self.sock.settimeout(0.3)
        while True:
            now = time.monotonic()
            if (seconds > 0 and now > end) or now > limit:
                break
            try:
                self.data.append(self.sock.recv(65536))
            except TimeoutError:
                if now > end:
                    break
        out, self.data = self.data, []
        return out


PEDESTAL_RUN = [
    "sca enable 0",
    "aget * mode 0x1",
    "forceon_all 1",
    "subtract_ped 0",
    "zero_suppress 0",
    "ped * * 0",
    "thr * * 0",
    "trig_rate 2 20",
    "trig_enable 0x1",
    "mult_trig_ena 0",
    "event_limit 0x2",
    "hped offset * * 0",
    "hped clr * *",
    "serve_target 2",
    "sca enable 1",
]


def _events(c: Client) -> int:
    return int(re.search(r" events (\d+)", c.cmd("state").text).group(1))


def _pedestal(c: Client, subtract: bool) -> list[mon.ChannelSummary]:
    """One pass of the pedestal procedure (10 generator events into the histograms)."""
    n0 = _events(c)
    if subtract:  # second pass of the procedure: keep the equalisation constants
        c.run(["sca enable 0", "subtract_ped 1", "hped clr * *", "serve_target 2", "sca enable 1"])
    else:
        c.run(PEDESTAL_RUN)
    for _ in range(200):
        time.sleep(0.02)
        if _events(c) >= n0 + 10:
            break
    c.cmd("sca enable 0")
    return [s for a in range(4) for s in mon.parse_ped_summary(c.cmd(f"hped getsummary {a} *"))]


def _scenario(rate: float) -> Scenario:
    sc = Scenario.load("default")
    return dataclasses.replace(
        sc,
        fe55=dataclasses.replace(sc.fe55, rate_hz=rate),
        muon=dataclasses.replace(sc.muon, rate_hz=0.0),
    )


@pytest.fixture(scope="module")
def fe55(tmp_path_factory):
    truth = tmp_path_factory.mktemp("truth") / "truth.jsonl"
    with Emulator(
        _scenario(400.0),
        port=0,
        seed=11,
        bank=0,
        truth_path=truth,
        board={"realtime_cpu_share": 1.0},
    ) as emu:
        yield emu, truth


def test_pedestal_run_gives_configured_pedestals_and_noise(fe55) -> None:
    emu, _ = fe55
    c = Client(emu.address)
    summary = _pedestal(c, subtract=False)
    phys = emu.card.physics
    cm = phys.scenario.noise.common_mode_sigma
    by_slot = {(s.chip, s.channel): s for s in summary}
    for chip in range(4):
        for phys_ch in (1, 17, 64):
            s = by_slot[(chip, daq_index(phys_ch, 0))]
            assert s.mean == pytest.approx(float(phys.pedestal[chip, phys_ch - 1]), abs=1.0)
            expect = float(np.hypot(phys.noise[chip, phys_ch - 1], cm))
            assert s.stddev == pytest.approx(expect, rel=0.2)
    c.cmd("hped centermean * * 250")
    after = _pedestal(c, subtract=True)
    means = np.array([s.mean for s in after if s.stddev > 0])
    assert means.size >= 4 * 68 and np.all(np.abs(means - 250) < 1.5)


PHYSICS_RUN = [
    "sca enable 0",
    "daq 0xffffff F",
    "rbf reset",
    "clr evcnt",
    "clr tstamp",
    "serve_target 1",
    "aget * mode 0x0",
    "forceon_all 0",
    "subtract_ped 0",
    "zero_suppress 0",
    "eof_on_eoe 1",
    "trig_enable 0x0",
    "mult_trig_ena 1",
    "event_limit 0x0",
    "sca enable 1",
]


def _physics_events(c: Client, seconds: float, extra: list[str] = ()):
    c.run(PHYSICS_RUN[:-1] + list(extra) + PHYSICS_RUN[-1:])
    data = c.take(seconds)
    c.run(["sca enable 0", "daq 0xffffff F"])
    data += c.take(0.0)
    return decode_datagrams(data)


def test_decoded_events_match_truth_and_spectrum(fe55) -> None:
    emu, truth_path = fe55
    c = Client(emu.address)
    n_lines = len(read_truth(truth_path)) if truth_path.exists() else 0
    events, errors = _physics_events(c, 3.0)
    emu.card.truth.flush()
    truth = read_truth(truth_path)[n_lines:]
    assert not {k: v for k, v in errors.items() if v}
    assert len(events) >= 200 and len(events) == len(truth)
    ped = emu.card.physics.pedestal
    lut = StripMapping.default().lut(0)
    energies, checked = [], 0
    for ev, tr in zip(events, truth):
        assert (ev.event_count, ev.timestamp, ev.event_type) == (
            tr["event_count"],
            tr["timestamp"],
            tr["event_type"],
        )
        amp = {}
        for ch in ev.channels:
            strip = int(lut[ch.card, ch.chip, ch.channel])
            if strip >= 0:
                row = physical_channel(ch.channel, 0) - 1
                amp[strip] = float(ch.adc.max()) - float(ped[ch.chip, row])
        true = dict(zip(tr["strips_x"] + tr["strips_y"], tr["amplitude_x"] + tr["amplitude_y"]))
        for strip, a in true.items():
            if a > 80:  # well above the discriminator: must be read, amplitude within noise
                assert strip in amp
                assert amp[strip] == pytest.approx(a, abs=20 + 0.05 * a)
                checked += 1
        energies.append(sum(amp.values()))
    assert checked > 300
    assert np.all(np.diff([e.timestamp for e in events]) > 0)
    e = np.array(energies)
    main = float(np.median(e))  # K-alpha dominates
    hist, edges = np.histogram(e / main, bins=40, range=(0.2, 1.4))
    centres = (edges[:-1] + edges[1:]) / 2
    low = (centres > 0.3) & (centres < 0.7)
    esc_pos = float(centres[low][np.argmax(hist[low])])
    assert esc_pos == pytest.approx(2.94 / 5.9, abs=0.08)
    n_esc = int(((e / main > 0.35) & (e / main < 0.65)).sum())
    n_main = int(((e / main > 0.8) & (e / main < 1.3)).sum())
    assert 0.04 < n_esc / n_main < 0.2


def test_zero_suppression_with_thresholds_and_pre_post(fe55) -> None:
    emu, _ = fe55
    c = Client(emu.address)
    _pedestal(c, subtract=False)
    c.run(["hped centermean * * 250"])
    _pedestal(c, subtract=True)
    c.run(["hped setthr * * 250 5.0"])
    pre, post = 8, 4
    events, errors = _physics_events(
        c, 1.0, ["subtract_ped 1", "zero_suppress 1", f"zs_pre_post {pre} {post}", "emit_hit_cnt 1"]
    )
    assert not {k: v for k, v in errors.items() if v}
    thr = emu.card.board.settings.thr
    assert len(events) > 50
    runs = 0
    for ev in events:
        assert len(ev.hit_counts) >= 1
        for ch in ev.channels:
            bins = ch.bins.astype(int)
            over = {
                int(b) for b, v in zip(bins, ch.adc) if v > thr[ch.chip, ch.channel] and b < 508
            }
            assert over, "a kept channel has a sample over its threshold"
            window = set()
            for j in over:
                window.update(range(max(0, j - pre), min(511, j + post) + 1))
            assert set(bins.tolist()) == window
            runs += 1
    assert runs > 200
