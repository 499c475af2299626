"""The grammar of the card commands (firmware V2.7, PROTOCOL.md §3.3-3.4) as data.

:data:`COMMANDS` lists every command in the card's dispatch order (prefix match, first wins); each
:class:`Spec` holds the :class:`Form` of its arguments per sub-command. ``aget`` actions are in
:data:`AGET_FORMS`. The validator that reads these tables is
:mod:`agetdaq.protocol.command_validator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

N_ASICS = 4
MAX_AGET_INDEX = 71  # last DAQ index of an AGET (rst_len 1)
MAX_AFTER_INDEX = 78


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
