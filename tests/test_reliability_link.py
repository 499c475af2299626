"""Faults of the board link, injected by the emulator and compared with what the DAQ counted.

One emulator (burst mode: events as fast as the DAQ takes them) and one acquisition serve every
test; each test is one short run with one kind of fault at 1 % of the data datagrams. The
emulator's fault injector is wrapped so that the test knows, datagram by datagram, what was sent
before and after the fault: the clean stream decodes to the reference events, the faulted one
is what the DAQ got.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agetdaq.protocol.decode import decode_datagrams
from agetdaq.protocol.event import Event
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.simulation.emulator.faults import PROB_KEYS
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile
from agetdaq.readout.transport.stream import Subscriber

pytestmark = pytest.mark.network
RUN_S = 1.5


@dataclass
class Rig:
    emu: Emulator
    acq: Acquisition
    tmp: Path
    log: list[tuple[bytes, list[bytes]]] = field(default_factory=list)
    runs: int = 0


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("link")
    emu = Emulator("calibration", port=0, seed=21, faults={"burst": True}).start()
    inj = emu.card.faults
    r = Rig(emu, None, tmp)  # type: ignore[arg-type]
    process = inj.process

    def recording(payload: bytes, now: float) -> list[bytes]:
        out = process(payload, now)
        r.log.append((payload, list(out)))
        return out

    inj.process = recording  # the injector's own counters still count every fault
    settings = Settings().with_daq(
        bec=f"127.0.0.1:{emu.address[1]}",
        data_dir=str(tmp),
        store_waveforms="all",
        heartbeat_s=0.5,
        board_timeout_s=8.0,  # a 5 s silence is an incident, not a lost board
    )
    r.acq = Acquisition(settings, publish="tcp://127.0.0.1:*")
    try:
        r.acq.configure("run")
        yield r
    finally:
        r.acq.close()
        emu.stop()


@dataclass
class Outcome:
    events: list[Event]
    reference: dict[int, Event]
    counters: dict
    losses: dict
    injected: dict[str, int]
    rx: dict[str, int]
    log: list[tuple[bytes, list[bytes]]]
    held_back: int


def _well_formed(d: bytes) -> bool:
    """What the receiver accepts as a data frame (size word and END_OF_FRAME right)."""
    if len(d) < 8 or len(d) & 1:
        return False
    size = struct.unpack_from("<H", d, 4)[0]
    return size + 2 == len(d) and d[-2:] == b"\x0f\x00"


def _take_run(rig: Rig, seconds: float = RUN_S, **faults: float) -> Outcome:
    acq, inj = rig.acq, rig.emu.card.faults
    inj.update({**dict.fromkeys(PROB_KEYS, 0.0), **faults})
    injected0 = dict(inj.counts)
    rx0 = acq.link.receiver.counters.as_dict()
    rig.log.clear()
    rig.runs += 1
    path = rig.tmp / f"run{rig.runs}.h5"
    acq.start_run("background", "link faults", path, seconds=seconds)
    end = time.monotonic() + seconds + 20
    while acq.state == "running" and time.monotonic() < end:
        time.sleep(0.05)
        acq.poll()
    assert acq.state == "configured", acq.message
    inj.update(dict.fromkeys(PROB_KEYS, 0.0))
    held_back = len(inj.flush_held())  # a datagram held for reordering when the run stopped
    rx1 = acq.link.receiver.counters.as_dict()
    with RunFile(path) as f:
        events = list(f.iter_events())
    ref, _ = decode_datagrams([p for p, _ in rig.log])
    return Outcome(
        events=events,
        reference={e.event_count: e for e in ref if e.flags == 0},
        counters=acq.counters(),
        losses=acq.losses(),
        injected={k: inj.counts[k] - injected0[k] for k in inj.counts},
        rx={k: rx1[k] - rx0[k] for k in rx1},
        log=list(rig.log),
        held_back=held_back,
    )


def _check_events(o: Outcome) -> int:
    """Every clean event equals the card's; every other one is flagged; every absent counter
    is counted missing. Returns the number of damaged events."""
    counts = [e.event_count for e in o.events]
    assert len(counts) == len(set(counts)), "an event was written twice"
    assert len(o.events) > 200, "too little data to judge"
    damaged = 0
    for e in o.events:
        if e.flags:
            damaged += 1
        else:
            assert e.event_count in o.reference, f"event {e.event_count} is not the card's"
            assert e.same_data(o.reference[e.event_count]), f"event {e.event_count} altered"
    b = o.counters["builder"]
    assert b["damaged"] == damaged
    absent = set(range(min(counts), max(counts) + 1)) - set(counts)
    assert b["missing"] - b["late"] == len(absent) == o.losses["builder"]["missing_events"]
    assert o.rx["ring_full_drops"] == 0 and o.losses["socket"]["kernel_drops"] == 0
    return damaged


def _trailing(log: list[tuple[bytes, list[bytes]]], hit) -> int:
    """Faulted datagrams after the last intact one: no later sequence number reveals them."""
    n = 0
    for payload, out in reversed(log):
        if not hit(payload, out):
            break
        n += 1
    return n


def test_clean_run_is_exact_and_counts_nothing(rig):
    o = _take_run(rig, delay=0.0, drop=1e-9)  # any fault > 0 routes datagrams through the log
    assert _check_events(o) <= 1  # at most the event cut by the stop
    seq = o.counters["sequence"]
    assert (seq["missing"], seq["late"], seq["duplicates"]) == (0, 0, 0)
    assert o.counters["decoder"].get("SEQ_GAP", 0) == 0


def test_one_percent_loss_is_counted_datagram_for_datagram(rig):
    o = _take_run(rig, drop=0.01)
    dropped = sum(1 for _, out in o.log if not out)
    assert o.injected["drop"] == dropped > 10
    _check_events(o)
    seen = dropped - _trailing(o.log, lambda p, out: not out)
    assert o.counters["sequence"]["missing"] == seen
    assert o.losses["link"]["lost_datagrams"] == seen
    assert o.counters["builder"]["damaged"] + o.losses["builder"]["missing_events"] > 0


def test_duplicates_are_dropped_and_counted(rig):
    o = _take_run(rig, duplicate=0.01)
    assert o.injected["duplicate"] > 10
    assert _check_events(o) <= 1  # a re-sent datagram damages nothing
    assert o.counters["sequence"]["duplicates"] == o.injected["duplicate"]
    assert o.counters["decoder"]["DUPLICATE_DATAGRAM"] == o.injected["duplicate"]
    assert o.counters["sequence"]["missing"] == 0


def test_credit_loop_does_not_count_duplicates_as_lost(rig):
    before = rig.acq.counters()["credit"]  # the link's counters span the module's runs
    o = _take_run(rig, seconds=0.8, duplicate=0.01)
    assert o.injected["duplicate"] > 0
    credit = {k: o.counters["credit"][k] - before[k] for k in ("lost_replies", "stale_replies")}
    assert credit["lost_replies"] == 0
    assert credit["stale_replies"] > 0


def test_reordered_datagrams_are_late_not_lost(rig):
    o = _take_run(rig, reorder=0.01)
    assert o.injected["reorder"] > 10
    _check_events(o)
    seq = o.counters["sequence"]
    assert seq["late"] == o.injected["reorder"] - o.held_back
    assert seq["missing"] == 0
    assert o.counters["builder"]["damaged"] > 0  # events across a swapped pair are cut, flagged


def test_truncated_datagrams_are_refused_and_counted(rig):
    o = _take_run(rig, truncate=0.01)
    cut = sum(1 for p, out in o.log if out and len(out[0]) < len(p))
    assert o.injected["truncate"] == cut > 10
    _check_events(o)
    malformed = sum(o.rx[k] for k in ("runt", "odd_length", "size_mismatch", "no_eof"))
    assert malformed == cut
    seen = cut - _trailing(o.log, lambda p, out: bool(out) and len(out[0]) < len(p))
    assert o.counters["sequence"]["missing"] == seen


def test_all_faults_at_once(rig):
    o = _take_run(rig, drop=0.01, duplicate=0.01, reorder=0.01, truncate=0.01)
    assert all(o.injected[k] > 0 for k in ("drop", "duplicate", "reorder", "truncate"))
    _check_events(o)
    delivered = [d for _, out in o.log for d in out]
    malformed = sum(o.rx[k] for k in ("runt", "odd_length", "size_mismatch", "no_eof"))
    assert malformed == sum(1 for d in delivered if not _well_formed(d))
    assert o.rx["data_frames"] == sum(1 for d in delivered if _well_formed(d))


# ---- the board goes away --------------------------------------------------------------------


def _emu_command(emu: Emulator, line: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.sendto(line.encode(), emu.address)
        s.recv(2048)


def _drive(acq: Acquisition, sub: Subscriber, want, limit_s: float) -> float | None:
    """Poll the acquisition and read the stream until a status satisfies ``want``; returns the
    monotonic time it arrived, or None at the limit."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        acq.poll()
        msg = sub.recv(20)
        if msg is not None and msg.topic == "status" and want(msg.header):
            return time.monotonic()
    return None


