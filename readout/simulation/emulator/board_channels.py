"""The emulated board's channel register file: per-chip, per-channel registers and the commands
``ped``, ``thr``, ``forceon``, ``forceoff``, ``list``, ``hped`` and ``aget`` (PROTOCOL.md §3).

:class:`ChannelRegisters` is a collaborator of the board (board.py): it keeps the AGET registers
and is given the data path's tables (:class:`CardSettings`: pedestals, thresholds, forced channels,
ZS polarity), the pedestal histograms and a callback for changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from agetdaq.protocol import monitoring as mon
from agetdaq.protocol.command_table import ParsedCommand, Sel
from agetdaq.readout.simulation.emulator.cardsettings import N_CHIPS, CardSettings
from agetdaq.readout.simulation.emulator.hped import PedestalHistos


def sel_text(s: Sel) -> str:
    """A selection as the card writes it in replies: ``*``, ``a:b`` or one index."""
    if not s.multi:
        return str(s.lo)
    return "*" if s.lo == 0 else f"{s.lo}:{s.hi}"


AGET_DEFAULTS = {"mode": 0, "fpn": 0, "polarity": 0, "time": 6, "dac": 0, "vicm": 1}
COMMANDS = ("ped", "thr", "forceon", "forceoff", "list", "hped", "aget")


class ChannelRegisters:
    """Per-chip AGET registers, per-channel gain / threshold codes and the commands on them."""

    def __init__(
        self,
        card_id: int,
        settings: CardSettings,
        hped: PedestalHistos,
        changed: Callable[[], None],
    ) -> None:
        self.card_id = card_id
        self.settings = settings
        self.hped = hped
        self._changed = changed  # the data path changed (the board refreshes the card)
        self.aget = {k: np.full(N_CHIPS, v, dtype=np.int64) for k, v in AGET_DEFAULTS.items()}
        self.aget_gain = np.zeros((N_CHIPS, 64), dtype=np.int64)
        self.aget_threshold = np.zeros((N_CHIPS, 64), dtype=np.int64)
        self.aget_other: dict[tuple[int, str], object] = {}

    def handle(self, c: ParsedCommand) -> tuple[int, str] | bytes:
        """Reply to one of :data:`COMMANDS`."""
        return getattr(self, "_cmd_" + c.name)(c)

    def disc_levels(self, base_adc: float, step_adc: float) -> np.ndarray:
        """AGET discriminator level per (chip, row) in ADC [I]: base + step x (dac + threshold),
        the 4-bit dac read as +0..+7, -1..-8; FPN rows never fire."""
        dac = self.aget["dac"]
        dac_signed = np.where(dac < 8, dac, 7 - dac)
        lv = np.full((N_CHIPS, 68), np.inf, dtype=np.float32)
        code = dac_signed[:, None] + self.aget_threshold
        lv[:, :64] = np.maximum(base_adc + step_adc * code, 1.0)
        return lv

    def _pedthr(self, c: ParsedCommand, table: np.ndarray, label: str) -> tuple[int, str]:
        asic, chan = c.args["asic"], c.args["channel"]
        if c.read:
            return 0, f"{label}({asic.lo},{chan.lo}): {int(table[asic.lo, chan.lo])}"
        table[np.ix_(list(asic.indices()), list(chan.indices()))] = c.args["value"]
        self._changed()
        return 0, f"{label}({sel_text(asic)},{sel_text(chan)}) <- {c.args['value']}"

    def _cmd_ped(self, c: ParsedCommand) -> tuple[int, str]:
        return self._pedthr(c, self.settings.ped, "Ped")

    def _cmd_thr(self, c: ParsedCommand) -> tuple[int, str]:
        return self._pedthr(c, self.settings.thr, "Thr")

    def _cmd_forceon(self, c: ParsedCommand) -> tuple[int, str]:
        return self._pedthr(c, self.settings.forceon, "ForceOn")

    def _cmd_forceoff(self, c: ParsedCommand) -> tuple[int, str]:
        return self._pedthr(c, self.settings.forceoff, "ForceOff")

    def _cmd_list(self, c: ParsedCommand) -> bytes:
        table = self.settings.thr if c.action == "thr" else self.settings.ped
        tables = {k: [int(v) for v in table[k, :72]] for k in c.args["asic"].indices()}
        return mon.encode_pedthr_list(tables, self.card_id, thresholds=c.action == "thr")

    def _cmd_hped(self, c: ParsedCommand) -> tuple[int, str] | bytes:
        a, h = c.args, self.hped
        chips, chans = list(a["asic"].indices()), list(a["channel"].indices())
        where = f"({sel_text(a['asic'])},{sel_text(a['channel'])})"
        if c.action == "clr":
            h.clear(chips, chans)
            return 0, f"hped clr {where}"
        if c.action == "offset":
            h.set_offset(chips, chans, a["target"])
            return 0, f"hped offset {where} <- {a['target']}"
        if c.action == "getsummary":
            return mon.encode_ped_summary(h.summary(chips, chans), self.card_id)
        if c.action == "getmath":
            return mon.encode_histo_math(
                chips[0], chans[0], h.math(chips[0], chans[0]), self.card_id
            )
        if c.action == "getbins":
            counts = [int(v) for v in h.counts[chips[0], chans[0]]]
            return mon.encode_histo_bins(chips[0], chans[0], counts, self.card_id)
        if c.action == "centermean":
            n = h.centermean(chips, chans, a["target"], self.settings.ped)
            self._changed()
            return 0, f"hped centermean {where} target {a['target']}: {n} pedestals set"
        n = h.setthr(
            chips, chans, a["target"], a["factor"], self.settings.zs_polarity, self.settings.thr
        )
        self._changed()
        return 0, f"hped setthr {where} {a['target']} {a['factor']:g}: {n} thresholds set"

    def _cmd_aget(self, c: ParsedCommand) -> tuple[int, str]:
        act, a = c.action, c.args
        ids = list(a["ids"].indices())
        if act in ("gain", "threshold", "hitprob", "inhibit"):
            table = {"gain": self.aget_gain, "threshold": self.aget_threshold}.get(act)
            chans = [ch - 1 for ch in a["channel"].indices()]
            if table is None:
                table = self.aget_other.setdefault((0, act), np.zeros((N_CHIPS, 64), np.int64))
            if c.read:
                return 0, f"Aget({ids[0]}) {act}({chans[0] + 1}): {int(table[ids[0], chans[0]])}"
            sub = np.ix_(ids, chans)
            if a["value"] == "++":
                table[sub] = np.minimum(table[sub] + 1, 15)
            elif a["value"] == "--":
                table[sub] = np.maximum(table[sub] - 1, 0)
            else:
                table[sub] = a["value"]
            self._changed()
            return (
                0,
                f"Aget({sel_text(a['ids'])}) {act}({sel_text(a['channel'])}) <- {a['value']}",
            )
        if act in self.aget or "value" in a or (c.read and act not in ("read", "rdhit")):
            arr = self.aget.setdefault(act, np.zeros(N_CHIPS, dtype=np.int64))
            if c.read:
                return 0, f"Aget({ids[0]}) {act}: {int(arr[ids[0]])}"
            arr[ids] = a["value"]
            if act in ("mode", "fpn", "time", "dac"):
                self._changed()
            return 0, f"Aget({sel_text(a['ids'])}) {act} <- {a['value']}"
        key = (ids[0], f"reg{a.get('reg', 'hit')}")
        if c.read:
            values = self.aget_other.get(key, ())
            return 0, f"Aget({ids[0]}) {act}: " + " ".join(f"0x{int(v):04x}" for v in values)
        values = tuple(v for k, v in sorted(a.items()) if k.startswith("v"))
        for i in ids:
            self.aget_other[(i, f"reg{a.get('reg', 'hit')}")] = values
        return 0, f"Aget({sel_text(a['ids'])}) {act} done"
