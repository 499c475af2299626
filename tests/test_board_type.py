"""The Board seam: a second board type, made up here, runs through the real link unchanged.

A new board type touches **one new module** (a :class:`agetdaq.readout.link.board.Board` subclass:
datagram classifier, command set, reply parser, credit request format, pause request, port and
datagram size) **and one registry entry** (a line in ``BOARD_TYPES`` of readout/link/board.py, or
:func:`~agetdaq.readout.link.board.register_board` from the new module); the acquisition selects it
by name. Here the module is this test file and the entry is made at run time: no existing module is
edited. (The link only moves a board's datagrams: decoding their payload into events is the data
path's decode stage.)

The toy protocol (bytes, little-endian):

* data frame ``b"TD" | tag u16 | n u16 | n payload bytes | b"ED"`` (tag = 8-bit sequence number,
  0x100 on the first frame after a request without sequence number);
* reply ``b"TR" | status s16 | ASCII text``, monitoring frame ``b"TM" | payload``;
* commands ``ping``, ``mon``, ``set NAME INT``, credit ``go AMOUNT F|B [SEQ]`` (no reply) and the
  pause ``halt``.

:class:`ToyBoardSim` speaks it on a real 127.0.0.1 UDP socket; the real
:class:`~agetdaq.readout.link.board_link.BoardLink` (receiver, ring, credit loop, command channel)
talks to it.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from agetdaq.protocol.command_table import CommandError
from agetdaq.protocol.commands import ProtocolError, Reply
from agetdaq.protocol.script import Script, Step
from agetdaq.readout.link import board as kinds
from agetdaq.readout.link.board import BOARD_TYPES, Board, register_board
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.link.credit import CreditConfig
from agetdaq.readout.link.errors import BoardError
from agetdaq.readout.link.receiver import Receiver, open_board_socket

HEAD = struct.Struct("<2sHH")  # magic, tag, payload bytes


def toy_frame(seq: int, payload: bytes, first: bool = False) -> bytes:
    return HEAD.pack(b"TD", (seq & 0xFF) | (0x100 if first else 0), len(payload)) + payload + b"ED"


def toy_reply(text: str, status: int = 0) -> bytes:
    return b"TR" + struct.pack("<h", status) + text.encode("ascii")


# ---- the board type: what a new module would hold -------------------------------------------


@dataclass(frozen=True)
class ToyCommand:
    name: str
    text: str
    args: dict = field(default_factory=dict)


class ToyFrames:
    """Classifier of toy datagrams in the ring's rows."""

    def __init__(self, buf: np.ndarray, check: bool) -> None:
        self._buf = buf
        self._check = check

    def classify(self, row: int, n: int) -> int:
        if n < 4:
            return kinds.RUNT
        r = self._buf[row]
        magic = bytes(r[:2])
        if magic == b"TD":
            if n < 8:
                return kinds.RUNT
            if self._check:
                if int(r[4]) | int(r[5]) << 8 != n - 8:
                    return kinds.SIZE_MISMATCH
                if bytes(r[n - 2 : n]) != b"ED":
                    return kinds.NO_EOF
            return kinds.DATA
        if magic == b"TR":
            return kinds.REPLY
        if magic == b"TM":
            return kinds.MONITOR
        return kinds.BAD_SOF

    def tag(self, row: int) -> int:
        return int(self._buf[row, 2]) | int(self._buf[row, 3]) << 8

    def tags(self, start: int, k: int) -> list[int]:
        return [self.tag(row) for row in range(start, start + k)]


class ToyBoard(Board):
    name = "toy"
    default_port = 4660
    max_datagram = 512
    pause_request = "halt"

    def classifier(self, buf: np.ndarray, check: bool) -> ToyFrames:
        return ToyFrames(buf, check)

    def validate(self, line: str) -> ToyCommand:
        words = line.split()
        text = " ".join(words)
        name, args = (words[0], words[1:]) if words else ("", [])
        try:
            if name in ("ping", "mon", "halt") and not args:
                return ToyCommand(name, text)
            if name == "set" and len(args) == 2 and args[0].isidentifier():
                return ToyCommand(name, text, {"value": int(args[1], 0)})
            if name == "go" and len(args) in (2, 3) and args[1] in ("F", "B"):
                return ToyCommand(name, text, {"amount": int(args[0], 0)})
        except ValueError:
            raise CommandError(-2, f"bad number in {text!r}") from None
        raise CommandError(-1, f"the toy board has no command {text!r}")

    def expects_reply(self, command: ToyCommand) -> bool:  # type: ignore[override]
        return command.name != "go"

    def parse_reply(self, datagram: bytes) -> Reply:
        if datagram[:2] == b"TR" and len(datagram) >= 4:
            (status,) = struct.unpack_from("<h", datagram, 2)
            return Reply("C", status, 0, text=datagram[4:].decode("ascii"))
        if datagram[:2] == b"TM" and len(datagram) % 2 == 0:
            return Reply(
                "M", 0, 0, payload=struct.unpack(f"<{len(datagram) // 2 - 1}H", datagram[2:])
            )
        raise ProtocolError(f"not a toy reply: {datagram[:8]!r}")

    def credit_request(self, amount: int, unit: str, seq: int | None) -> bytes:
        return f"go {amount} {unit}".encode() + (b"" if seq is None else f" {seq}".encode())


