"""Validation of one card command line against :mod:`agetdaq.protocol.command_grammar`.

Rules and error classes are described in :mod:`agetdaq.protocol.command_table`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from agetdaq.protocol.command_grammar import (
    AGET_FORMS,
    AGET_REGISTER_WORDS,
    COMMANDS,
    MAX_AFTER_INDEX,
    MAX_AGET_INDEX,
    N_ASICS,
    Arg,
    Form,
    Spec,
    num,
    sel,
    word,
)
from agetdaq.protocol.commands import ERR_ILLEGAL_PARAMETER, ERR_SYNTAX, ERR_UNKNOWN


class CommandError(ValueError):
    """A command line the card would refuse; ``code`` is the card error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Sel:
    """An index selection: ``*``, ``a:b`` or a single index (``multi`` unless a single index)."""

    lo: int
    hi: int
    multi: bool

    def indices(self) -> range:
        return range(self.lo, self.hi + 1)


@dataclass(frozen=True)
class ParsedCommand:
    """A validated card command. ``text`` is the normalised line to send."""

    name: str  # command words as in COMMANDS, e.g. "sca", "clr tstamp", "aget"
    action: str | None  # sub-command ("cnt", "gain", "centermean") or None
    args: dict[str, Any]
    read: bool  # True when the command only reads back
    text: str


_INT_RE = {
    "i": re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"),
    "d": re.compile(r"[+-]?[0-9]+"),
    "x": re.compile(r"(0[xX])?[0-9a-fA-F]+"),
}
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _int(token: str, kind: str, what: str) -> int:
    if not _INT_RE[kind].fullmatch(token):
        raise CommandError(ERR_SYNTAX, f"{what}: {token!r} is not a number")
    if kind == "x":
        return int(token, 16)
    if kind == "d":
        return int(token, 10)
    return int(token, 0) if not re.fullmatch(r"[+-]?0[0-7]+", token) else int(token, 8)


def _in_range(value: float, lo: float, hi: float, what: str) -> None:
    if not lo <= value <= hi:
        lo_s, hi_s = (f"{x:g}" for x in (lo, hi))
        raise CommandError(ERR_ILLEGAL_PARAMETER, f"{what}={value:g} out of range {lo_s}..{hi_s}")


def _parse_arg(arg: Arg, token: str, max_chan: int) -> Any:
    what = arg.name
    if arg.kind == "word":
        if token not in arg.choices:
            raise CommandError(
                ERR_SYNTAX, f"{what}: {token!r} is not one of {'|'.join(arg.choices)}"
            )
        return token
    if arg.kind == "f":
        if not _FLOAT_RE.fullmatch(token):
            raise CommandError(ERR_SYNTAX, f"{what}: {token!r} is not a number")
        value = float(token)
        _in_range(value, arg.lo, float(arg.hi), what)
        return value
    if arg.kind == "step" and token in ("++", "--"):
        return token
    if arg.kind in ("sel", "seld"):
        hi = max_chan if arg.hi is None else int(arg.hi)
        kind = "d" if arg.kind == "seld" else "i"
        if token == "*":
            return Sel(int(arg.lo), hi, True)
        if ":" in token:
            first, _, last = token.partition(":")
            a, b = _int(first, kind, what), _int(last, kind, what)
            a, b = min(a, b), max(a, b)
            _in_range(a, arg.lo, hi, what)
            _in_range(b, arg.lo, hi, what)
            return Sel(a, b, True)
        value = _int(token, kind, what)
        _in_range(value, arg.lo, hi, what)
        return Sel(value, value, False)
    value = _int(token, "i" if arg.kind == "step" else arg.kind, what)
    _in_range(value, arg.lo, float(arg.hi), what)
    return value


def _parse_form(form: Form, words: list[str], args: dict[str, Any], max_chan: int) -> bool:
    """Fill ``args`` from ``words``; return True for a read-back."""
    n_req, n_opt = len(form.required), len(form.optional)
    if len(words) < n_req:
        missing = ", ".join(a.name for a in form.required[len(words) :])
        raise CommandError(ERR_SYNTAX, f"missing argument(s): {missing}")
    if len(words) > n_req + n_opt:
        raise CommandError(
            ERR_SYNTAX, f"unexpected extra word(s): {' '.join(words[n_req + n_opt :])}"
        )
    given_opt = len(words) - n_req
    if form.all_or_none and 0 < given_opt < n_opt:
        raise CommandError(ERR_SYNTAX, "give all of " + ", ".join(a.name for a in form.optional))
    for arg, token in zip(form.required + form.optional, words):
        args[arg.name] = _parse_arg(arg, token, max_chan)
    read = form.read == "always" or (form.read == "if_absent" and given_opt == 0)
    multi = [k for k, v in args.items() if isinstance(v, Sel) and v.multi]
    if multi and (form.single or (read and form.single_read)):
        raise CommandError(ERR_ILLEGAL_PARAMETER, f"{multi[0]} must be a single index here")
    return read