def _more_events(acq: Acquisition, n: int, limit_s: float = 10.0) -> bool:
    target = acq.datapath.counters.events + n
    end = time.monotonic() + limit_s
    while time.monotonic() < end and acq.datapath.counters.events < target:
        acq.poll()
        time.sleep(0.02)
    return acq.datapath.counters.events >= target


@pytest.fixture
def running(rig):
    """A run in progress with data flowing; stopped afterwards whatever happened."""
    sub = Subscriber(rig.acq.publisher.address, topics=("status",))
    rig.runs += 1
    rig.acq.start_run("background", "board faults", rig.tmp / f"run{rig.runs}.h5", seconds=60)
    try:
        assert _more_events(rig.acq, 100)
        yield sub
    finally:
        sub.close()
        if rig.acq.state == "running":
            rig.acq.stop_run("test done")


def test_board_reboot_mid_run_is_reported_and_the_run_goes_on(rig, running, caplog):
    acq = rig.acq
    caplog.set_level(logging.WARNING, logger="agetdaq.readout.acquisition.engine")
    t_reboot = time.monotonic()
    _emu_command(rig.emu, "emu reboot")
    t_seen = _drive(acq, running, lambda st: "restarted" in st["message"], 10)
    assert t_seen is not None, "the reboot never reached the stream"
    assert t_seen - t_reboot < 2.0  # heartbeat 0.5 s: re-grant within 1 s, then the first event
    assert _more_events(acq, 100), "no data after the reboot"
    path = acq.run.path
    acq.stop_run("test done")
    assert any("restarted" in r.getMessage() for r in caplog.records)
    with RunFile(path) as f:
        counts = f.events()["event_count"].astype("int64")
    assert (counts[1:] < counts[:-1]).sum() == 1  # one restart of the counter, kept in the file
    assert acq.counters()["builder"]["restarts"] == 1
    assert acq.state == "configured"


def test_board_silent_for_5_s_is_reported_and_the_run_resumes(rig, running, caplog):
    acq = rig.acq
    caplog.set_level(logging.WARNING, logger="agetdaq.readout.acquisition.engine")
    t_silent = time.monotonic()
    _emu_command(rig.emu, "emu silence 5")
    dead = _drive(acq, running, lambda st: not st["board_alive"], 10)
    assert dead is not None, "the silence never reached the stream"
    assert dead - t_silent < 2.0  # heartbeat 0.5 s + its 0.5 s reply timeout
    back = _drive(acq, running, lambda st: st["board_alive"], 15)
    assert back is not None and back - t_silent >= 5.0
    assert _more_events(acq, 100), "no data after the silence"
    acq.stop_run("test done")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "not answering" in text and "answers again" in text
    assert acq.state == "configured"
