"""The emulated card's registers and command interpreter (PROTOCOL.md §2-3).

Lines are parsed by :func:`agetdaq.protocol.command_table.validate` (the one grammar of the
project); :meth:`Board.handle` acts on the parsed command and returns the reply datagram: a CFRAME
``"<err> Fem(NN) <msg>"`` (read-back when no value is given) or an MFRAME for ``cmd stat``, ``list
ped|thr``, ``hped getsummary|getmath|getbins``, ``hbusy get`` and ``hhit get``. ``daq`` requests go
to :class:`~agetdaq.readout.simulation.emulator.dataflow.DataFlow` and get no reply, except the
pause ("daq paused") and the bare read-back.

Emulator extension (not a card command; a real card answers -1): ``emu stat`` (traffic, trigger
and fault counters), ``emu fault key=value ...``, ``emu silence S``, ``emu reboot``, ``emu burst
0|1``. Commands listed in :data:`NOT_EMULATED` answer -1 "not emulated". Reply texts are in the
card's style; their exact wording is not known from the public record [I].
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from agetdaq import __version__
from agetdaq.protocol import monitoring as mon
from agetdaq.protocol.command_table import CommandError, ParsedCommand, validate
from agetdaq.protocol.commands import ERR_ILLEGAL_PARAMETER, ERR_UNKNOWN, encode_cframe, reply_text
from agetdaq.readout.simulation.emulator.board_channels import COMMANDS as CHANNEL_COMMANDS
from agetdaq.readout.simulation.emulator.board_channels import ChannelRegisters, sel_text
from agetdaq.readout.simulation.emulator.cardsettings import N_CHIPS, CardSettings
from agetdaq.readout.simulation.emulator.dataflow import DataFlow
from agetdaq.readout.simulation.emulator.hped import PedestalHistos

FIRMWARE = "V2.7"
NOT_EMULATED = (
    "after",
    "minibios",
    "mars",
    "flash",
    "shisto",
    "tcm_bert",
    "dcbal_enc",
    "dcbal_dec",
    "mode after",
)
# flags kept by the board only (no data-path effect, or read by the event producer)
PLAIN_FLAGS = {
    "trig_enable": 0,
    "trig_delay": 0,
    "event_limit": 0,
    "gen_use_limit": 0,
    "mult_trig_ena": 0,
    "snd_mult_ena": 0,
    "erase_hit_ena": 0,
    "eof_on_eoe": 0,
    "serve_target": 0,
    "test_enable": 0,
    "test_mode": 0,
    "test_zbt": 0,
    "keep_fco": 0,
    "fec_enable": 1,
    "power_inv": 0,
    "pul_enable": 0,
    "pul_delay": 0,
    "skip_rst": 0,
}
# flags that live in CardSettings (the data path)
SETTINGS_FLAGS = (
    "rst_len",
    "keep_rst",
    "emit_hit_cnt",
    "emit_empty_ch",
    "emit_lst_cell_rd",
    "forceon_all",
    "modify_hit_reg",
    "asic_mask",
    "subtract_ped",
    "zero_suppress",
)
RATE_SCALE = (0.1, 10.0, 100.0, 1000.0)
EVENT_LIMITS = (0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000)
RBF_TIMEVAL_S = (0.001, 0.01, 0.1, 1.0)


class Runtime(Protocol):
    """What the board asks of the running card (:class:`card_runtime.CardRuntime`)."""

    def clear_timestamp(self) -> None: ...
    def set_timestamp(self, ticks: int) -> None: ...
    def clear_event_counter(self) -> None: ...
    def sca_start(self, run: bool) -> None: ...
    def rbf(self, action: str) -> str: ...
    def hbusy(self, clear: bool) -> bytes | None: ...
    def hhit(self, chips: list[int], clear: bool) -> bytes | None: ...
    def emu(self, words: list[str]) -> tuple[int, str]: ...
    def state_text(self) -> str: ...
    def configuration_changed(self, board: Board) -> None: ...


class Board:
    """Register state of one BEC; :meth:`handle` answers one command line.

    The per-channel registers and commands are :attr:`channels`; what the card does in answer
    (clock, triggers, histograms, ...) is the :class:`Runtime` given by :meth:`connect`.
    """

    def __init__(self, card_id: int, dataflow: DataFlow) -> None:
        self.card_id = card_id
        self.dataflow = dataflow
        self.runtime: Runtime | None = None
        self.settings = CardSettings(card_id=card_id)
        self.hped = PedestalHistos()
        self.channels = ChannelRegisters(card_id, self.settings, self.hped, self._changed)
        self.flags = dict(PLAIN_FLAGS)
        self.sca = {"cnt": 512, "wckdiv": 4, "enable": 0, "autostart": 1}
        self.trig_rate = (0, 0)
        self.per_asic = {
            k: np.zeros(N_CHIPS, dtype=np.int64)
            for k in ("mult_thr", "mult_limit", "erase_hit_thr")
        }
        self.regs = np.zeros(10, dtype=np.int64)
        self.rbf = {"timed": 1, "timeval": 2}
        self.tstamp_isset = 0
        self.version = 0  # bumped on every change of the data path

    def connect(self, runtime: Runtime) -> None:
        """The running card that acts on this board's commands (set once, before any command)."""
        self.runtime = runtime
        runtime.configuration_changed(self)

    @property
    def _rt(self) -> Runtime:
        assert self.runtime is not None, "Board.connect(runtime) first"
        return self.runtime

    # ---- derived values ---------------------------------------------------------------------

    @property
    def trigger_rate_hz(self) -> float:
        rng, rate = self.trig_rate
        return rate * RATE_SCALE[rng]

    @property
    def event_limit(self) -> int:
        return EVENT_LIMITS[self.flags["event_limit"]]

    @property
    def rbf_timeout_s(self) -> float | None:
        return RBF_TIMEVAL_S[self.rbf["timeval"]] if self.rbf["timed"] else None

    def _changed(self) -> None:
        s, aget = self.settings, self.channels.aget
        s.aget_mode = aget["mode"].copy()
        s.aget_fpn = aget["fpn"].copy()
        s.sca_cnt = self.sca["cnt"]
        self.version += 1
        self._rt.configuration_changed(self)

    # ---- entry point ------------------------------------------------------------------------

    def handle(self, line: str) -> bytes | None:
        """Reply datagram for one command line (None for a data request without reply)."""
        stats = self.dataflow.stats
        stats.rx_cmd += 1
        words = line.split()
        try:
            if words[:1] == ["emu"]:
                err, msg = self._rt.emu(words[1:])
            else:
                cmd = validate(line, after_mode=False)
                out = self._dispatch(cmd)
                if out is None or isinstance(out, bytes):
                    if out is not None:
                        stats.tx_replies += 1
                    return out
                err, msg = out
        except CommandError as exc:
            err, msg = exc.code, exc.message
        if err < 0:
            stats.cmd_errors += 1
        stats.tx_replies += 1
        text = reply_text(err, self.card_id, msg)
        return encode_cframe(text[:255], err, self.card_id)

    def _dispatch(self, c: ParsedCommand) -> tuple[int, str] | bytes | None:
        name, a = c.name, c.args
        if name in NOT_EMULATED or (name == "mode" and a.get("mode") == "after"):
            return ERR_UNKNOWN, f"{c.text}: not emulated"
        if name in CHANNEL_COMMANDS:
            return self.channels.handle(c)
        handler = getattr(self, "_cmd_" + name.replace(" ", "_"), None)
        if handler is not None:
            return handler(c)
        if name in SETTINGS_FLAGS:
            if c.read:
                return 0, f"{name}: {getattr(self.settings, name)}"
            setattr(self.settings, name, a["value"])
            self._changed()
            return 0, f"{name} <- {a['value']}"
        if name in self.flags:
            if c.read:
                return 0, f"{name}: {self.flags[name]}"
            self.flags[name] = a["value"]
            if name == "eof_on_eoe":
                self._changed()
            return 0, f"{name} <- {a['value']}"
        if name in self.per_asic or name == "polarity":
            arr = self.settings.zs_polarity if name == "polarity" else self.per_asic[name]
            if c.read:
                return 0, f"{name}({a['asic'].lo}): {arr[a['asic'].lo]}"
            arr[a["asic"].indices()] = a["value"]
            self._changed()
            return 0, f"{name}({sel_text(a['asic'])}) <- {a['value']}"
        return 0, f"{c.text}: stored (no effect in the emulator)"

    # ---- commands ---------------------------------------------------------------------------

    def _cmd_daq(self, c: ParsedCommand) -> tuple[int, str] | None:
        df = self.dataflow
        if c.read:
            return 0, df.credits_text()
        reply = df.request(c.args["amount"], c.args["unit"], c.args["seq"], time.monotonic())
        return (0, reply) if reply else None

    def _cmd_version(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, f"Feminos-family BEC emulator firmware {FIRMWARE} (agetdaq {__version__})"

    def _cmd_help(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, (
            "sca mode rst_len keep_rst skip_rst emit_* eof_on_eoe forceon_all ped thr "
            "forceon forceoff subtract_ped zero_suppress zs_pre_post polarity hped list "
            "aget trig_* event_limit serve_target clr cmd hbusy hhit daq rbf state emu"
        )

    def _cmd_state(self, c: ParsedCommand) -> tuple[int, str]:
        f = self.flags
        return 0, (
            f"state: sca_enable {self.sca['enable']} serve_target {f['serve_target']} "
            f"trig_enable {f['trig_enable']} {self._rt.state_text()}"
        )

    def _cmd_sca(self, c: ParsedCommand) -> tuple[int, str]:
        act, a = c.action, c.args
        if act in ("start", "stop"):
            self._rt.sca_start(act == "start")
            return 0, f"SCA {act}"
        if c.read:
            v = self.sca[act]
            extra = f" ({100.0 / v:.2f} MHz)" if act == "wckdiv" else ""
            return 0, f"sca {act}: {v}{extra}"
        self.sca[act] = a["value"]
        if act == "enable" and a["value"]:
            self._rt.sca_start(True)
        if act in ("cnt", "wckdiv"):
            self._changed()
        extra = f" ({100.0 / a['value']:.2f} MHz)" if act == "wckdiv" else ""
        return 0, f"sca {act} <- {a['value']}{extra}"

    def _cmd_mode(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, "mode: aget" if c.read else "mode <- aget"

    def _cmd_trig_rate(self, c: ParsedCommand) -> tuple[int, str]:
        if not c.read:
            self.trig_rate = (c.args["range"], c.args["rate"])
        rng, rate = self.trig_rate
        arrow = ":" if c.read else " <-"
        return 0, f"trig_rate{arrow} range {rng} rate {rate} ({self.trigger_rate_hz:g} Hz)"

    def _cmd_zs_pre_post(self, c: ParsedCommand) -> tuple[int, str]:
        s = self.settings
        if not c.read:
            s.zs_pre, s.zs_post = c.args["pre"], c.args["post"]
            self._changed()
        return 0, f"zs_pre_post{':' if c.read else ' <-'} {s.zs_pre} {s.zs_post}"

    def _cmd_reg(self, c: ParsedCommand) -> tuple[int, str]:
        r = c.args["reg"]
        if not c.read:
            self.regs[r] = c.args["value"]
        return 0, f"Reg({r}){':' if c.read else ' <-'} 0x{int(self.regs[r]):08x}"

    def _cmd_rbf(self, c: ParsedCommand) -> tuple[int, str]:
        if c.action in ("timed", "timeval"):
            if not c.read:
                self.rbf[c.action] = c.args["value"]
            return 0, f"rbf {c.action}{':' if c.read else ' <-'} {self.rbf[c.action]}"
        if c.action == "config":
            return 0, f"rbf timed {self.rbf['timed']} timeval {self.rbf['timeval']}"
        return 0, self._rt.rbf(c.action)

    def _cmd_clr_tstamp(self, c: ParsedCommand) -> tuple[int, str]:
        self._rt.clear_timestamp()
        return 0, "timestamp cleared"

    def _cmd_clr_evcnt(self, c: ParsedCommand) -> tuple[int, str]:
        self._rt.clear_event_counter()
        return 0, "event counter cleared"

    def _cmd_tstamp_init(self, c: ParsedCommand) -> tuple[int, str]:
        a = c.args
        self._rt.set_timestamp((a["msb"] << 32) | (a["mid"] << 16) | a["lsb"])
        self.tstamp_isset = 1
        return 0, "timestamp initialised"

    def _cmd_tstamp_isset(self, c: ParsedCommand) -> tuple[int, str]:
        if "clear" in c.args:
            self.tstamp_isset = 0
        return 0, f"tstamp_isset: {self.tstamp_isset}"

    def _cmd_cmd(self, c: ParsedCommand) -> tuple[int, str] | bytes:
        stats = self.dataflow.stats
        if c.action == "clr":
            stats.clear()
            return 0, "command statistics cleared"
        stats.tx_replies += 1  # the reply carrying the statistics counts itself
        reply = mon.encode_cmd_stat(mon.CmdStats(*stats.values()), self.card_id)
        stats.tx_replies -= 1  # handle() counts it again
        return reply

    def _cmd_hbusy(self, c: ParsedCommand) -> tuple[int, str] | bytes:
        reply = self._rt.hbusy(c.action == "clr")
        return reply if reply is not None else (0, "dead-time histogram cleared")

    def _cmd_hhit(self, c: ParsedCommand) -> tuple[int, str] | bytes:
        if c.action == "clr":
            self._rt.hhit(list(c.args["asic"].indices()), True)
            return 0, f"hit histogram(s) {sel_text(c.args['asic'])} cleared"
        reply = self._rt.hhit([c.args["asic"]], False)
        return reply if reply is not None else (ERR_ILLEGAL_PARAMETER, "no histogram")

    def _cmd_loss_policy(self, c: ParsedCommand) -> tuple[int, str]:
        if not c.read:
            self.dataflow.loss_policy = c.args["value"]
        return 0, f"loss_policy{':' if c.read else ' <-'} {self.dataflow.loss_policy}"

    def _cmd_cred_wait_time(self, c: ParsedCommand) -> tuple[int, str]:
        if not c.read:
            self.dataflow.cred_wait_ms = c.args["value"]
        return 0, f"cred_wait_time{':' if c.read else ' <-'} {self.dataflow.cred_wait_ms} ms"

    def _cmd_fec_ID(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, "FEC ID: " + " ".join(f"{k}:0x{0xEC00 + k:04x}" for k in range(N_CHIPS))

    def _cmd_fec(self, c: ParsedCommand) -> tuple[int, str]:
        values = {"T": "T: 38.5 C", "V": "V: 3.30 V", "A": "A: 0.850 A", "I": "I: 0.850 A"}
        return 0, f"FEC {values[c.action]} (emulated)"

    def _cmd_etherstat(self, c: ParsedCommand) -> tuple[int, str]:
        s = self.dataflow.stats
        return 0, f"etherstat: rx {s.rx_cmd} tx {s.tx_replies + s.tx_daq} (emulated)"

    def _cmd_tcm(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, f"tcm {c.action}: 0 (no TCM emulated)"

    def _cmd_pul_load(self, c: ParsedCommand) -> tuple[int, str]:
        return 0, "pulser loaded (no effect in the emulator)"
