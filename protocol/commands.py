"""Command lines and reply datagrams of the control protocol (PROTOCOL.md §3).

A command is one ASCII line per UDP datagram. Every command except a data request gets one reply
datagram: a CFRAME (text) or an MFRAME (binary monitoring payload, see
:mod:`agetdaq.protocol.monitoring`). Reply datagram = 2-byte lead word (0) + frame; all words
little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agetdaq.protocol import words as w

ERR_OK = 0
ERR_UNKNOWN = -1  # unknown command / generic failure
ERR_ILLEGAL_PARAMETER = -2
ERR_SYNTAX = -10

DAQ_PAUSE = 0xFFFFFF  # data request amount that clears the card's send allowance
MAX_DAQ_AMOUNT = 0xFFFFFE
MAX_ASCII_LEN = 0xFF  # ASCII_MSG_LEN carries an 8-bit length


class ProtocolError(ValueError):
    """A reply datagram that does not follow the frame layout."""


@dataclass(frozen=True)
class Reply:
    """One decoded reply datagram.

    ``kind`` is 'C' (text reply) or 'M' (monitoring frame). For 'C', ``error`` is the s16 error word
    and ``text`` the message; for 'M', ``payload`` holds the words between the size word and
    END_OF_FRAME and ``error`` is 0.
    """

    kind: str
    error: int
    source_id: int
    text: str = ""
    payload: tuple[int, ...] = ()
    version: int = 0
    lead: int = 0

    @property
    def ok(self) -> bool:
        return self.error >= 0


def format_daq_request(amount: int, unit: str = "F", seq: int | None = None) -> str:
    """Data request in the card's strict layout, e.g. ``daq 0x000010 F 0x05``."""
    if not 0 <= amount <= DAQ_PAUSE:
        raise ValueError(f"daq amount must be 0..0xFFFFFF, not {amount!r}")
    if unit not in ("B", "F"):
        raise ValueError(f"daq unit must be 'B' or 'F', not {unit!r}")
    text = f"daq 0x{amount:06x} {unit}"
    if seq is not None:
        if not 0 <= seq <= 0xFF:
            raise ValueError(f"daq sequence number must be 0..255, not {seq!r}")
        text += f" 0x{seq:02x}"
    return text


def format_command(name: str, *args: object) -> str:
    """A command line from its words; ints are written in hex (``aget * gain 0x1``)."""
    parts = [name]
    for arg in args:
        if isinstance(arg, bool):
            parts.append(str(int(arg)))
        elif isinstance(arg, int):
            parts.append(f"0x{arg:x}" if arg >= 0 else str(arg))
        else:
            text = str(arg)
            if not text or any(c.isspace() for c in text):
                raise ValueError(f"command argument must be one non-empty word, not {text!r}")
            parts.append(text)
    return " ".join(parts)


def reply_text(error: int, fem: int, msg: str) -> str:
    """Reply text in the card's style: ``"<err> Fem(<NN>) <msg>\\n"``."""
    return f"{error} Fem({fem:02d}) {msg}\n"


def _pack(words: list[int]) -> bytes:
    return struct.pack(f"<{len(words)}H", *(x & 0xFFFF for x in words))


def encode_cframe(text: str, error: int = 0, source_id: int = 0, version: int = 0) -> bytes:
    """CFRAME datagram: lead 0 | SOF_C | s16 error | ASCII_MSG_LEN(L) | text+NUL(+NUL) | EOF."""
    if not -0x8000 <= error <= 0x7FFF:
        raise ValueError(f"error code must fit in s16, not {error!r}")
    raw = text.encode("ascii")
    if len(raw) > MAX_ASCII_LEN:
        raise ValueError(f"reply text is {len(raw)} bytes, the frame carries at most 255")
    if b"\x00" in raw:
        raise ValueError("reply text must not contain NUL")
    body = raw + b"\x00"
    if len(body) % 2:
        body += b"\x00"
    head = [
        0,
        w.start_of_frame(w.START_OF_CFRAME, source_id, version),
        error,
        w.ascii_msg_len(len(raw)),
    ]
    return _pack(head) + body + _pack([w.END_OF_FRAME])


