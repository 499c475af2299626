"""The grammar of the card commands (firmware V2.7, PROTOCOL.md §3.3-3.4) and one validator.

The card dispatches a line on *prefixes*, first match wins, in the order of :data:`COMMANDS`
(e.g. ``forceon_all`` before ``forceon``, ``tcm_bert`` before ``tcm``, ``fec ID`` before ``fec``).
:func:`validate` follows the same order and then checks the words strictly, so that a bad script is
rejected before anything reaches a board and the emulator can answer with an error code:

* ``ERR_UNKNOWN`` (-1): no command or sub-command of that name;
* ``ERR_SYNTAX`` (-10): missing, extra or malformed words;
* ``ERR_ILLEGAL_PARAMETER`` (-2): well-formed but out-of-range values, wildcard read-backs.

Numbers follow C ``%i`` (decimal, ``0x`` hex, leading-0 octal) unless the card reads ``%d``
(``hped`` selections, ``tdata`` address). Selections are ``*``, ``a:b`` (either order) or one index.
A missing value means read-back where the card reads back. The validator is stricter than the card:
the card silently masks out-of-range values and ignores extra words; here they are errors, and the
command word must be written in full (the card would take ``pedestal`` as ``ped``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from protocol.commands import ERR_ILLEGAL_PARAMETER, ERR_SYNTAX, ERR_UNKNOWN

N_ASICS = 4
MAX_AGET_INDEX = 71  # last DAQ index of an AGET (rst_len 1)
MAX_AFTER_INDEX = 78


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


@dataclass(frozen=True)
class Arg:
    """One argument: kind 'i' (%i), 'd' (%d), 'x' (%x), 'f' (float), 'sel', 'seld' (decimal
    selection), 'word' (one of ``choices``), 'step' (%i or ``++``/``--``). ``hi=None`` on a channel
    selection means the mode's last DAQ index."""

    name: str
    kind: str
    lo: float = 0
    hi: float | None = 0
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Form:
    """Arguments after the command (and sub-command) words. ``read``: 'never', 'always' or
    'if_absent' (no optional argument given); ``single_read``: selections must be single to read."""

    required: tuple[Arg, ...] = ()
    optional: tuple[Arg, ...] = ()
    all_or_none: bool = False
    read: str = "never"
    single_read: bool = False
    single: bool = False  # selections must be single in every case


@dataclass(frozen=True)
class Spec:
    prefix: str  # what the card compares
    name: str  # the command words
    forms: dict[str | None, Form] = field(default_factory=dict)  # key None: no sub-command
    custom: str = ""  # name of a special parser in _CUSTOM


def num(name: str, lo: int, hi: int) -> Arg:
    return Arg(name, "i", lo, hi)


def sel(name: str, hi: int | None, lo: int = 0, decimal: bool = False) -> Arg:
    return Arg(name, "seld" if decimal else "sel", lo, hi)


def word(name: str, *choices: str) -> Arg:
    return Arg(name, "word", choices=choices)


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


def _flag(name: str, prefix: str | None = None, hi: int = 1) -> Spec:
    return Spec(
        prefix or name, name, {None: Form(optional=(num("value", 0, hi),), read="if_absent")}
    )


def _value(name: str, lo: int, hi: int) -> Form:
    return Form(optional=(num(name, lo, hi),), read="if_absent")


_NONE = Form()
_PEDTHR = {
    "ped": num("value", -4096, 4095),
    "thr": num("value", 0, 4095),
    "forceon": num("value", 0, 1),
    "forceoff": num("value", 0, 1),
}
_ASIC = sel("asic", N_ASICS - 1)
_CHAN = sel("channel", MAX_AFTER_INDEX)


def _pedthr(name: str) -> Spec:
    form = Form((_ASIC, _CHAN), (_PEDTHR[name],), read="if_absent", single_read=True)
    return Spec(name, name, {None: form})


def _per_asic(name: str, hi: int) -> Spec:
    return Spec(
        name,
        name,
        {None: Form((_ASIC,), (num("value", 0, hi),), read="if_absent", single_read=True)},
    )