# ---- a toy board on a real socket ----------------------------------------------------------


class ToyBoardSim:
    """Answers toy commands, sends ``total`` data frames while it holds credit (unit F)."""

    def __init__(self, total: int = 0, skip: set[int] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.total = total
        self.skip = skip or set()  # frame indices "lost in the network"
        self.received: list[bytes] = []
        self.requests: list[tuple[int, int | None]] = []
        self.allowance = self.max_allowance = 0
        self.sent = 0
        self.client: tuple[str, int] | None = None
        self._seq = 0
        self._first = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="toy-board", daemon=True)

    def __enter__(self) -> ToyBoardSim:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            sending = self.allowance > 0 and self.client is not None and self.sent < self.total
            ready, _, _ = select.select([self.sock], [], [], 0 if sending else 0.01)
            if ready:
                data, addr = self.sock.recvfrom(2048)
                self.received.append(data)
                self._handle(data.decode("ascii", "replace").split(), addr)
            elif sending:
                assert self.client is not None
                if self.sent not in self.skip:
                    payload = struct.pack("<I", self.sent) * 4
                    self.sock.sendto(toy_frame(self._seq, payload, self._first), self.client)
                self._first = False
                self._seq += 1
                self.sent += 1
                self.allowance -= 1

    def _handle(self, words: list[str], addr: tuple[str, int]) -> None:
        if words[0] == "go":
            seq = int(words[3]) if len(words) > 3 else None
            self.requests.append((int(words[1]), seq))
            self.client = addr
            if seq is None:
                self._seq, self._first = 0, True
            self.allowance += int(words[1])
            self.max_allowance = max(self.max_allowance, self.allowance)
        elif words[0] == "halt":
            self.allowance = 0
            self.sock.sendto(toy_reply("halted"), addr)
        elif words[0] == "mon":
            self.sock.sendto(b"TM" + struct.pack("<3H", 7, 8, 9), addr)
        elif words[0] == "set" and words[1] == "bad":
            self.sock.sendto(toy_reply("no such register", -2), addr)
        else:
            self.sock.sendto(toy_reply("pong" if words[0] == "ping" else "ok"), addr)


@pytest.fixture(autouse=True)
def toy_registered():
    register_board("toy", ToyBoard)
    yield
    BOARD_TYPES.pop("toy", None)


def toy_link(sim: ToyBoardSim, **kw) -> BoardLink:
    host, port = sim.address
    return BoardLink(host, port, board="toy", local=("127.0.0.1", 0), rcvbuf=1 << 20, **kw)


def collect_rx(rx: Receiver, n: int, limit_s: float = 10.0) -> list[bytes]:
    out: list[bytes] = []
    end = time.monotonic() + limit_s
    while len(out) < n and time.monotonic() < end:
        buf, lengths, _ = rx.get_batch(64, 0.05)
        out += [bytes(buf[i, : lengths[i]]) for i in range(len(lengths))]
        rx.release(len(lengths))
    return out


def collect(link: BoardLink, n: int, limit_s: float = 10.0) -> list[bytes]:
    return collect_rx(link.receiver, n, limit_s)


def test_toy_board_commands_are_checked_sent_and_answered():
    with ToyBoardSim() as sim, toy_link(sim) as link:
        assert link.board.name == "toy" and link.receiver.slot_size == 512
        reply = link.command("ping")
        assert reply is not None and (reply.kind, reply.error, reply.text) == ("C", 0, "pong")
        with pytest.raises(BoardError, match=r"not sent.*no command"):
            link.command("sca cnt 0x200")  # a Feminos command: not in the toy's command set
        with pytest.raises(BoardError, match="no such register") as info:
            link.command("set bad 1")
        assert info.value.code == -2
        mon = link.command("mon")
        assert mon is not None and mon.kind == "M" and mon.payload == (7, 8, 9)
        assert sim.received == [b"ping", b"set bad 1", b"mon"]
        assert link.receiver.counters.replies == 3