def encode_mframe(
    payload: list[int] | tuple[int, ...], source_id: int = 0, version: int = 0
) -> bytes:
    """MFRAME datagram: lead 0 | SOF_M | size | payload | EOF (size: bytes from SOF to EOF)."""
    size = 2 * (len(payload) + 3)
    if size > 0xFFFF:
        raise ValueError(f"MFRAME of {size} bytes does not fit the 16-bit size word")
    for word in payload:
        if not 0 <= word <= 0xFFFF:
            raise ValueError(f"payload word {word!r} is not a 16-bit value")
    sof = w.start_of_frame(w.START_OF_MFRAME, source_id, version)
    return _pack([0, sof, size, *payload, w.END_OF_FRAME])


def datagram_words(datagram: bytes) -> tuple[int, ...]:
    """The 16-bit little-endian words of a datagram (even length required)."""
    if len(datagram) % 2:
        raise ProtocolError(f"datagram length {len(datagram)} is odd")
    return struct.unpack(f"<{len(datagram) // 2}H", datagram)


def parse_reply(datagram: bytes) -> Reply:
    """Decode a CFRAME or MFRAME reply datagram (lead word included)."""
    words = datagram_words(datagram)
    if len(words) < 3:
        raise ProtocolError(f"reply of {len(datagram)} bytes is too short for a frame")
    lead, sof = words[0], words[1]
    kind = w.classify(sof)
    version, source_id = w.start_of_frame_fields(sof)
    if kind == w.Kind.START_OF_CFRAME:
        return _parse_cframe(datagram, words, lead, version, source_id)
    if kind == w.Kind.START_OF_MFRAME:
        size = words[2]
        if size != len(datagram) - 2:
            raise ProtocolError(
                f"MFRAME size word {size} != {len(datagram) - 2} bytes after the lead"
            )
        if size < 6 or words[-1] != w.END_OF_FRAME:
            raise ProtocolError("MFRAME does not end with END_OF_FRAME")
        return Reply("M", 0, source_id, payload=tuple(words[3:-1]), version=version, lead=lead)
    if kind == w.Kind.START_OF_DFRAME:
        raise ProtocolError("datagram is a data frame, not a command reply")
    raise ProtocolError(f"datagram does not start with a frame header (word {sof:#06x})")


def _parse_cframe(
    datagram: bytes, words: tuple[int, ...], lead: int, version: int, source_id: int
) -> Reply:
    if len(words) < 6:
        raise ProtocolError(f"CFRAME of {len(datagram)} bytes is too short")
    error = words[2] - 0x10000 if words[2] & 0x8000 else words[2]
    if w.classify(words[3]) != w.Kind.ASCII_MSG_LEN:
        raise ProtocolError(f"CFRAME word 3 is {words[3]:#06x}, expected ASCII_MSG_LEN")
    length = words[3] & 0xFF
    text_start = 8
    padded = length + 1 + ((length + 1) % 2)
    eof_at = text_start + padded
    if len(datagram) < eof_at + 2:
        raise ProtocolError(f"CFRAME text of {length} chars runs past the datagram end")
    raw = datagram[text_start : text_start + length]
    if any(datagram[text_start + length : eof_at]):
        raise ProtocolError("CFRAME text is not followed by NUL padding")
    if datagram[eof_at : eof_at + 2] != b"\x0f\x00":
        raise ProtocolError("CFRAME does not end with END_OF_FRAME after its text")
    if len(datagram) != eof_at + 2:
        raise ProtocolError(f"{len(datagram) - eof_at - 2} bytes after the CFRAME END_OF_FRAME")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"CFRAME text is not ASCII: {raw!r}") from exc
    return Reply("C", error, source_id, text=text, version=version, lead=lead)
