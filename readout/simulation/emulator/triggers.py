"""Triggers, dead time and event production of the emulated card.

Trigger sources, while ``sca enable 1`` (and, with ``sca autostart 0``, until the first event):

* internal generator (``trig_enable`` bit 0) at ``trig_rate``: event type 0, a pedestal event;
* physics (``mult_trig_ena 1``, or ``trig_enable`` bit 1 "external pin" / bit 3 "TCM"): the
  physics model's arrivals (55Fe X-rays, muons) at the scenario rates: event type 1 [I].

A trigger that comes while the card is busy reading the previous event (dead time = overhead +
most slots read on one chip x SCA cells x ns per cell), while the card memory is full, or past
``event_limit`` is lost and counted. Busy times fill the ``hbusy`` histogram; hit counts the
``hhit`` histograms. Events are generated in real time while that fits a CPU budget; beyond it
bank events are replayed (logged). ``serve_target`` 0 drops events, 1 frames them for the DAQ,
2 fills the pedestal histograms, 3 only the hit histograms. Burst mode ignores rates and dead time
and fills the card memory from the bank as fast as it drains.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from agetdaq.readout.simulation.emulator.board_config import BoardConfig
from agetdaq.readout.simulation.emulator.card_clock import TICKS_PER_S, CardClock
from agetdaq.readout.simulation.emulator.card_histos import CardHistograms
from agetdaq.readout.simulation.emulator.truth import fragment

if TYPE_CHECKING:
    from agetdaq.readout.simulation.emulator.bank import EventBank
    from agetdaq.readout.simulation.emulator.board import Board
    from agetdaq.readout.simulation.emulator.card_frontend import FrontEnd
    from agetdaq.readout.simulation.emulator.faults import FaultInjector
    from agetdaq.readout.simulation.emulator.framering import FrameRing
    from agetdaq.readout.simulation.emulator.physics import PhysicsModel
    from agetdaq.readout.simulation.emulator.truth import TruthWriter

__all__ = ["TICKS_PER_S", "EventProducer", "TriggerCounters", "dead_time_filter"]

log = logging.getLogger(__name__)

MAX_TRIGGERS_PER_STEP = 200_000
BURST_BATCH = 4096
BURST_PENDING_WORDS = 1 << 20  # burst keeps ~2 MB framed ahead of the sender


@njit(cache=True, nogil=True)
def dead_time_filter(
    times: np.ndarray, busy_s: np.ndarray, busy_until: float, accept: np.ndarray
) -> float:
    """Mark triggers that find the card idle; return the new end of the busy period."""
    for k in range(times.shape[0]):
        if times[k] >= busy_until:
            accept[k] = True
            busy_until = times[k] + busy_s[k]
        else:
            accept[k] = False
    return busy_until


@dataclass
class TriggerCounters:
    triggers: int = 0
    events: int = 0
    lost_dead_time: int = 0
    lost_memory_full: int = 0
    lost_limit: int = 0
    lost_realtime: int = 0
    realtime: int = 0
    replayed: int = 0
    histo_events: int = 0
    dropped_events: int = 0
    extra: dict = field(default_factory=dict)


class EventProducer:
    """Turns trigger times into framed events (or histogram entries) for one card.

    Reads the board's registers; writes events into the frame ring (or the histograms), through
    the front end's card processor, stamped by the card clock.
    """

    def __init__(
        self,
        board: Board,
        ring: FrameRing,
        frontend: FrontEnd,
        clock: CardClock,
        histos: CardHistograms,
        faults: FaultInjector,
        truth: TruthWriter | None,
        physics: PhysicsModel,
        bank: EventBank | None,
        config: BoardConfig,
        seed: int,
    ) -> None:
        self.board = board
        self.ring = ring
        self.frontend = frontend
        self.proc = frontend.processor
        self.clock = clock
        self.histos = histos
        self.faults = faults
        self.truth = truth
        self.physics = physics
        self.bank = bank
        self.rng = np.random.default_rng([seed, 11])
        self.overhead_s = config.readout_overhead_us * 1e-6
        self.cell_s = config.readout_ns_per_cell * 1e-9
        self.cpu_share = config.realtime_cpu_share
        self.counters = TriggerCounters()
        self.evcnt = 0
        self.busy_until = 0.0
        self.last_t = 0.0
        self.gen_next = 0.0
        self.enabled_events = 0
        self.armed = False
        self._tokens = 0.05  # CPU seconds real-time generation may still spend
        self._wall = time.perf_counter()
        self._need_hint = 0
        self._bank_logged = False

    # ---- control ---------------------------------------------------------------------------

    def arm(self, t: float, run: bool) -> None:
        self.armed = run
        if run:
            self.enabled_events = 0
            self.last_t = max(self.last_t, t)  # no trigger counts from before the start
            self.gen_next = self.last_t

    def _running(self) -> bool:
        return bool(self.board.sca["enable"]) and self.armed

    def _after_event(self) -> None:
        self.enabled_events += 1
        if not self.board.sca["autostart"]:
            self.armed = False

    def busy_time(self, n_read_max: np.ndarray | int) -> np.ndarray | float:
        return self.overhead_s + n_read_max * self.board.settings.n_bins * self.cell_s

    # ---- trigger times ---------------------------------------------------------------------

    def _triggers(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(times, types, kinds) of the triggers in [t0, t1), sorted."""
        board = self.board
        te = board.flags["trig_enable"]
        times: list[np.ndarray] = []
        kinds: list[str] = []
        f = board.trigger_rate_hz
        if te & 1 and f > 0:
            n = max(0, int(np.ceil((t1 - self.gen_next) * f)))
            n = min(n, MAX_TRIGGERS_PER_STEP)
            g = self.gen_next + np.arange(n) / f
            g = g[g < t1]
            if g.size:
                self.gen_next = float(g[-1] + 1.0 / f)
            times.append(g)
            kinds += ["pedestal"] * g.size
        if board.flags["mult_trig_ena"] or te & 0xA:
            arr = self.physics.arrivals(t0, t1)
            times.append(np.array([a[0] for a in arr], dtype=np.float64))
            kinds += [a[1] for a in arr]
        if not times:
            return np.zeros(0), np.zeros(0, np.int64), []
        t = np.concatenate(times)
        order = np.argsort(t, kind="stable")
        kinds_sorted = [kinds[i] for i in order]
        types = np.array([0 if k == "pedestal" else 1 for k in kinds_sorted], dtype=np.int64)
        return t[order], types, kinds_sorted

    # ---- production ------------------------------------------------------------------------

    def step(self, t: float, wall_budget_s: float) -> int:
        """Process the triggers up to model time t; return the events produced."""
        t0, self.last_t = self.last_t, t
        if not self._running():
            return 0
        if self.faults.burst(time.monotonic()):
            return self._burst(t0, t)
        times, types, kinds = self._triggers(t0, t)
        if times.size == 0:
            return 0
        self.counters.triggers += times.size
        limit = self.board.event_limit
        produced = 0
        wall = time.perf_counter()
        self._tokens = min(self._tokens + self.cpu_share * (wall - self._wall), wall_budget_s)
        self._wall = wall
        has_bank = self.bank is not None and len(self.bank) > 0
        k = 0
        while k < times.size:
            if limit and self.enabled_events >= limit:
                self.counters.lost_limit += times.size - k
                break
            if not self.armed:
                self.counters.lost_dead_time += times.size - k
                break
            if self._tokens < 0 and has_bank:
                produced += self._replay(times[k:], types[k:], limit)
                break
            if self._tokens < -1.0:
                self.counters.lost_realtime += times.size - k
                break
            if times[k] < self.busy_until:
                self.counters.lost_dead_time += 1
            elif self._memory_full():
                self.counters.lost_memory_full += 1
            else:
                t_gen = time.perf_counter()
                produced += self._realtime(float(times[k]), int(types[k]), kinds[k])
                self._tokens -= time.perf_counter() - t_gen
            k += 1
        return produced

    def _memory_full(self) -> bool:
        """The card takes no trigger while its memory cannot hold another event like the last."""
        return self.board.flags["serve_target"] == 1 and self.ring.free_words() < self._need_hint

    def _realtime(self, t: float, etype: int, kind: str) -> int:
        board, ring, fe = self.board, self.ring, self.frontend
        target = board.flags["serve_target"]
        ev = self.physics.generate(kind, t)
        proc = self.proc
        proc.discriminate(ev.raw, self.physics.pedestal, fe.disc_levels, fe.up)
        if target == 2:
            proc.fill_histos(ev.raw, board.hped.offset, board.hped.counts)
            body = None
        elif target == 1:
            last_cells = self.rng.integers(0, 512, size=4).astype(np.int64)
            body = proc.body(ev.raw, last_cells)
        else:
            proc.select()
            body = None
        n_read = int(proc.mask.sum(axis=1).max())
        busy = float(self.busy_time(n_read))
        ts = self.clock.ticks(t)
        if body is not None:
            self._need_hint = ring.event_words_needed(body.shape[0])
        if body is not None and not ring.add(etype, ts, self.evcnt, body):
            self.counters.lost_memory_full += 1
            return 0
        self.busy_until = t + busy
        self._account(etype, t, ts, ev.truth, busy, proc.hit[:, :64].sum(axis=1))
        self.counters.realtime += 1
        return 1

    def _account(
        self, etype: int, t: float, ts: int, truth: dict, busy: float, hits: np.ndarray
    ) -> None:
        target = self.board.flags["serve_target"]
        if self.truth is not None and target == 1:
            self.truth.write(self.evcnt, ts, etype, t, fragment(truth), None)
        self.histos.add_busy(busy)
        if target == 3:
            self.histos.add_hits(hits)
        self.counters.histo_events += target in (2, 3)
        self.counters.dropped_events += target == 0
        self.counters.events += 1
        self.evcnt = (self.evcnt + 1) & 0xFFFFFFFF
        self._after_event()

    def _log_bank(self, n: int) -> None:
        if not self._bank_logged:
            log.warning(
                "real-time generation cannot keep up: replaying the pre-generated bank "
                "(%d events) for %d triggers and from now on as needed",
                len(self.bank),
                n,
            )
            self._bank_logged = True

    def _replay(self, times: np.ndarray, types: np.ndarray, limit: int) -> int:
        """Bank path for many triggers: vectorised dead time, one framing kernel call."""
        bank = self.bank
        self.frontend.ensure_bank_encoded()
        idx = np.empty(times.size, dtype=np.int64)
        phys = types == 1
        idx[phys] = bank.pick(True, int(phys.sum()), self.rng)
        idx[~phys] = bank.pick(False, int((~phys).sum()), self.rng)
        busy = np.asarray(self.busy_time(bank.n_read_max[idx]), dtype=np.float64)
        accept = np.zeros(times.size, dtype=np.bool_)
        self.busy_until = dead_time_filter(times, busy, self.busy_until, accept)
        self.counters.lost_dead_time += int((~accept).sum())
        times, types, idx, busy = times[accept], types[accept], idx[accept], busy[accept]
        if limit:
            room = max(0, limit - self.enabled_events)
            self.counters.lost_limit += max(0, times.size - room)
            times, types, idx, busy = times[:room], types[:room], idx[:room], busy[:room]
        self._log_bank(times.size)
        return self._emit_bank(times, types, idx, busy)

    def _emit_bank(self, times, types, idx, busy) -> int:
        bank, board, fe = self.bank, self.board, self.frontend
        n = times.size
        if n == 0:
            return 0
        target = board.flags["serve_target"]
        stamps = self.clock.ticks_of(times)
        counts = (self.evcnt + np.arange(n, dtype=np.int64)) & 0xFFFFFFFF
        if target == 1:
            done = self.ring.add_bank(types, stamps, counts, idx, bank.words, bank.offsets)
        elif target == 2:
            for k in range(n):
                raw = bank.raw[idx[k]]
                self.proc.discriminate(raw, self.physics.pedestal, fe.disc_levels, fe.up)
                self.proc.fill_histos(raw, board.hped.offset, board.hped.counts)
            done = n
        else:
            done = n
        self.counters.lost_memory_full += n - done
        if done and self.truth is not None and target == 1:
            for k in range(done):
                i = int(idx[k])
                self.truth.write(
                    int(counts[k]),
                    int(stamps[k]),
                    int(types[k]),
                    float(times[k]),
                    bank.fragments[i],
                    i,
                )
        self.histos.add_busy_many(busy[:done])
        if target == 3:
            self.histos.add_hits_many(bank.hit_counts[idx[:done]])
        self.counters.replayed += done
        self.counters.events += done
        self.counters.histo_events += done if target in (2, 3) else 0
        self.counters.dropped_events += done if target == 0 else 0
        self.evcnt = (self.evcnt + done) & 0xFFFFFFFF
        self.enabled_events += done
        if done and not board.sca["autostart"]:
            self.armed = False
        return done

    def _burst(self, t0: float, t1: float) -> int:
        """Burst: as many bank events as the card memory takes, time-stamped across [t0, t1)."""
        if self.bank is None or not len(self.bank):
            return 0
        if self.ring.pending_words() > BURST_PENDING_WORDS:
            return 0
        self._log_bank(0)
        flags = self.board.flags
        physics = bool(flags["mult_trig_ena"] or flags["trig_enable"] & 0xA)
        self.frontend.ensure_bank_encoded()
        n = BURST_BATCH
        limit = self.board.event_limit
        if limit:
            n = min(n, max(0, limit - self.enabled_events))
        times = t0 + (t1 - t0) * np.arange(n) / max(n, 1)
        types = np.full(n, 1 if physics else 0, dtype=np.int64)
        idx = self.bank.pick(physics, n, self.rng)
        busy = np.zeros(n)
        self.counters.triggers += n
        done = self._emit_bank(times, types, idx, busy)
        self.counters.lost_memory_full -= n - done  # burst triggers only exist if they fit
        self.counters.triggers -= n - done
        return done
