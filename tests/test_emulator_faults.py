"""Emulator fault injection: every fault type is produced, seen on the wire and counted."""

from __future__ import annotations

import socket
import time

import pytest

from agetdaq.protocol.commands import parse_reply
from agetdaq.protocol.decode import decode_datagrams
from agetdaq.readout.config import ConfigError
from agetdaq.readout.simulation.emulator.faults import (
    FaultConfig,
    FaultInjector,
    parse_fault_args,
)
from agetdaq.readout.simulation.emulator.server import Emulator


def _dg(seq: int) -> bytes:
    return bytes([seq, 0]) + bytes(range(2, 40))


def test_parse_and_validate_fault_flags() -> None:
    cfg = FaultConfig.from_mapping(parse_fault_args(["drop=0.01", "silence_at=5,2", "burst=on"]))
    assert cfg.drop == 0.01 and cfg.silence_at == (2.0, 5.0) and cfg.burst is True
    for bad, key in (
        (["drop"], "fault"),
        (["drop=2"], "faults.drop"),
        (["nosuch=1"], "faults.nosuch"),
        (["delay_ms=-1"], "faults.delay_ms"),
        (["burst=maybe"], "faults.burst"),
        (["drop=nan"], "faults.drop"),
        (["silence_s=inf"], "faults.silence_s"),
        (["silence_at=5,-1"], "faults.silence_at[1]"),
    ):
        with pytest.raises(ConfigError) as info:
            FaultConfig.from_mapping(parse_fault_args(bad))
        assert info.value.key == key


@pytest.mark.parametrize("kind", ["drop", "duplicate", "truncate", "flip", "delay", "reorder"])
def test_each_data_fault_acts_and_is_counted(kind: str) -> None:
    inj = FaultInjector(FaultConfig.from_mapping({kind: 1.0, "delay_ms": 10}))
    out = [inj.process(_dg(k), now=0.0) for k in range(4)]
    flat = [d for batch in out for d in batch]
    assert inj.counts[kind] >= 2
    if kind == "drop":
        assert flat == []
    elif kind == "duplicate":
        assert flat == [_dg(k) for k in range(4) for _ in (0, 1)]
    elif kind == "truncate":
        assert all(2 <= len(d) < 40 and d[:2] == _dg(k)[:2] for k, d in enumerate(flat))
    elif kind == "flip":
        assert all(len(d) == 40 and d[:2] == _dg(k)[:2] for k, d in enumerate(flat))
        assert all(
            bin(int.from_bytes(a, "little") ^ int.from_bytes(_dg(k), "little")).count("1") == 1
            for k, a in enumerate(flat)
        )
    elif kind == "delay":
        assert flat == [] and inj.due_delayed(0.005) == []
        assert inj.due_delayed(0.011) == [_dg(k) for k in range(4)]
    else:  # reorder: every datagram is held and sent after the next one
        flat += inj.flush_held()
        assert sorted(flat) == [_dg(k) for k in range(4)] and flat != [_dg(k) for k in range(4)]


def test_timed_faults_fire_once_at_their_time() -> None:
    inj = FaultInjector(
        FaultConfig(
            silence_at=(1.0,), silence_s=0.5, reboot_at=(2.0,), burst_at=(3.0,), burst_s=0.2
        )
    )
    inj.schedule(100.0)
    assert inj.due_timed(100.5) == [] and not inj.silent(100.5)
    assert inj.due_timed(101.0) == ["silence"] and inj.silent(101.4) and not inj.silent(101.6)
    assert inj.due_timed(102.1) == ["reboot"]
    assert inj.due_timed(103.0) == ["burst"] and inj.burst(103.1) and not inj.burst(103.3)
    assert inj.due_timed(200.0) == []
    assert (inj.counts["silence"], inj.counts["reboot"], inj.counts["burst"]) == (1, 1, 1)


# ---- over UDP -----------------------------------------------------------------------------------

SETUP = [
    "sca enable 0",
    "daq 0xffffff F",
    "rbf reset",
    "clr evcnt",
    "aget * mode 0x1",
    "eof_on_eoe 1",
    "trig_rate 1 20",
    "trig_enable 0x1",
    "event_limit 0x2",
    "serve_target 1",
    "sca enable 1",
]


