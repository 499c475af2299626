"""What the link needs from a board type (the Board contract), and the board types by name.

A board type tells the link four things; everything else (socket, ring, capture thread, credit
window, command channel, pcap tap) is the link's and the same for every board:

* **Datagrams.** :meth:`Board.classifier` binds a :class:`Classifier` to the ring's memory; the
  capture thread asks it, datagram by datagram, what a datagram is (:data:`DATA` to the ring,
  :data:`REPLY` / :data:`MONITOR` to the reply queue, or a defect, counted by kind in
  :class:`~agetdaq.readout.link.counters.ReceiverCounters`) and, for a data frame, its credit tag.
* **Commands.** :meth:`Board.validate` checks a command line before it is sent (a bad script is
  refused before any datagram leaves), :meth:`Board.parse_reply` decodes a reply,
  :meth:`Board.expects_reply` says which commands get none (data requests).
* **Credit.** :meth:`Board.credit_request` formats a data request granting ``amount`` frames or
  bytes with the request sequence number; :attr:`Board.pause_request` clears the board's allowance
  (it is answered). A data frame's tag is its 8-bit reply sequence number, plus :data:`TAG_FIRST`
  on the first frame after a request without sequence number: the credit loop counts gaps in it as
  lost frames and credits them back (:mod:`agetdaq.readout.link.credit`).
* **Sizes.** :attr:`Board.default_port`, :attr:`Board.max_datagram` (the ring's slot size).

**Fast path (Feminos only).** A board with :attr:`Board.batch_scan` True has data frames that
:func:`agetdaq.readout.link.mmsg.scan_frames` recognises (lead word = tag, SOF_D, size word, EOF)
and credit requests that :mod:`agetdaq.readout.link.credit_kernel` formats (``daq 0x.. F|B 0x..``):
the capture kernel then checks a clean batch and grants its credit without the GIL, and the
classifier only sees the batches that are not all clean data frames. Without it every datagram
goes through :meth:`Classifier.classify` (still read ``recvmmsg``-batched where available).

**Adding a board type** = one module with a :class:`Board` subclass and one entry in
:data:`BOARD_TYPES` (or :func:`register_board` at run time); the acquisition selects it by name
(``board_type`` in the DAQ settings). tests/test_board_type.py does it with a toy board.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from agetdaq.protocol.commands import Reply

# What a datagram is (Classifier.classify). Routes:
DATA = 0  # a data frame that passed its check: to the ring, credited
REPLY = 1  # a command reply: to the reply queue
MONITOR = 2  # a monitoring frame (answers a monitoring command): to the reply queue
REPLY_BAD_LEAD = 3  # a reply or monitoring frame with an odd header: queued and counted
# data frames that fail the frame check: credited (the board charged them), counted, skipped
SIZE_MISMATCH = 4  # the frame's own length field disagrees with the datagram length
NO_EOF = 5  # the frame's trailer is missing
# not usable: counted, skipped
RUNT = 6  # too short for a frame header
ODD_LENGTH = 7  # not a whole number of the board's words
BAD_SOF = 8  # no frame header this board type knows
# ReceiverCounters field counting each kind (oversize is the capture loop's own check)
COUNTER_OF = (
    "data_frames",
    "replies",
    "replies",
    "reply_bad_lead",
    "size_mismatch",
    "no_eof",
    "runt",
    "odd_length",
    "bad_sof",
)
TAG_SEQ_MASK = 0xFF  # a data frame's tag: reply sequence number ...
TAG_FIRST = 0x100  # ... and this flag on the first frame after a request without sequence


class Classifier(Protocol):
    """A board's datagram classifier bound to one ring (rows of ``slot_size`` bytes)."""

    def classify(self, row: int, n: int) -> int:
        """What the ``n``-byte datagram in ring row ``row`` is (``n`` <= slot size): one of
        :data:`DATA` ... :data:`BAD_SOF`."""
        ...

    def tag(self, row: int) -> int:
        """Credit tag of the data frame in ``row`` (also for :data:`SIZE_MISMATCH`,
        :data:`NO_EOF`)."""
        ...

    def tags(self, start: int, k: int) -> Sequence[int]:
        """Tags of the data frames in rows ``start .. start + k``."""
        ...


class Command(Protocol):
    """A validated command: ``text`` is the normalised line to send."""

    text: str


class Board(ABC):
    """One board type (see the module docstring). Instances hold no connection state."""

    name: str = ""
    default_port: int = 0
    max_datagram: int = 9216  # bytes; the ring's slot size (even)
    batch_scan: bool = False  # True: Feminos data frames and requests (the kernels' fast path)
    pause_request: str = ""  # clears the board's send allowance; answered

    @abstractmethod
    def classifier(self, buf: np.ndarray, check: bool) -> Classifier:
        """A classifier over ring ``buf`` ((rows, slot_size) uint8); ``check`` False = data
        frames are not checked (only recognised)."""

    @abstractmethod
    def validate(self, line: str) -> Command:
        """The command ``line`` checked against the board's command set; raises
        :class:`agetdaq.protocol.command_table.CommandError` when the board would refuse it."""

    def validate_step(self, step: Any) -> Command:
        """The validated command of a script's board step (a
        :class:`agetdaq.protocol.script.Step`)."""
        return self.validate(step.text)

    @abstractmethod
    def expects_reply(self, command: Command) -> bool:
        """False for commands the board does not answer (data requests)."""

    @abstractmethod
    def parse_reply(self, datagram: bytes) -> Reply:
        """A reply datagram decoded; raises :class:`agetdaq.protocol.commands.ProtocolError`."""

    @abstractmethod
    def credit_request(self, amount: int, unit: str, seq: int | None) -> bytes:
        """A data request granting ``amount`` (unit 'F' frames or 'B' bytes); ``seq`` None = the
        first request of a window (resets the board's sequence numbers)."""


BOARD_TYPES: dict[str, str | Callable[[], Board]] = {
    "feminos": "agetdaq.readout.link.feminos:FeminosBoard",
}
DEFAULT_BOARD = "feminos"


def register_board(name: str, factory: Callable[[], Board]) -> None:
    """Make a board type selectable by ``name`` (a module of another package, a test)."""
    BOARD_TYPES[name] = factory


def board_type(board: str | Board | None = None) -> Board:
    """The board type named ``board`` (default Feminos); a :class:`Board` is returned as is."""
    if isinstance(board, Board):
        return board
    name = DEFAULT_BOARD if board is None else board
    entry = BOARD_TYPES.get(name)
    if entry is None:
        known = ", ".join(sorted(BOARD_TYPES))
        raise ValueError(f"unknown board type {name!r} (known: {known})")
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
    return entry()
