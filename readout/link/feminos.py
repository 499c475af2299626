"""The Feminos family (Feminos / BEC, firmware V2.7): the one real board type (PROTOCOL.md §1, §3).

Datagrams are 16-bit little-endian words: a lead word (a data frame's 8-bit reply sequence number
plus the first-reply flag 0x0100, 0 on replies), then a frame told apart by its start-of-frame word
(not by the lead word, which is 0 once every 256 data frames): DFRAME -> ring, CFRAME (text reply)
and MFRAME (monitoring reply) -> reply queue. A data frame is checked by its size word (+ 2 = the
datagram length) and its END_OF_FRAME word. Commands are the card's ASCII lines
(:mod:`agetdaq.protocol.command_table`); credit is ``daq 0x<amount> F|B [0x<seq>]``, paused by
``daq 0xFFFFFF F``. The capture kernel knows this layout (``batch_scan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agetdaq.protocol.command_table import ParsedCommand, validate
from agetdaq.protocol.commands import DAQ_PAUSE, Reply, format_daq_request, parse_reply
from agetdaq.readout.link import board as b

DEFAULT_PORT = 1122
MAX_DATAGRAM = 9216  # 8192-byte datagrams of feminos-daq, and jumbo frames (MTU 9000)
PAUSE_REQUEST = format_daq_request(DAQ_PAUSE, "F")
SOF_MASK = 0xFE00
SOF_D = 0x0800
SOF_M = 0x0600
SOF_C = 0x0400
EOF = 0x000F


class FeminosFrames:
    """:class:`~agetdaq.readout.link.board.Classifier` of Feminos datagrams in one ring."""

    def __init__(self, buf: np.ndarray, check: bool) -> None:
        self._words = memoryview(buf.reshape(-1)).cast("H")
        self._slot_words = buf.shape[1] // 2
        self._check = check

    def classify(self, row: int, n: int) -> int:
        if n < 4:
            return b.RUNT
        if n & 1:
            return b.ODD_LENGTH
        words = self._words
        base = row * self._slot_words
        sof = words[base + 1] & SOF_MASK
        if sof == SOF_D:
            if self._check:
                if n < 8 or words[base + 2] + 2 != n:
                    return b.SIZE_MISMATCH
                if words[base + (n >> 1) - 1] != EOF:
                    return b.NO_EOF
            return b.DATA
        if sof in (SOF_C, SOF_M):
            if words[base]:
                return b.REPLY_BAD_LEAD
            return b.REPLY if sof == SOF_C else b.MONITOR
        return b.BAD_SOF

    def tag(self, row: int) -> int:
        return self._words[row * self._slot_words]

    def tags(self, start: int, k: int) -> Sequence[int]:
        sw = self._slot_words
        return self._words[start * sw : (start + k) * sw : sw]


class FeminosBoard(b.Board):
    """Feminos / BEC: the card's command table, CFRAME / MFRAME replies, ``daq`` credit."""

    name = "feminos"
    default_port = DEFAULT_PORT
    max_datagram = MAX_DATAGRAM
    batch_scan = True
    pause_request = PAUSE_REQUEST

    def classifier(self, buf: np.ndarray, check: bool) -> FeminosFrames:
        return FeminosFrames(buf, check)

    def validate(self, line: str) -> ParsedCommand:
        return validate(line)

    def validate_step(self, step: Any) -> ParsedCommand:
        # protocol.script checked the step with this very command table
        return step.command if step.command is not None else validate(step.text)

    def expects_reply(self, command: ParsedCommand) -> bool:  # type: ignore[override]
        """Every command gets one reply except a data request that is not a pause (§3.2, §3.4)."""
        a = command.args
        return not (command.name == "daq" and "amount" in a and not a["pause"])

    def parse_reply(self, datagram: bytes) -> Reply:
        return parse_reply(datagram)

    def credit_request(self, amount: int, unit: str, seq: int | None) -> bytes:
        return format_daq_request(amount, unit, seq).encode("ascii")
