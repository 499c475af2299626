"""The running card as the board sees it
(:class:`agetdaq.readout.simulation.emulator.board.Runtime`): clock, event counter, SCA start,
``rbf``, histograms, ``emu`` commands, reboot, and the counters.

:class:`CardRuntime` is mixed into :class:`agetdaq.readout.simulation.emulator.server.Card`, which
owns the parts.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from agetdaq.protocol import words as w
from agetdaq.readout.simulation.emulator.faults import parse_fault_args
from agetdaq.readout.simulation.emulator.histo_frames import encode_hit_histo, encode_latency_histo

if TYPE_CHECKING:
    import numpy as np

    from agetdaq.readout.simulation.emulator.bank import EventBank
    from agetdaq.readout.simulation.emulator.board import Board
    from agetdaq.readout.simulation.emulator.cardproc import CardProcessor
    from agetdaq.readout.simulation.emulator.dataflow import DataFlow
    from agetdaq.readout.simulation.emulator.faults import FaultInjector
    from agetdaq.readout.simulation.emulator.framering import FrameRing
    from agetdaq.readout.simulation.emulator.physics import PhysicsModel
    from agetdaq.readout.simulation.emulator.triggers import EventProducer

log = logging.getLogger(__name__)


class CardRuntime:
    """The board's runtime interface and the traffic/trigger/fault counters of one card."""

    board: Board
    dataflow: DataFlow
    processor: CardProcessor
    ring: FrameRing
    physics: PhysicsModel
    producer: EventProducer
    faults: FaultInjector
    bank: EventBank | None
    traffic: dict[str, int]
    disc_base: float
    disc_step: float
    disc_levels: np.ndarray
    clock_zero: float
    clock_offset: int
    t_start: float
    _phys_cfg: tuple[int, int]

    def model_time(self) -> float:
        return time.monotonic() - self.t_start

    def configuration_changed(self) -> None:
        self.processor.refresh()
        self.ring.eof_on_eoe = bool(self.board.flags["eof_on_eoe"])
        self.disc_levels = self.board.disc_levels(self.disc_base, self.disc_step)
        phys = (self.board.sca["wckdiv"], int(self.board.aget["time"][0]))
        if phys != self._phys_cfg:
            self.physics.configure(*phys)
            self._phys_cfg = phys

    def ensure_bank_encoded(self) -> None:
        if self.bank is not None:
            self.bank.encode(
                self.processor,
                self.physics.pedestal,
                self.disc_levels,
                self.producer.up,
                self.board.version,
            )

    def clear_timestamp(self) -> None:
        self.clock_zero, self.clock_offset = self.model_time(), 0

    def set_timestamp(self, ticks: int) -> None:
        self.clock_zero, self.clock_offset = self.model_time(), ticks

    def clear_event_counter(self) -> None:
        self.producer.evcnt = 0

    def sca_start(self, run: bool) -> None:
        self.producer.arm(self.model_time(), run)

    def rbf(self, action: str) -> str:
        if action == "reset":
            self.ring.reset()
        elif action == "getpnd":
            return f"rbf pending: {self.ring.n_ready} frames {2 * self.ring.pending_words()} bytes"
        elif action == "config":
            return f"rbf timed {self.board.rbf['timed']} timeval {self.board.rbf['timeval']}"
        return f"rbf {action} done"

    def hbusy(self, clear: bool) -> bytes | None:
        if clear:
            self.producer.hbusy[:] = 0
            return None
        return encode_latency_histo(w.DEADTIME_HSTAT_BINS, self.producer.hbusy, self.board.card_id)

    def hhit(self, chips: list[int], clear: bool) -> bytes | None:
        if clear:
            self.producer.hhit[chips] = 0
            return None
        return encode_hit_histo(chips[0], self.producer.hhit[chips[0]], self.board.card_id)

    def emu(self, words: list[str]) -> tuple[int, str]:
        """Emulator-only commands (see board.py)."""
        now = time.monotonic()
        cmd = words[0] if words else "stat"
        try:
            if cmd == "stat":
                return 0, self.summary()[:240]
            if cmd == "fault":
                self.faults.config.update(parse_fault_args(words[1:]))
                return 0, "faults: " + " ".join(words[1:])
            if cmd == "silence":
                self.faults.start_silence(now, float(words[1]))
                return 0, f"silent for {words[1]} s"
            if cmd == "reboot":
                self.faults.counts["reboot"] += 1
                self.reboot()
                return 0, "rebooting"
            if cmd == "burst":
                self.faults.config.burst = words[1] not in ("0", "off")
                self.faults.counts["burst"] += self.faults.config.burst
                return 0, f"burst {int(self.faults.config.burst)}"
        except (IndexError, ValueError) as exc:
            return -10, f"emu {' '.join(words)}: {exc}"
        return -1, f"unknown emu command {cmd!r} (stat|fault|silence|reboot|burst)"

    def state_text(self) -> str:
        b, c = self.board, self.producer.counters
        return (
            f"state: sca_enable {b.sca['enable']} serve_target {b.flags['serve_target']} "
            f"trig_enable {b.flags['trig_enable']} evcnt {self.producer.evcnt} events {c.events} "
            f"{self.dataflow.credits_text()} pending {self.ring.n_ready}"
        )

    def reboot(self) -> None:
        """Emulated reboot: sequence numbers, credits, counter, clock restart; data is lost."""
        log.warning("emulated reboot of card %d", self.board.card_id)
        self.ring.reset()
        self.dataflow.reset()
        self.producer.evcnt = 0
        self.clear_timestamp()

    # ---- counters -------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.traffic)
        out.update(dataclasses.asdict(self.dataflow.stats))
        tc = dataclasses.asdict(self.producer.counters)
        tc.pop("extra")
        out.update(tc)
        out.update({f"fault_{k}": v for k, v in self.faults.counts.items()})
        return out

    def summary(self) -> str:
        c = self.counters()
        keys = (
            "events",
            "replayed",
            "lost_dead_time",
            "lost_memory_full",
            "datagrams",
            "bytes",
            "rx_cmd",
            "rx_daq",
            "daq_missing",
            "rx_daq_timeout",
        )
        faults = " ".join(f"{k[6:]}={v}" for k, v in c.items() if k.startswith("fault_") and v)
        return " ".join(f"{k}={c[k]}" for k in keys) + (f" faults: {faults}" if faults else "")