def test_toy_board_data_reaches_the_ring_on_credit_and_halt_pauses_it():
    total = 600
    credit = CreditConfig(window=8, threshold=2)
    with ToyBoardSim(total=total) as sim, toy_link(sim, n_slots=64, credit=credit) as link:
        link.start_data()
        got = collect(link, total)
        assert [f[6:10] for f in got] == [struct.pack("<I", i) for i in range(total)]
        assert got[0] == toy_frame(0, struct.pack("<I", 0) * 4, first=True)
        halted = link.stop_data()
        assert halted is not None and halted.text == "halted" and sim.allowance == 0
    assert sim.requests[0] == (8, None)  # the window, as a first request
    assert [r[1] for r in sim.requests[1:]] == [i & 0xFF for i in range(len(sim.requests) - 1)]
    assert sim.max_allowance <= 8
    c, rx = link.credit.counters, link.receiver.counters
    assert c.lost_replies == 0 and c.resyncs == 1 and c.first_requests == 1
    assert c.credit_sent >= total  # every frame's credit went back
    assert rx.data_frames == total and rx.malformed == 0 and rx.ring_full_drops == 0
    assert sim.received[-1] == b"halt"


def test_toy_board_lost_frames_are_credited_back():
    total, lost = 300, {5, 6, 100}
    credit = CreditConfig(window=4, threshold=1)
    with (
        ToyBoardSim(total=total, skip=lost) as sim,
        toy_link(sim, n_slots=64, credit=credit) as link,
    ):
        link.start_data()
        got = collect(link, total - len(lost))
        link.stop_data()
    assert len(got) == total - len(lost)  # a window shrinking with each loss would stall
    assert link.credit.counters.lost_replies == len(lost)


def test_toy_board_defects_are_counted_by_kind():
    good = toy_frame(0, b"abcd")
    bad = {
        "runt": b"TD",
        "bad_sof": b"XX" + bytes(10),
        "size_mismatch": HEAD.pack(b"TD", 1, 9) + b"abcd" + b"ED",
        "no_eof": good[:-2] + b"??",
        "oversize": toy_frame(2, bytes(600)),  # longer than the 512-byte slot
    }
    with ToyBoardSim() as sim, toy_link(sim) as link:
        me = link.local_address
        for datagram in bad.values():
            sim.sock.sendto(datagram, me)
        sim.sock.sendto(good, me)
        got = collect(link, 1)
        end = time.monotonic() + 5
        while link.receiver.counters.datagrams < len(bad) + 1 and time.monotonic() < end:
            time.sleep(0.01)
    assert got == [good]
    c = link.receiver.counters
    for kind in bad:
        assert getattr(c, kind) == 1, kind
    assert c.accounted == c.datagrams == len(bad) + 1


def test_toy_board_one_datagram_path_sorts_with_the_same_classifier():
    """batch_size 1: one recv per datagram (the path of unconnected sockets and non-Linux)."""
    with ToyBoardSim() as sim:
        sock, _ = open_board_socket(sim.address, local=("127.0.0.1", 0), rcvbuf=1 << 20)
        rx = Receiver(sock, board="toy", batch_size=1, idle_s=0.02)
        with rx:
            assert not rx.capture.batched
            for datagram in (toy_frame(0, b"ab"), toy_reply("hi"), b"XX" + bytes(4)):
                sim.sock.sendto(datagram, sock.getsockname())
            reply = rx.get_reply(2.0)
            got = collect_rx(rx, 1)
            end = time.monotonic() + 5
            while rx.counters.datagrams < 3 and time.monotonic() < end:
                time.sleep(0.01)
        sock.close()
    assert reply is not None and reply.datagram == toy_reply("hi")
    assert got == [toy_frame(0, b"ab")]
    c = rx.counters
    assert (c.datagrams, c.data_frames, c.replies, c.bad_sof) == (3, 1, 1, 1)


def test_toy_board_script_steps_are_checked_with_its_command_set():
    steps = [
        Step("board", "ping"),
        Step("sleep", "sleep 0", {"seconds": 0.0}),
        Step("board", "mon"),
    ]
    bad = [Step("board", "ping"), Step("board", "pul_amp 0x10", line=2)]
    with ToyBoardSim() as sim, toy_link(sim) as link:
        with pytest.raises(BoardError, match="no command"):
            link.scripts.run(Script("", bad, ()))
        assert sim.received == []  # refused before anything was sent
        results = link.scripts.run(Script("", steps, ()))
        assert [r.reply.kind for r in results if r.reply is not None] == ["C", "M"]
        assert sim.received == [b"ping", b"mon"]


def test_unknown_board_type_is_a_clear_error():
    with pytest.raises(BoardError, match=r"unknown board type 'nope' \(known: feminos, toy\)"):
        BoardLink("127.0.0.1", 1122, board="nope")


def test_the_acquisition_selects_the_board_type_by_name_from_its_settings(tmp_path):
    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings

    with ToyBoardSim() as sim:
        bec = f"127.0.0.1:{sim.address[1]}"
        acq = Acquisition(Settings().with_daq(bec=bec, data_dir=str(tmp_path), board_type="toy"))
        try:
            assert acq.link.board.name == "toy"
            reply = acq.link.command("ping")
            assert reply is not None and reply.text == "pong"
        finally:
            acq.close()
    with pytest.raises(BoardError, match="unknown board type 'nope'"):
        Acquisition(Settings().with_daq(bec=bec, data_dir=str(tmp_path), board_type="nope"))
