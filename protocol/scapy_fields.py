"""scapy field types of the Feminos layers (:mod:`agetdaq.protocol.scapy_layer`): shown-only summary
fields and the D/M size, C-frame message-length and padded-text fields that compute themselves.
"""

from __future__ import annotations

from typing import Any

from scapy.fields import Field, LEShortField, PacketListField, StrField, XLEShortField
from scapy.packet import Packet

from agetdaq.protocol import words as w


class ShownField(Field):
    """A value that show() prints but that is neither dissected nor built (a summary)."""

    def __init__(self, name: str, default: Any = None) -> None:
        super().__init__(name, default)

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        return s, None


class ShownPacketList(PacketListField):
    """A list of summary sub-packets, shown but never built."""

    def addfield(self, pkt: Packet, s: bytes, val: Any) -> bytes:
        return s

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, Any]:
        return s, []


class FrameSizeField(LEShortField):
    """Size word of D/M frames: bytes from SOF to EOF inclusive; None = computed from the body."""

    def i2m(self, pkt: Packet | None, x: int | None) -> int:
        if x is None and pkt is not None:
            return len(pkt.body or b"") + 6
        return 0 if x is None else x


class MsgLenField(XLEShortField):
    """ASCII_MSG_LEN word of C frames; None = computed from the text."""

    def i2m(self, pkt: Packet | None, x: int | None) -> int:
        if x is None and pkt is not None:
            return w.ASCII_MSG_LEN | (len(_latin1(pkt.text)) & 0xFF)
        return 0 if x is None else x


class PaddedTextField(StrField):
    """C-frame text: L characters + NUL, plus a pad NUL when L+1 is odd (held as str)."""

    def i2m(self, pkt: Packet | None, x: Any) -> bytes:
        raw = _latin1(x) + b"\x00"
        return raw + b"\x00" if len(raw) % 2 else raw

    def i2repr(self, pkt: Packet | None, x: Any) -> str:
        return repr(x)


def _latin1(text: Any) -> bytes:
    if text is None:
        return b""
    return text if isinstance(text, bytes) else str(text).encode("latin-1", "replace")
