"""pcap tap (both directions, bounded queue) and capture replay as a fake board, end to end."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from agetdaq.protocol.commands import encode_cframe, parse_reply
from agetdaq.protocol.encode import encode_events
from agetdaq.protocol.event import Channel, Event
from agetdaq.protocol.pcap import ethernet_frame, read_pcap, write_pcap
from agetdaq.readout.acquisition.engine import Acquisition
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.cli import main
from agetdaq.readout.link.pcap_tap import RX, TX, PcapTap, _Headers
from agetdaq.readout.simulation.capture_replay import (
    CaptureReplay,
    ReplayError,
    load_capture,
    normalise,
    parse_daq,
)
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Emulator
from agetdaq.readout.store.reader import RunFile

BOARD = ("10.1.2.3", 1122)
PC = ("10.1.2.100", 40000)


def _events(n: int, first: int = 0) -> list[Event]:
    out = []
    for k in range(n):
        bins = np.arange(100 + k, 120 + k, dtype=np.uint16)
        ch = Channel(0, k % 4, 3 + k, bins, (250 + np.arange(20) * (k + 1)).astype(np.uint16))
        out.append(Event(timestamp=1000 * (first + k), event_count=first + k, channels=[ch]))
    return out


def _reply(text: str) -> bytes:
    return encode_cframe(f"0 Fem(00) {text}\n")


def _capture(path, data: list[bytes]) -> None:
    """A hand-made session: configuration, one data run of ``data``, pause; then a 2nd run."""
    t = 1_700_000_000.0
    recs = []

    def cmd(text: str, reply: str | None) -> None:
        nonlocal t
        recs.append((t, PC, BOARD, text.encode()))
        t += 0.001
        if reply is not None:
            recs.append((t, BOARD, PC, _reply(reply)))
            t += 0.001

    cmd("version", "version 2.7")
    cmd("sca  enable 1", "sca enable 1")  # normalised to single blanks
    cmd("daq 0xffffff F", "daq paused")  # pause before any data: no segment
    cmd("daq 0x000004 F", None)
    for d in data[:3]:
        recs.append((t, BOARD, PC, d))
        t += 0.01
    cmd("daq 0x000003 F 0x00", None)
    cmd("daq 0xffffff F", "daq paused")
    cmd("sca enable 1", "sca enable 1 again")
    cmd("daq 0x000004 F", None)
    for d in data[3:]:
        recs.append((t, BOARD, PC, d))
        t += 0.01
    cmd("daq 0xffffff F", "daq paused")
    write_pcap(path, recs)


# ---- tap -------------------------------------------------------------------------------------


def test_tap_records_both_directions_with_real_times(tmp_path):
    path = tmp_path / "t.pcap"
    tap = PcapTap(path, BOARD, PC)
    t0 = time.monotonic_ns()
    tap(TX, b"daq 0x000008 F", t0)
    tap(RX, memoryview(b"\x01\x00\x00\x08\x08\x00\x0f\x00"), t0 + 1_500_123)
    tap.close()
    recs = list(read_pcap(path))
    assert [(r.src, r.dst) for r in recs] == [(PC, BOARD), (BOARD, PC)]
    assert recs[0].payload == b"daq 0x000008 F"
    assert recs[1].payload == b"\x01\x00\x00\x08\x08\x00\x0f\x00"
    assert abs(recs[0].timestamp - time.time()) < 60  # Unix time, not the monotonic clock
    assert recs[1].timestamp - recs[0].timestamp == pytest.approx(1.500123e-3, abs=1e-6)
    assert path.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"  # pcap with nanosecond timestamps
    assert tap.stats()["written"] == 2 and tap.stats()["dropped"] == 0


def test_tap_counts_drops_instead_of_blocking(tmp_path):
    tap = PcapTap(tmp_path / "t.pcap", BOARD, PC, max_queue=3, drain_s=30.0)
    for i in range(10):
        tap(RX, bytes([i, 0]), time.monotonic_ns())
    assert (tap.captured, tap.dropped) == (3, 7)
    tap.close()
    assert [r.payload for r in read_pcap(tmp_path / "t.pcap")] == [
        b"\x00\x00",
        b"\x01\x00",
        b"\x02\x00",
    ]
    tap(RX, b"late", 0)  # after close: counted, never written
    assert tap.dropped == 8


@pytest.mark.parametrize("n", [0, 1, 7, 1494, 9000])
def test_tap_frame_headers_are_the_pcap_module_frames(n):
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    for src, dst in ((PC, BOARD), (BOARD, PC)):
        assert _Headers(src, dst).make(n) + payload == ethernet_frame(src, dst, payload, 0)


# ---- capture model ---------------------------------------------------------------------------


def test_load_capture_pairs_replies_and_splits_runs(tmp_path):
    data = encode_events(_events(6), eof_on_eoe=True)
    _capture(tmp_path / "c.pcap", data)
    cap = load_capture(tmp_path / "c.pcap")
    assert cap.board == BOARD
    assert [len(s) for s in cap.segments] == [3, 3]
    assert [d for s in cap.segments for _, d in s] == data
    assert len(cap.replies["daq 0xffffff F"]) == 3
    texts = [parse_reply(r).text for r in cap.replies["sca enable 1"]]
    assert texts == ["0 Fem(00) sca enable 1\n", "0 Fem(00) sca enable 1 again\n"]
    assert cap.orphan_replies == 0
    with pytest.raises(ReplayError, match="no board"):
        load_capture(tmp_path / "c.pcap", ("10.9.9.9", 0))


def test_a_command_that_timed_out_stays_unanswered(tmp_path):
    recs = [
        (1.0, PC, BOARD, b"hbusy get"),  # no reply: timed out in the original run
        (5.0, PC, BOARD, b"version"),
        (5.001, BOARD, PC, _reply("version 2.7")),
        (6.0, BOARD, PC, _reply("late")),  # nobody waits for it
    ]
    write_pcap(tmp_path / "c.pcap", recs)
    cap = load_capture(tmp_path / "c.pcap")
    assert cap.replies["hbusy get"] == [None] and cap.unanswered == 1 and cap.orphan_replies == 1
    assert parse_reply(cap.replies["version"][0]).text == "0 Fem(00) version 2.7\n"
    with CaptureReplay(cap, ("127.0.0.1", 0), speed=0) as rep:
        c = _Client(rep.address)
        c.send("hbusy get")
        assert c.nothing()
        assert c.ask("version") == "0 Fem(00) version 2.7\n"
        assert rep.stats()["unanswered"] == 1


def test_command_text_and_data_requests_are_parsed():
    assert normalise(b"  sca   enable 1\r\n\x00") == "sca enable 1"
    assert parse_daq("daq").bare
    assert parse_daq("daq 0xffffff F").pause
    req = parse_daq("daq 0x000010 B 0x07")
    assert (req.amount, req.unit, req.pause) == (16, "B", False)
    assert parse_daq("sca enable 1") is None and parse_daq("daq 12") is None


# ---- replay server ---------------------------------------------------------------------------


class _Client:
    def __init__(self, address) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self.sock.connect(address)

    def send(self, text: str) -> None:
        self.sock.send(text.encode())

    def ask(self, text: str) -> str:
        self.send(text)
        return parse_reply(self.sock.recv(65535)).text

    def frames(self, n: int) -> list[bytes]:
        return [self.sock.recv(65535) for _ in range(n)]

    def nothing(self, wait: float = 0.2) -> bool:
        self.sock.settimeout(wait)
        try:
            self.sock.recv(65535)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(2.0)
        return False


def test_replay_answers_from_the_capture_and_sends_on_credit(tmp_path):
    data = encode_events(_events(6), eof_on_eoe=True)
    _capture(tmp_path / "c.pcap", data)
    with CaptureReplay(tmp_path / "c.pcap", ("127.0.0.1", 0), speed=0) as rep:
        c = _Client(rep.address)
        assert c.ask("version") == "0 Fem(00) version 2.7\n"
        assert c.ask("version") == "0 Fem(00) version 2.7\n"  # last reply repeated
        assert c.ask("sca enable 1") == "0 Fem(00) sca enable 1\n"
        assert c.ask("sca   enable 1") == "0 Fem(00) sca enable 1 again\n"
        assert c.ask("hhit get 0").startswith("-1 Fem(00) replay:")
        assert c.ask("daq 0xffffff F") == "0 Fem(00) daq paused\n"  # no data yet: same segment
        c.send("daq 0x000002 F")
        assert c.frames(2) == data[:2]  # original lead words
        assert c.nothing()
        assert c.ask("daq") == "0 Fem(00) send_credits: 0 F\n"
        c.send(f"daq 0x{len(data[2]):06x} B 0x00")
        assert c.frames(1) == data[2:3]
        assert c.nothing()  # first segment exhausted: waits for the pause
        assert c.ask("daq 0xffffff F") == "0 Fem(00) daq paused\n"
        c.send("daq 0x000010 F")
        assert c.frames(3) == data[3:]
        assert c.nothing()
        assert rep.done
        stats = rep.stats()
    assert stats["unmatched"] == 1 and stats["frames_sent"] == 6 and stats["frames_skipped"] == 0


def test_replay_keeps_the_captured_frame_spacing(tmp_path):
    data = encode_events(_events(6), eof_on_eoe=True)
    _capture(tmp_path / "c.pcap", data)  # frames 10 ms apart in the capture
    with CaptureReplay(tmp_path / "c.pcap", ("127.0.0.1", 0), speed=1.0) as rep:
        c = _Client(rep.address)
        c.ask("daq 0xffffff F")
        c.send("daq 0x000003 F")
        t0 = time.monotonic()
        c.frames(3)
        spread = time.monotonic() - t0
    assert spread >= 0.015  # two 10 ms gaps (a lower bound only: never flaky on a slow machine)


def test_replay_cli_reports_a_bad_capture(tmp_path, capsys):
    (tmp_path / "x.pcap").write_bytes(b"not a capture at all")
    assert main(["replay", str(tmp_path / "x.pcap"), "--board", "127.0.0.1:0"]) == 1
    assert "not a pcap" in capsys.readouterr().err


def test_replay_cli_exits_when_done_and_idle(tmp_path, capsys):
    write_pcap(
        tmp_path / "c.pcap",
        [(1.0, PC, BOARD, b"version"), (1.001, BOARD, PC, _reply("version 2.7"))],
    )
    args = ["replay", str(tmp_path / "c.pcap"), "--board", "127.0.0.1:0", "--idle-exit", "0.2"]
    args.append("--json")
    assert main(args) == 0
    assert '"frames_in_capture": 0' in capsys.readouterr().out


# ---- end to end: capture a run, replay it into a second run ----------------------------------


def _fast_scenario() -> Scenario:
    data = Scenario.load("default").as_dict()
    data.pop("path", None)
    data["source"] = {"fe55": data.pop("fe55"), "muon": data.pop("muon")}
    data["source"]["fe55"].update(rate_hz=300.0, area="full")
    data["source"]["muon"]["rate_hz"] = 30.0
    return Scenario.from_dict(data, "fast")


def _take_run(bec: str, data_dir, output, events: int | None, pcap=None, until=None) -> dict:
    """One run; it stops after ``events`` events, or once ``until()`` is true."""
    settings = Settings().with_daq(bec=bec, data_dir=str(data_dir), store_waveforms="all")
    acq = Acquisition(settings, pcap=pcap)
    try:
        acq.configure("run")
        acq.start_run("background", "", output, events=events, seconds=30)
        end = time.monotonic() + 40
        while acq.state == "running" and time.monotonic() < end:
            time.sleep(0.05)
            acq.poll()
            if until is not None and acq.state == "running" and until():
                acq.stop_run("capture replayed")
        assert acq.state == "configured", acq.message
        return acq.counters()
    finally:
        acq.close()


@pytest.fixture(scope="module")
def emu():
    emulator = Emulator(_fast_scenario(), port=0, seed=11).start()
    yield emulator
    emulator.stop()


@pytest.mark.network
def test_a_replayed_capture_reproduces_the_run(tmp_path, emu):
    first = _take_run(
        f"127.0.0.1:{emu.address[1]}", tmp_path, tmp_path / "a.h5", 150, tmp_path / "a.pcap"
    )
    assert first["capture"]["dropped"] == 0 and first["capture"]["written"] > 200
    recs = list(read_pcap(tmp_path / "a.pcap"))
    to_board = [r for r in recs if r.dst[1] == emu.address[1]]
    from_board = [r for r in recs if r.src[1] == emu.address[1]]
    assert to_board[0].payload == b"version"
    assert any(r.payload.startswith(b"daq 0x") for r in to_board)  # credit requests too
    assert all(abs(r.timestamp - time.time()) < 600 for r in recs)
    with RunFile(tmp_path / "a.h5") as f:
        n_a = f.n_events
        assert f.n_datagrams == sum(1 for r in from_board if r.payload[3] & 0xFE == 0x08)

    with CaptureReplay(tmp_path / "a.pcap", ("127.0.0.1", 0), speed=0) as rep:
        # the original stopped after its 150th event and a pause; what came before the pause
        # (maybe part of one more event, closed TRUNCATED at the end) is in the capture: the
        # replayed run takes all of it and stops once the replay has sent everything
        bec = f"127.0.0.1:{rep.address[1]}"
        second = _take_run(bec, tmp_path, tmp_path / "b.h5", None, until=lambda: rep.done)
        stats = rep.stats()
    assert stats["unmatched"] == 0 and stats["done"] and stats["frames_skipped"] == 0
    assert second["builder"]["missing"] == 0

    with RunFile(tmp_path / "a.h5") as a, RunFile(tmp_path / "b.h5") as b:
        # the original file holds exactly its 150 events; the capture (and both raw records)
        # also holds what the card sent before the pause, which the replayed run keeps
        ea, eb = a.events(), b.events()
        assert len(ea) == n_a == 150 and len(eb) >= n_a
        for key in ("event_id", "event_count", "timestamp", "flags", "n_channels"):
            assert np.array_equal(ea[key], eb[key][:n_a]), key
        chb = b.channels()
        assert np.array_equal(a.channels(), chb[chb["event_row"] < n_a])
        for x, y in zip(a.iter_events(), b.iter_events(0, n_a)):
            assert x.same_data(y)
        assert list(a.datagrams()) == list(b.datagrams())


@pytest.mark.network
def test_agetdaq_run_writes_the_capture(tmp_path, emu, capsys):
    pcap = tmp_path / "cli.pcap"
    args = ["run", "--board", f"127.0.0.1:{emu.address[1]}", "--data-dir", str(tmp_path), "--json"]
    args += [
        "--events",
        "30",
        "--seconds",
        "30",
        "-o",
        str(tmp_path / "cli.h5"),
        "--pcap",
        str(pcap),
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counters"]["capture"]["dropped"] == 0
    cap = load_capture(pcap)
    assert cap.board == ("127.0.0.1", emu.address[1]) and cap.n_frames > 0
    with RunFile(tmp_path / "cli.h5") as f:
        assert f.n_datagrams == cap.n_frames


def test_serve_and_run_take_a_pcap_option():
    from agetdaq.readout.cli import build_parser

    parser = build_parser()
    for command in ("run", "serve"):
        assert parser.parse_args([command, "--pcap", "x.pcap"]).pcap == "x.pcap"