class Client:
    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))

    def cmd(self, line: str, timeout: float = 10.0):
        self.sock.sendto(line.encode(), self.addr)
        end = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            d = self.sock.recv(65536)
            if len(d) > 3 and d[3] & 0xFE != 0x08:
                return parse_reply(d)

    def collect(self, quiet: float = 0.4) -> list[bytes]:
        out = []
        self.sock.settimeout(quiet)
        for _ in range(100_000):
            try:
                out.append(self.sock.recv(65536))
            except TimeoutError:
                break
        return out

    def run_and_take(self, frames: int = 4000) -> list[bytes]:  # 10 events of 272 frames
        for line in SETUP:
            assert self.cmd(line).error == 0
        time.sleep(0.6)
        self.sock.sendto(f"daq 0x{frames:06x} F".encode(), self.addr)
        return self.collect()


@pytest.fixture(scope="module")
def emu():
    with Emulator(scenario="default", port=0, seed=5, bank=0) as e:
        yield e


def _set(c: Client, **faults: float) -> None:
    args = " ".join(f"{k}={v}" for k, v in faults.items())
    assert c.cmd(f"emu fault {args}").error == 0


def test_drop_duplicate_and_reorder_on_the_wire(emu: Emulator) -> None:
    c = Client(emu.address)
    _set(c, drop=0.2, seed=1)
    got = c.run_and_take()
    _set(c, drop=0)
    n_dropped = emu.counters["fault_drop"]
    assert n_dropped > 0 and len(got) + n_dropped == emu.counters["tx_daq"]
    _, errors = decode_datagrams(got)
    assert errors["SEQ_GAP"] > 0

    before = emu.counters["tx_daq"]
    _set(c, duplicate=1.0)
    got = c.run_and_take()
    _set(c, duplicate=0)
    assert len(got) == 2 * (emu.counters["tx_daq"] - before)
    events, errors = decode_datagrams(got)
    assert [e.event_count for e in events] == list(range(10))  # the decoder skips duplicates

    before = emu.counters["fault_reorder"]
    _set(c, reorder=0.5)
    got = c.run_and_take()
    _set(c, reorder=0)
    leads = [d[0] for d in got]
    assert emu.counters["fault_reorder"] > before and leads != sorted(leads)


def test_truncate_flip_and_delay_on_the_wire(emu: Emulator) -> None:
    c = Client(emu.address)
    _set(c, truncate=0.5)
    got = c.run_and_take()
    _set(c, truncate=0)
    assert emu.counters["fault_truncate"] > 0 and min(len(d) for d in got) < 1494
    _, errors = decode_datagrams(got)
    assert errors["FRAME_TRUNCATED"] + errors["FRAME_SIZE_MISMATCH"] > 0

    _set(c, flip=1.0)
    c.run_and_take()
    _set(c, flip=0)
    assert emu.counters["fault_flip"] > 0

    _set(c, delay=1.0, delay_ms=500)
    for line in SETUP:
        c.cmd(line)
    time.sleep(0.6)
    c.sock.sendto(b"daq 0x000001 F", c.addr)
    c.sock.settimeout(0.05)
    with pytest.raises(TimeoutError):  # held back by the delay fault...
        c.sock.recv(65536)
    c.sock.settimeout(5.0)
    assert c.sock.recv(65536)[3] & 0xFE == 0x08  # ...then delivered
    _set(c, delay=0)
    assert emu.counters["fault_delay"] >= 1


def test_silence_reboot_and_burst(emu: Emulator) -> None:
    c = Client(emu.address)
    assert c.cmd("emu silence 0.6").error == 0
    with pytest.raises(TimeoutError):
        c.cmd("version", timeout=0.3)
    time.sleep(0.4)
    assert c.cmd("version").error == 0
    assert emu.counters["fault_silence"] == 1 and emu.counters["fault_ignored_commands"] >= 1

    got = c.run_and_take(frames=20)
    assert got[0][1] == 0x01  # first reply flag
    assert c.cmd("emu reboot").error == 0
    got = c.run_and_take(frames=30)
    events, _ = decode_datagrams(got)
    assert got[0][:2] == b"\x00\x01" and events[0].event_count == 0
    assert emu.counters["fault_reboot"] == 1

    assert c.cmd("emu burst 1").error == 0
    assert c.cmd("emu burst 0").error == 0
    assert emu.counters["fault_burst"] == 1
    assert "faults:" in c.cmd("emu stat").text
