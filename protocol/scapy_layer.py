"""scapy layers for board traffic on UDP port 1122 (PROTOCOL.md §1, §3).

* :class:`FeminosDatagram`: a datagram from the card = lead word (sequence, first flag) + one frame
  (D/M/C from the SOF word, version, source id, size or error code, C-frame text, raw body).
* :class:`FeminosCommand`: a command from the PC = plain ASCII text.

Importing this module binds both to UDP port 1122; :func:`bind_port` moves them. Dissection never
raises: problems go to the ``malformed`` field. For data frames the ``events``, ``channels`` and
``ends`` summaries (event headers, channel headers with sample counts, END_OF_EVENT sizes) are only
worked out when first read, so ``rdpcap`` stays cheap.
"""

from __future__ import annotations

import struct
from typing import Any

from scapy.fields import (
    ByteField,
    ConditionalField,
    FlagsField,
    LESignedShortField,
    StrField,
    XLEShortField,
)
from scapy.layers.inet import UDP
from scapy.packet import Packet, bind_bottom_up, bind_top_down, split_bottom_up, split_top_down

from agetdaq.protocol import words as w
from agetdaq.protocol.scapy_fields import (
    FrameSizeField,
    MsgLenField,
    PaddedTextField,
    ShownField,
    ShownPacketList,
)
from agetdaq.protocol.scapy_summary import (
    FeminosChannelHeader,
    FeminosEventEnd,
    FeminosEventHeader,
    summarise_data_body,
)

DEFAULT_PORT = 1122
_KINDS = {w.START_OF_DFRAME: "D", w.START_OF_MFRAME: "M", w.START_OF_CFRAME: "C"}
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def frame_kind(sof: int | None) -> str:
    """'D', 'M' or 'C' for a start-of-frame word, '?' for anything else."""
    if sof is None:
        return "?"
    return _KINDS.get(sof & 0xFE00, "?")


_SUMMARY_FIELDS = ("events", "channels", "ends", "continued_samples", "other_words")
_DERIVED_FIELDS = ("kind", "version", "source_id")
_LAZY_FIELDS = (*_SUMMARY_FIELDS, "content")


def _is_dm(pkt: Packet) -> bool:
    return pkt.kind in ("D", "M")


def _is_c(pkt: Packet) -> bool:
    return pkt.kind == "C"


def _is_d(pkt: Packet) -> bool:
    return pkt.kind == "D"


