"""One board's side of a capture, read for replay: its commands, the reply each got, and the data
frames it sent, cut into segments at the captured pauses (rules in
:mod:`agetdaq.readout.simulation.capture_replay`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agetdaq.protocol import words as w
from agetdaq.protocol.command_table import CommandError, validate
from agetdaq.protocol.pcap import Address, PcapRecord, read_pcap

_FRAME_SOF = {w.START_OF_DFRAME: "D", w.START_OF_MFRAME: "M", w.START_OF_CFRAME: "C"}


class ReplayError(ValueError):
    """The capture cannot be replayed (no board in it, several boards and none chosen ...)."""


def normalise(payload: bytes) -> str:
    """A command datagram as text: NULs, line ends and repeated blanks removed."""
    text = payload.decode("ascii", "replace").strip("\x00\r\n\t ")
    return " ".join(text.split())


def frame_kind(payload: bytes) -> str:
    """'D', 'M' or 'C' for a board datagram (lead word + frame), '' for anything else."""
    if len(payload) < 4:
        return ""
    return _FRAME_SOF.get((payload[2] | payload[3] << 8) & 0xFE00, "")


@dataclass
class DataRequest:
    """A parsed ``daq`` line: bare (read-back), pause, or a grant of ``amount`` ``unit``."""

    bare: bool = False
    pause: bool = False
    amount: int = 0
    unit: str = "F"


def parse_daq(text: str) -> DataRequest | None:
    """The data request of a command line, None when it is not a (valid) ``daq`` line."""
    if text.split()[:1] != ["daq"]:
        return None
    try:
        parsed = validate(text)
    except CommandError:
        return None
    a = parsed.args
    if "amount" not in a:
        return DataRequest(bare=True)
    return DataRequest(pause=bool(a["pause"]), amount=int(a["amount"]), unit=str(a["unit"]))


@dataclass
class CapturedBoard:
    """One board's side of a capture."""

    board: Address
    # command text -> the reply of each occurrence, in order (None: it got none in the capture)
    replies: dict[str, list[bytes | None]] = field(default_factory=dict)
    segments: list[list[tuple[float, bytes]]] = field(default_factory=list)  # (time, datagram)
    commands: int = 0
    orphan_replies: int = 0  # replies with no command waiting for one
    unanswered: int = 0  # commands that got no reply before the next one (timed out)
    source_id: int = 0  # femid of the board's frames

    @property
    def n_frames(self) -> int:
        return sum(len(s) for s in self.segments)


def boards_in(records: Iterable[PcapRecord]) -> dict[Address, int]:
    """Addresses that sent board frames (D/M/C), with the number of frames each sent."""
    out: dict[Address, int] = {}
    for r in records:
        if frame_kind(r.payload):
            out[r.src] = out.get(r.src, 0) + 1
    return out


def load_capture(path: str | Path, board: Address | None = None) -> CapturedBoard:
    """Commands, replies and data segments of one board in a capture (see
    :mod:`agetdaq.readout.simulation.capture_replay`).

    ``board`` selects the board when the capture holds several; its port may be 0 (any).
    """
    records = list(read_pcap(path))
    found = boards_in(records)
    if board is not None:
        chosen = [a for a in found if board[0] in ("", a[0]) and board[1] in (0, a[1])]
    else:
        chosen = list(found)
    if not chosen:
        what = f"board {board[0]}:{board[1]}" if board else "board frames"
        raise ReplayError(f"{path}: no {what} in the capture (boards seen: {_names(found)})")
    if len(chosen) > 1:
        raise ReplayError(f"{path}: several boards ({_names(found)}); choose one with --source")
    cap = CapturedBoard(chosen[0])
    awaiting: str | None = None  # the command waiting for its reply (one at a time, as the DAQ)
    current: list[tuple[float, bytes]] = []
    first_frame = True
    for r in records:
        if r.dst == cap.board:
            text = normalise(r.payload)
            cap.commands += 1
            req = parse_daq(text)
            if req is None or req.bare or req.pause:
                if awaiting is not None:  # the previous one timed out unanswered
                    cap.replies.setdefault(awaiting, []).append(None)
                    cap.unanswered += 1
                awaiting = text
        elif r.src == cap.board:
            kind = frame_kind(r.payload)
            if first_frame and kind:
                cap.source_id = (r.payload[2] | r.payload[3] << 8) & 0x1F
                first_frame = False
            if kind == "D" or not kind:
                current.append((r.timestamp, r.payload))
            elif awaiting is None:
                cap.orphan_replies += 1
            else:
                cap.replies.setdefault(awaiting, []).append(r.payload)
                req = parse_daq(awaiting)
                awaiting = None
                if req is not None and req.pause and current:
                    cap.segments.append(current)
                    current = []
    if awaiting is not None:
        cap.replies.setdefault(awaiting, []).append(None)
        cap.unanswered += 1
    if current:
        cap.segments.append(current)
    return cap


def _names(found: dict[Address, int]) -> str:
    return ", ".join(f"{h}:{p}" for h, p in found) or "none"