def _hped() -> Spec:
    where = (sel("asic", N_ASICS - 1, decimal=True), sel("channel", None, decimal=True))
    target = Arg("target", "d", 0, 4095)
    factor = Arg("factor", "f", 0.0, 1000.0)
    forms = {"clr": Form(where), "getsummary": Form(where, read="always")}
    forms.update({a: Form(where, single=True, read="always") for a in ("getbins", "getmath")})
    forms.update({a: Form(where, (target,)) for a in ("offset", "centermean")})
    forms["setthr"] = Form(where, (target, factor))
    return Spec("hped", "hped", forms)


_READ = Form(read="always")
_OPT_CLR = Form(optional=(word("clear", "clr"),), read="if_absent")

# fmt: off
COMMANDS: tuple[Spec, ...] = (
    Spec("daq", "daq", custom="daq"),
    Spec("version", "version", {None: _READ}),
    _flag("forceon_all"),
    _pedthr("ped"), _pedthr("thr"), _pedthr("forceon"), _pedthr("forceoff"),
    Spec("reg", "reg", {None: Form((num("reg", 0, 9),), (num("value", 0, 0xFFFFFFFF),),
                                   read="if_absent")}),
    Spec("tdata", "tdata", custom="tdata"),
    Spec("sca", "sca", {"stop": _NONE, "start": _NONE, "cnt": _value("value", 1, 0x3FF),
                        "wckdiv": _value("value", 1, 63), "enable": _value("value", 0, 1),
                        "autostart": _value("value", 0, 1)}),
    Spec("help", "help", {None: _READ}),
    Spec("mode", "mode", {None: Form(optional=(word("mode", "aget", "after"),), read="if_absent")}),
    _flag("emit_hit_cnt"), _flag("rst_len"), _flag("keep_rst"), _flag("skip_rst", hi=3),
    _flag("zero_suppress"), _flag("subtract_ped"),
    Spec("trig_rate", "trig_rate", {None: Form(optional=(num("range", 0, 3), num("rate", 0, 127)),
                                               all_or_none=True, read="if_absent")}),
    _flag("trig_enable", prefix="trig_enab", hi=0xF),
    _flag("trig_delay", hi=0xFFFF), _flag("event_limit", hi=7), _flag("gen_use_limit"),
    _flag("modify_hit_reg"), _flag("test_enable"), _flag("test_mode"), _flag("test_zbt"),
    Spec("hbusy", "hbusy", {"clr": _NONE, "get": _READ}),
    Spec("zs_pr", "zs_pre_post", {None: Form(optional=(num("pre", 0, 15), num("post", 0, 16)),
                                             all_or_none=True, read="if_absent")}),
    Spec("after", "after", custom="opaque"),
    Spec("aget", "aget", custom="aget"),
    Spec("rbf", "rbf", {"config": _READ, "suspend": _NONE, "resume": _NONE, "reset": _NONE,
                        "getpnd": _NONE, "timed": _value("value", 0, 1),
                        "timeval": _value("value", 0, 3)}),
    _flag("keep_fco"), _flag("fec_enable"), _flag("power_inv"),
    _flag("pul_delay", hi=0xFFF), _flag("pul_enable"),
    Spec("pul_load", "pul_load", {None: _NONE}),
    Spec("pul_amp", "pul_amp", {None: Form((num("value", 0, 0xFFFF),))}),
    _flag("serve_target", hi=3),
    _hped(),
    _flag("asic_mask", hi=0xF),
    Spec("clr tstamp", "clr tstamp", {None: _NONE}),
    Spec("clr evcnt", "clr evcnt", {None: _NONE}),
    Spec("tstamp_isset", "tstamp_isset", {None: _OPT_CLR}),
    Spec("tstamp_init", "tstamp_init", {None: Form(tuple(num(n, 0, 0xFFFF)
                                                         for n in ("msb", "mid", "lsb")))}),
    Spec("shisto", "shisto", custom="opaque"),
    Spec("list", "list", {"ped": Form((_ASIC,), read="always"),
                          "thr": Form((_ASIC,), read="always")}),
    _flag("tcm_bert"),
    Spec("tcm", "tcm", {"ignore": _value("value", 0, 1), "clr": _NONE, "rx": _READ,
                        "err": _READ, "tx": _READ}),
    Spec("dcbal_enc", "dcbal_enc", {None: Form(optional=(Arg("value", "x", 0, 1),),
                                               read="if_absent")}),
    Spec("dcbal_dec", "dcbal_dec", {None: Form(optional=(Arg("value", "x", 0, 1),),
                                               read="if_absent")}),
    Spec("cmd", "cmd", {"clr": _NONE, "stat": _READ}),
    Spec("hhit", "hhit", {"clr": Form((_ASIC,)), "get": Form((num("asic", 0, 3),), read="always")}),
    _flag("emit_empty_ch"), _flag("eof_on_eoe"),
    _per_asic("polarity", 1), _per_asic("erase_hit_thr", 7),
    Spec("state", "state", {None: _READ}),
    Spec("minibios", "minibios", custom="opaque"),
    _flag("emit_lst_cell_rd"), _flag("loss_policy", hi=2), _flag("cred_wait_time", hi=85_899),
    Spec("fec ID", "fec ID", {None: _READ}),
    Spec("fec", "fec", {"T": _READ, "V": _READ, "A": _READ, "I": _READ}),
    Spec("mars", "mars", custom="opaque"),
    Spec("flash", "flash", custom="opaque"),
    Spec("etherstat", "etherstat", {None: Form(optional=(word("clear", "clr"),))}),
    _per_asic("mult_thr", 0xFF), _per_asic("mult_limit", 0xFF),
    _flag("mult_trig_ena"), _flag("snd_mult_ena"), _flag("erase_hit_ena"),
)