class FeminosDatagram(Packet):
    """One datagram from the card: lead word + one D, M or C frame."""

    name = "Feminos datagram"
    fields_desc = [  # noqa: RUF012
        ByteField("seq", 0),  # lead bits 7..0
        FlagsField("lead_flags", 0, 8, ["first", "b9", "b10", "b11", "b12", "b13", "b14", "b15"]),
        XLEShortField("sof", w.START_OF_DFRAME),
        ShownField("kind"),
        ShownField("version"),
        ShownField("source_id"),
        ConditionalField(FrameSizeField("size", None), _is_dm),
        ConditionalField(LESignedShortField("error", 0), _is_c),
        ConditionalField(MsgLenField("msg_word", None), _is_c),
        ConditionalField(PaddedTextField("text", ""), _is_c),
        ConditionalField(StrField("body", b""), lambda p: p.kind != "C"),
        ConditionalField(XLEShortField("eof", w.END_OF_FRAME), lambda p: p.kind != "?"),
        ConditionalField(ShownField("content"), lambda p: p.kind == "M"),
        ConditionalField(ShownPacketList("events", [], FeminosEventHeader), _is_d),
        ConditionalField(ShownPacketList("channels", [], FeminosChannelHeader), _is_d),
        ConditionalField(ShownPacketList("ends", [], FeminosEventEnd), _is_d),
        ConditionalField(ShownField("continued_samples"), _is_d),
        ConditionalField(ShownField("other_words"), _is_d),
        ShownField("malformed", ""),
    ]

    @classmethod
    def dispatch_hook(cls, _pkt: bytes | None = None, *args: Any, **kargs: Any) -> type[Packet]:
        under = kargs.get("_underlayer")
        if _pkt is None or under is None:
            return cls
        if len(_pkt) >= 4 and frame_kind(_pkt[2] | _pkt[3] << 8) != "?":
            return FeminosDatagram
        dport, sport = getattr(under, "dport", None), getattr(under, "sport", None)
        if dport == _bound_port and sport != _bound_port:
            return FeminosCommand
        if sport == _bound_port and dport != _bound_port:
            return FeminosDatagram
        return FeminosCommand if set(_pkt) <= _TEXT_BYTES else FeminosDatagram

    # ---- derived and lazy values ------------------------------------------------------------

    def getfieldval(self, attr: str) -> Any:
        if attr in _DERIVED_FIELDS or attr in _LAZY_FIELDS:
            return self._special(attr)
        return super().getfieldval(attr)

    def getfield_and_val(self, attr: str) -> tuple[Any, Any]:
        if attr in _DERIVED_FIELDS or attr in _LAZY_FIELDS:
            return self.fieldtype[attr], self._special(attr)
        return super().getfield_and_val(attr)

    def _special(self, attr: str) -> Any:
        """Values derived from the SOF word, and summaries worked out on first access."""
        sof = self.fields.get("sof", self.default_fields.get("sof"))
        kind = frame_kind(sof)
        if attr == "kind":
            return kind
        if attr in ("version", "source_id"):
            if sof is None:
                return None
            version, source_id = w.start_of_frame_fields(sof)
            return version if attr == "version" else source_id
        if attr not in self.fields:
            if kind == "D" and attr in _SUMMARY_FIELDS:
                self._summarise()
            elif kind == "M" and attr == "content":
                body = super().getfieldval("body") or b""
                first = struct.unpack_from("<H", body)[0] if len(body) >= 2 else None
                self.fields["content"] = "empty" if first is None else w.classify(first).name
        return self.fields.get(attr, self.default_fields.get(attr))

    def setfieldval(self, attr: str, val: Any) -> None:
        if attr in ("sof", "body"):
            for name in _LAZY_FIELDS:
                self.fields.pop(name, None)
        super().setfieldval(attr, val)

    def _summarise(self) -> None:
        summary = summarise_data_body(super().getfieldval("body") or b"")
        self.fields.update(zip(_SUMMARY_FIELDS, summary))

    # ---- dissection ---------------------------------------------------------------------------

    def do_dissect(self, s: bytes) -> bytes:
        self.raw_packet_cache_fields = {}
        try:
            used, problems = self._dissect_frame(s)
        except Exception as exc:  # a dissector must never raise on bad input
            used, problems = len(s), [f"dissector error: {exc!r}"]
            self.fields["body"] = s[4:]
        trailing = s[used:]
        if trailing.strip(b"\x00"):
            problems.append(f"{len(trailing)} bytes after the frame")
        self.fields["malformed"] = "; ".join(problems)
        self.raw_packet_cache = s[:used]
        self.explicit = 1
        return trailing

    def _dissect_frame(self, s: bytes) -> tuple[int, list[str]]:
        n = len(s)
        problems: list[str] = []
        self.fields["seq"] = s[0] if n else 0
        self.fields["lead_flags"] = s[1] if n > 1 else 0
        if n % 2:
            problems.append(f"odd datagram length {n}")
        if n < 4:
            self.fields["sof"] = None
            self.fields["body"] = s[2:]
            problems.append(f"datagram of {n} bytes holds no frame")
            return n, problems
        sof = s[2] | s[3] << 8
        self.fields["sof"] = sof
        kind = frame_kind(sof)
        if kind == "?":
            self.fields["body"] = s[4:]
            problems.append(f"word 0x{sof:04x} is not a start of frame")
            return n, problems
        if n < 6:
            self.fields["body"] = s[4:]
            problems.append("frame ends after its SOF word")
            return n, problems
        if kind == "C":
            return self._dissect_cframe(s, problems)
        size = s[4] | s[5] << 8
        self.fields["size"] = size
        end = size + 2
        if size < 6 or size % 2:
            problems.append(f"impossible frame size {size}")
            end = n
        elif end > n:
            problems.append(f"frame truncated: size word says {size} bytes, {n - 2} present")
            end = n
        elif end < n:
            problems.append(f"size word {size} != datagram length - 2 ({n - 2})")
        last = s[end - 2] | s[end - 1] << 8 if end >= 8 else None
        if last == w.END_OF_FRAME:
            self.fields["body"] = s[6 : end - 2]
            self.fields["eof"] = last
        else:
            self.fields["body"] = s[6:end]
            self.fields["eof"] = None
            problems.append("no END_OF_FRAME")
        return end, problems

    def _dissect_cframe(self, s: bytes, problems: list[str]) -> tuple[int, list[str]]:
        n = len(s)
        self.fields["error"] = struct.unpack_from("<h", s, 4)[0]
        if n < 8:
            problems.append("C frame ends after its error word")
            return n, problems
        msg = s[6] | s[7] << 8
        self.fields["msg_word"] = msg
        if msg & 0xFF00 != w.ASCII_MSG_LEN:
            problems.append(f"word 0x{msg:04x} is not ASCII_MSG_LEN")
            self.fields["text"] = s[8:].decode("latin-1")
            return n, problems
        length = msg & 0xFF
        padded = (length + 2) & ~1
        self.fields["text"] = s[8 : 8 + length].decode("latin-1")
        end = 8 + padded + 2
        if end > n:
            problems.append(
                f"C frame truncated: text of {length} chars needs {end} bytes, {n} present"
            )
            self.fields["eof"] = None
            return n, problems
        eof = s[end - 2] | s[end - 1] << 8
        self.fields["eof"] = eof
        if eof != w.END_OF_FRAME:
            problems.append(f"word 0x{eof:04x} after the text is not END_OF_FRAME")
        return end, problems

    def mysummary(self) -> str:
        kind = self.kind
        text = f"Feminos {kind} seq={self.seq} src={self.source_id}"
        if kind == "D":
            text += f" {len(self.events)} SOE {len(self.channels)} ch"
        elif kind == "C":
            text += f" err={self.error} {self.text.strip()!r}"
        if self.malformed:
            text += " MALFORMED"
        return text