def _aget(words: list[str], max_chan: int) -> tuple[str, dict[str, Any], bool]:
    if len(words) < 2:
        raise CommandError(ERR_SYNTAX, "usage: aget <*|first:last|id> <action> [arguments]")
    args: dict[str, Any] = {"ids": _parse_arg(sel("ids", N_ASICS - 1), words[0], max_chan)}
    action = words[1]
    if action not in AGET_FORMS:
        raise CommandError(ERR_UNKNOWN, f"unknown aget action {action!r}")
    rest = words[2:]
    if action in ("write", "wrchk") and rest:
        reg = _parse_arg(num("reg", 1, 12), rest[0], max_chan)
        n = AGET_REGISTER_WORDS[reg]
        values = tuple(num(f"v{k}", 0, 0xFFFF) for k in range(n - 1, -1, -1))
        return action, args, _parse_form(Form((num("reg", 1, 12), *values)), rest, args, max_chan)
    return action, args, _parse_form(AGET_FORMS[action], rest, args, max_chan)


_DAQ_RE = re.compile(r"0x([0-9a-fA-F]{6})(?: (\S+))?(?: 0x([0-9a-fA-F]{2}))?")


def _daq(words: list[str], max_chan: int) -> tuple[str | None, dict[str, Any], bool]:
    if not words:
        return None, {}, True
    m = _DAQ_RE.fullmatch(" ".join(words))
    if not m:
        raise CommandError(ERR_SYNTAX, "usage: daq 0xHHHHHH B|F [0xSS]")
    if m.group(2) is None:
        raise CommandError(ERR_ILLEGAL_PARAMETER, "missing unit in daq request")
    if m.group(2) not in ("B", "F"):
        raise CommandError(ERR_ILLEGAL_PARAMETER, f"illegal request unit {m.group(2)!r}")
    amount = int(m.group(1), 16)
    seq = None if m.group(3) is None else int(m.group(3), 16)
    return (
        None,
        {"amount": amount, "unit": m.group(2), "seq": seq, "pause": amount == 0xFFFFFF},
        False,
    )


def _tdata(words: list[str], max_chan: int) -> tuple[str | None, dict[str, Any], bool]:
    args: dict[str, Any] = {}
    if words and words[0] in ("A", "B", "C"):
        form = Form((word("pattern", "A", "B", "C"), num("period", 1, 4096)))
        return None, args, _parse_form(form, words, args, max_chan)
    form = Form((Arg("address", "d", 0, 4095),), (num("value", 0, 0xFFF),), read="if_absent")
    return None, args, _parse_form(form, words, args, max_chan)


def _opaque(words: list[str], max_chan: int) -> tuple[str | None, dict[str, Any], bool]:
    return (words[0] if words else None), {"words": tuple(words)}, False


_CUSTOM = {"aget": _aget, "daq": _daq, "tdata": _tdata, "opaque": _opaque}


def find_spec(line: str) -> Spec | None:
    """The command the card would dispatch ``line`` to (prefix match, first wins)."""
    for spec in COMMANDS:
        if line.startswith(spec.prefix):
            return spec
    return None


def validate(line: str, *, after_mode: bool = False) -> ParsedCommand:
    """Check one card command line; raise :class:`CommandError` with the card's error class.

    ``after_mode`` widens ``hped`` channel selections to the AFTER range (0..78 instead of 0..71).
    """
    words = line.split()
    if not words:
        raise CommandError(ERR_SYNTAX, "empty command")
    if not line.isascii():
        raise CommandError(ERR_SYNTAX, f"command is not ASCII: {line!r}")
    text = " ".join(words)
    spec = find_spec(text)
    if spec is None:
        raise CommandError(ERR_UNKNOWN, f"unknown command: {text}")
    name_words = spec.name.split()
    if words[: len(name_words)] != name_words:
        raise CommandError(
            ERR_SYNTAX,
            f"{words[0]!r} is read by the card as {spec.name!r}; write the command word in full",
        )
    rest = words[len(name_words) :]
    max_chan = MAX_AFTER_INDEX if after_mode else MAX_AGET_INDEX
    try:
        if spec.custom:
            action, args, read = _CUSTOM[spec.custom](rest, max_chan)
        elif None in spec.forms:
            action, args = None, {}
            read = _parse_form(spec.forms[None], rest, args, max_chan)
        else:
            subs = "|".join(a for a in spec.forms if a)
            if not rest:
                raise CommandError(ERR_SYNTAX, f"missing sub-command: {spec.name} {subs}")
            action, args = rest[0], {}
            if action not in spec.forms:
                raise CommandError(
                    ERR_UNKNOWN, f"unknown sub-command {action!r}: {spec.name} {subs}"
                )
            read = _parse_form(spec.forms[action], rest[1:], args, max_chan)
    except CommandError as exc:
        raise CommandError(exc.code, f"{text}: {exc.message}") from None
    return ParsedCommand(spec.name, action, args, read, text)
