"""The running card as the board sees it (``board.Runtime``): clock, event counter, SCA start,
``rbf``, histograms, ``emu`` commands, reboot, and the counters.

:class:`CardRuntime` is a collaborator of :class:`agetdaq.readout.simulation.emulator.server.Card`:
it is given the parts it acts on (clock, credit flow, frame ring, event producer, fault injector,
histograms, front end, traffic counters) and keeps no state of the card's own.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agetdaq.protocol import words as w
from agetdaq.readout.simulation.emulator.faults import parse_fault_args
from agetdaq.readout.simulation.emulator.histo_frames import encode_hit_histo, encode_latency_histo

if TYPE_CHECKING:
    from agetdaq.readout.simulation.emulator.board import Board
    from agetdaq.readout.simulation.emulator.card_clock import CardClock
    from agetdaq.readout.simulation.emulator.card_frontend import FrontEnd
    from agetdaq.readout.simulation.emulator.card_histos import CardHistograms
    from agetdaq.readout.simulation.emulator.dataflow import DataFlow
    from agetdaq.readout.simulation.emulator.faults import FaultInjector
    from agetdaq.readout.simulation.emulator.framering import FrameRing
    from agetdaq.readout.simulation.emulator.triggers import EventProducer

log = logging.getLogger(__name__)

SUMMARY_KEYS = (
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


@dataclass
class Traffic:
    """What the card's socket sent and ignored."""

    datagrams: int = 0
    bytes: int = 0
    replies: int = 0
    commands_ignored: int = 0


class CardRuntime:
    """The board's runtime interface and the traffic/trigger/fault counters of one card."""

    def __init__(
        self,
        card_id: int,
        clock: CardClock,
        dataflow: DataFlow,
        ring: FrameRing,
        producer: EventProducer,
        faults: FaultInjector,
        histos: CardHistograms,
        frontend: FrontEnd,
        traffic: Traffic,
    ) -> None:
        self.card_id = card_id
        self.clock = clock
        self.dataflow = dataflow
        self.ring = ring
        self.producer = producer
        self.faults = faults
        self.histos = histos
        self.frontend = frontend
        self.traffic = traffic

    # ---- board.Runtime ----------------------------------------------------------------------

    def configuration_changed(self, board: Board) -> None:
        self.frontend.apply(board)

    def clear_timestamp(self) -> None:
        self.clock.clear()

    def set_timestamp(self, ticks: int) -> None:
        self.clock.set(ticks)

    def clear_event_counter(self) -> None:
        self.producer.evcnt = 0

    def sca_start(self, run: bool) -> None:
        self.producer.arm(self.clock.model_time(), run)

    def rbf(self, action: str) -> str:
        if action == "reset":
            self.ring.reset()
        elif action == "getpnd":
            return f"rbf pending: {self.ring.n_ready} frames {2 * self.ring.pending_words()} bytes"
        return f"rbf {action} done"

    def hbusy(self, clear: bool) -> bytes | None:
        if clear:
            self.histos.clear_busy()
            return None
        return encode_latency_histo(w.DEADTIME_HSTAT_BINS, self.histos.hbusy, self.card_id)

    def hhit(self, chips: list[int], clear: bool) -> bytes | None:
        if clear:
            self.histos.clear_hits(chips)
            return None
        return encode_hit_histo(chips[0], self.histos.hhit[chips[0]], self.card_id)

    def emu(self, words: list[str]) -> tuple[int, str]:
        """Emulator-only commands (see board.py)."""
        now = time.monotonic()
        cmd = words[0] if words else "stat"
        try:
            if cmd == "stat":
                return 0, self.summary()[:240]
            if cmd == "fault":
                self.faults.update(parse_fault_args(words[1:]))
                return 0, "faults: " + " ".join(words[1:])
            if cmd == "silence":
                self.faults.start_silence(now, float(words[1]))
                return 0, f"silent for {words[1]} s"
            if cmd == "reboot":
                self.faults.counts["reboot"] += 1
                self.reboot()
                return 0, "rebooting"
            if cmd == "burst":
                self.faults.set_burst(words[1] not in ("0", "off"))
                return 0, f"burst {int(self.faults.config.burst)}"
        except (IndexError, ValueError) as exc:
            return -10, f"emu {' '.join(words)}: {exc}"
        return -1, f"unknown emu command {cmd!r} (stat|fault|silence|reboot|burst)"

    def state_text(self) -> str:
        p = self.producer
        return (
            f"evcnt {p.evcnt} events {p.counters.events} "
            f"{self.dataflow.credits_text()} pending {self.ring.n_ready}"
        )

    def reboot(self) -> None:
        """Emulated reboot: sequence numbers, credits, counter, clock restart; data is lost."""
        log.warning("emulated reboot of card %d", self.card_id)
        self.ring.reset()
        self.dataflow.reset()
        self.producer.evcnt = 0
        self.clock.clear()

    # ---- counters -------------------------------------------------------------------------

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = dataclasses.asdict(self.traffic)
        out.update(dataclasses.asdict(self.dataflow.stats))
        tc = dataclasses.asdict(self.producer.counters)
        tc.pop("extra")
        out.update(tc)
        out.update({f"fault_{k}": v for k, v in self.faults.counts.items()})
        return out

    def summary(self) -> str:
        c = self.counters()
        faults = " ".join(f"{k[6:]}={v}" for k, v in c.items() if k.startswith("fault_") and v)
        return " ".join(f"{k}={c[k]}" for k in SUMMARY_KEYS) + (
            f" faults: {faults}" if faults else ""
        )