class FeminosCommand(Packet):
    """One command from the PC: ASCII text, one command per datagram."""

    name = "Feminos command"
    fields_desc = [  # noqa: RUF012
        StrField("text", b""),
        ShownField("verb"),
        ShownField("malformed", ""),
    ]

    def getfieldval(self, attr: str) -> Any:
        if attr in ("verb", "malformed"):
            return self._special(attr)
        return super().getfieldval(attr)

    def getfield_and_val(self, attr: str) -> tuple[Any, Any]:
        if attr in ("verb", "malformed"):
            return self.fieldtype[attr], self._special(attr)
        return super().getfield_and_val(attr)

    def _special(self, attr: str) -> str:
        text = self.fields.get("text", b"") or b""
        if attr == "verb":
            first = text.split(maxsplit=1)
            return first[0].decode("latin-1") if first else ""
        bad = set(text) - _TEXT_BYTES
        return f"{len(bad)} distinct non-text byte values" if bad else ""

    def mysummary(self) -> str:
        return f"Feminos command {self.text.strip()!r}"


_bound_port: int | None = None


def bind_port(port: int = DEFAULT_PORT) -> None:
    """Dissect UDP traffic from or to ``port`` as Feminos datagrams / commands (moves the bind)."""
    global _bound_port
    if not 0 < port < 0x10000:
        raise ValueError(f"UDP port must be 1..65535, not {port!r}")
    if _bound_port is not None:
        split_bottom_up(UDP, FeminosDatagram, sport=_bound_port)
        split_bottom_up(UDP, FeminosDatagram, dport=_bound_port)
        split_top_down(UDP, FeminosDatagram)
        split_top_down(UDP, FeminosCommand)
    bind_bottom_up(UDP, FeminosDatagram, sport=port)
    bind_bottom_up(UDP, FeminosDatagram, dport=port)
    bind_top_down(UDP, FeminosDatagram, sport=port)
    bind_top_down(UDP, FeminosCommand, dport=port)
    _bound_port = port


def bound_port() -> int | None:
    """The UDP port the layers are bound to."""
    return _bound_port


bind_port(DEFAULT_PORT)