# ---- AGET sub-commands (cmdi_aget.c order) ----------------------------------------------------

_AGET_FIELDS = {  # single-field register actions: name -> largest value
    "icsa": 1, "time": 15, "test": 3, "mode": 1, "fpn": 1, "polarity": 1, "vicm": 3, "dac": 15,
    "trigger_veto": 2, "synchro_discri": 1, "tot": 1, "range_tw": 1, "trig_width": 3,
    "rd_from_0": 1, "tst_digout": 1, "en_mkr_rst": 1, "rst_level": 1, "cur_ra": 3, "cur_buf": 3,
    "short_read": 1, "dis_multiplicity_out": 1, "autoreset_bank": 1, "in_dyn_range": 1,
}
# fmt: on
AGET_REGISTER_WORDS = {1: 2, 2: 2, 3: 3, 4: 3, 5: 1, 6: 4, 7: 4, 8: 8, 9: 8, 10: 4, 11: 4, 12: 1}
_PHYS = sel("channel", 64, lo=1)
AGET_FORMS: dict[str, Form] = {
    "read": Form((num("reg", 1, 12),), read="always", single_read=True),
    "write": Form((num("reg", 1, 12),)),  # values checked in _aget
    "wrchk": Form((num("reg", 1, 12),)),
    "wrhit": Form(tuple(num(f"v{k}", 0, 0xFFFF) for k in (4, 3, 2, 1, 0))),
    "rdhit": Form(read="always", single_read=True),
    **{
        name: Form(optional=(num("value", 0, hi),), read="if_absent", single_read=True)
        for name, hi in _AGET_FIELDS.items()
    },
    "gain": Form((_PHYS,), (num("value", 0, 3),), read="if_absent", single_read=True),
    "threshold": Form((_PHYS,), (Arg("value", "step", 0, 15),), read="if_absent", single_read=True),
    "hitprob": Form((_PHYS,), (num("value", 0, 0xFFFF),), read="if_absent", single_read=True),
    "inhibit": Form((_PHYS,), (num("value", 0, 3),), read="if_absent", single_read=True),
}
AGET_ACTIONS = tuple(AGET_FORMS)


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
