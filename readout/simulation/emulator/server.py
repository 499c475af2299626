"""The emulated BEC on a UDP socket: commands, data, triggers and faults in one loop.

:class:`Emulator` is the public API (tests, the demo, ``agetdaq emulate``)::

    with Emulator(scenario="default", port=0, seed=1) as emu:
        host, port = emu.address
        ...  # talk to it over UDP
        print(emu.counters)

One thread runs :meth:`Card.serve`: it answers every command datagram (from anyone; replies go
to the sender of that command, data to the sender of the last ``daq``), produces the events the
triggers call for (:mod:`triggers`), and sends ready DFRAMEs while the credit allows, paced to the
Gigabit line rate (125 MB/s on the wire incl. 66 bytes of Ethernet/IP/UDP overhead per datagram)
unless burst mode is on.

:class:`Card` owns the parts and runs the socket loop; each part keeps its own state: the
:class:`~.board.Board` (registers and command interpreter, with its channel register file), the
:class:`~.card_clock.CardClock`, the :class:`~.card_histos.CardHistograms`, the
:class:`~.card_frontend.FrontEnd` (discriminator levels, physics configuration), the
:class:`~.triggers.EventProducer`, the :class:`~.faults.FaultInjector` and the
:class:`~.card_runtime.CardRuntime`, through which the board acts on the card.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from agetdaq.protocol.encode import max_frame_bytes_for_mtu
from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.config import build
from agetdaq.readout.simulation.emulator.bank import EventBank
from agetdaq.readout.simulation.emulator.board import Board
from agetdaq.readout.simulation.emulator.board_config import BoardConfig
from agetdaq.readout.simulation.emulator.card_clock import CardClock
from agetdaq.readout.simulation.emulator.card_frontend import FrontEnd
from agetdaq.readout.simulation.emulator.card_histos import CardHistograms
from agetdaq.readout.simulation.emulator.card_runtime import CardRuntime, Traffic
from agetdaq.readout.simulation.emulator.cardproc import CardProcessor
from agetdaq.readout.simulation.emulator.dataflow import POLICY_RESEND, DataFlow
from agetdaq.readout.simulation.emulator.faults import FaultInjector
from agetdaq.readout.simulation.emulator.framering import FrameRing
from agetdaq.readout.simulation.emulator.physics import PhysicsModel
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.triggers import EventProducer
from agetdaq.readout.simulation.emulator.truth import TruthWriter
from agetdaq.readout.simulation.emulator.warmup import compile_kernels

log = logging.getLogger(__name__)

WIRE_OVERHEAD_BYTES = 66  # preamble 8 + Ethernet 14 + FCS 4 + gap 12 + IP 20 + UDP 8
SEND_BATCH = 64
PACING_LEAD_S = 0.002  # the sender may run this far ahead of the line-rate schedule
PACING_CATCHUP_S = 0.02  # ... and make up this much line time lost while it was busy
UDP_SEGMENT = 103  # setsockopt / cmsg type of Linux UDP GSO (linux/udp.h)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000


class _Retry(Exception):
    """GSO failed before anything was sent: send the batch again the plain way."""


class Card:
    """One emulated BEC: its parts (see the module docstring) and the socket loop."""

    def __init__(
        self,
        scenario: Scenario,
        card_id: int | None = None,
        seed: int = 0,
        mtu: int | None = None,
        truth_path: str | Path | None = None,
        bank_events: int = 256,
        faults: dict[str, Any] | None = None,
        board_overrides: dict[str, Any] | None = None,
    ) -> None:
        """``card_id`` / ``mtu`` default to the scenario's [board] table; ``faults`` and
        ``board_overrides`` change keys of its [faults] / [board] tables (ConfigError if bad)."""
        self.scenario = scenario
        cfg = build(BoardConfig, board_overrides or {}, "board", base=scenario.board)
        if card_id is not None or mtu is not None:
            changes = {"card_id": card_id, "mtu": mtu}
            cfg = build(BoardConfig, {k: v for k, v in changes.items() if v is not None}, base=cfg)
        self.config = cfg
        self.faults = FaultInjector(scenario.faults.updated(faults or {}))
        self.physics = PhysicsModel(scenario, StripMapping.default(), seed)
        self.dataflow = DataFlow()
        self.clock = CardClock()
        self.histos = CardHistograms()
        self.traffic = Traffic()
        self.board = Board(cfg.card_id, self.dataflow)
        self.processor = CardProcessor(self.board.settings)
        self.ring = FrameRing(cfg.card_id, max_frame_bytes_for_mtu(cfg.mtu), cfg.ring_bytes)
        self.bank = EventBank(self.physics, bank_events, seed) if bank_events > 0 else None
        self.truth = TruthWriter(truth_path) if truth_path else None
        self.frontend = FrontEnd(self.processor, self.ring, self.physics, self.bank, cfg)
        self.producer = EventProducer(
            self.board,
            self.ring,
            self.frontend,
            self.clock,
            self.histos,
            self.faults,
            self.truth,
            self.physics,
            self.bank,
            cfg,
            seed,
        )
        self.runtime = CardRuntime(
            cfg.card_id,
            self.clock,
            self.dataflow,
            self.ring,
            self.producer,
            self.faults,
            self.histos,
            self.frontend,
            self.traffic,
        )
        self.board.connect(self.runtime)
        self.line_rate = cfg.line_rate_bytes_s
        self.sock: socket.socket | None = None
        self.data_addr: tuple[str, int] | None = None
        self._wire_t = 0.0
        self._open_since: float | None = None
        self._last_dg: bytes | None = None
        self._gso = False
        self._stop = threading.Event()
        compile_kernels(self.physics, self.processor, self.frontend.disc_levels, self.board.hped)

    def counters(self) -> dict[str, Any]:
        return self.runtime.counters()

    def summary(self) -> str:
        return self.runtime.summary()

    # ---- the loop ---------------------------------------------------------------------------

    def bind(self, host: str, port: int) -> tuple[str, int]:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.sock.bind((host, port))
        self._gso = self.config.gso and hasattr(socket, "SOL_UDP")
        return self.sock.getsockname()

    def stop(self) -> None:
        self._stop.set()

    def serve(self) -> None:
        """Run until :meth:`stop`."""
        assert self.sock is not None
        self.faults.schedule(self.clock.start())
        try:
            while not self._stop.is_set():
                self._iteration()
        finally:
            self.sock.close()
            if self.truth is not None:
                self.truth.close()

    def _iteration(self) -> None:
        now = time.monotonic()
        t = now - self.clock.t_start
        self._commands(now)
        for kind in self.faults.due_timed(now):
            if kind == "reboot":
                self.runtime.reboot()
        t_loop = time.perf_counter()
        self.producer.step(t, 0.005)
        if self.ring.has_open:
            if self._open_since is None:
                self._open_since = now
            timeout = self.board.rbf_timeout_s
            if timeout is not None and now - self._open_since >= timeout:
                self.ring.close_open()
                self._open_since = None
        else:
            self._open_since = None
        silent = self.faults.silent(now)
        if not silent:
            self._send_data(now)
            self._credit_timeout(now)
            for dg in self.faults.due_delayed(now):
                self._sendto(dg)
        self._wait(now, time.perf_counter() - t_loop)

    def _wait(self, now: float, busy_s: float) -> None:
        timeout = 0.01
        if self.ring.n_ready and self.dataflow.allowance > 0 and self.data_addr:
            timeout = (
                max(0.0, self._wire_t - PACING_LEAD_S / 2 - time.monotonic())
                if self._paced(now)
                else 0.0
            )
        elif self.board.sca["enable"] and self.producer.armed:
            timeout = 0.002 if self.board.trigger_rate_hz > 100 or self.faults.burst(now) else 0.005
        for d in (self.dataflow.next_deadline(), self.faults.next_deadline()):
            if d is not None:
                timeout = min(timeout, max(0.0, d - now))
        if timeout > 0:
            select.select([self.sock], [], [], timeout)

    def _commands(self, now: float) -> None:
        sock = self.sock
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable reported on a later call
                log.debug("recvfrom: %s", exc)
                continue
            if self.faults.silent(now):
                self.faults.counts["ignored_commands"] += 1
                self.traffic.commands_ignored += 1
                continue
            try:
                line = data.decode("ascii").strip("\x00\r\n ")
            except UnicodeDecodeError:
                line = "\x7f"  # not ASCII: the validator answers with a syntax error
            if line.split()[:1] == ["daq"]:
                self.data_addr = addr
            reply = self.board.handle(line) if line else None
            if reply is not None:
                self.traffic.replies += 1
                with contextlib.suppress(OSError):
                    sock.sendto(reply, addr)

    def _paced(self, now: float) -> bool:
        return self.line_rate > 0 and not self.faults.burst(now)

    def _send_data(self, now: float) -> None:
        ring, df = self.ring, self.dataflow
        if self.data_addr is None:
            return
        now = time.monotonic()
        for _ in range(64):
            if not ring.n_ready or df.allowance <= 0:
                return
            paced = self._paced(now)
            if paced and self._wire_t > now + PACING_LEAD_S:
                return
            starts, ends = ring.ready(SEND_BATCH)
            sizes = (ends - starts) * 2
            n = df.n_sendable(sizes)
            if n == 0:
                return
            starts, ends = starts[:n], ends[:n]
            ring.buf[starts] = df.take_leads(n)
            nbytes = int(sizes[:n].sum())
            try:
                self._send_views(starts, ends, now)
            except _Retry:
                self._send_views(starts, ends, now)
            ring.consume(n)
            df.sent(n, nbytes, now)
            self.traffic.datagrams += n
            self.traffic.bytes += nbytes
            if paced:
                wire = (nbytes + WIRE_OVERHEAD_BYTES * n) / self.line_rate
                self._wire_t = max(self._wire_t, now - PACING_CATCHUP_S) + wire
            now = time.monotonic()

    def _send_views(self, starts: np.ndarray, ends: np.ndarray, now: float) -> None:
        """Send arena datagrams [starts, ends) (word offsets): through the fault injector, or
        as UDP GSO runs (one sendmsg per run of equal-size adjacent datagrams, the kernel cuts
        them apart), or one sendto each."""
        mv = self.ring.bytes_view
        bs, be = (2 * starts).tolist(), (2 * ends).tolist()
        addr = self.data_addr
        if self.faults.active:
            for s, e in zip(bs, be):
                for dg in self.faults.process(bytes(mv[s:e]), now):
                    self._sendto(dg)
        elif self._gso:
            try:
                self._send_gso(mv, bs, be, addr)
            except OSError as exc:  # kernel or path without UDP segmentation offload
                log.info("UDP GSO unavailable (%s): sending one datagram per call", exc)
                self._gso = False
                raise _Retry from exc
        else:
            sendto = self.sock.sendto
            for s, e in zip(bs, be):
                sendto(mv[s:e], addr)
        if self.dataflow.loss_policy == POLICY_RESEND and bs:
            self._last_dg = bytes(mv[bs[-1] : be[-1]])

    def _send_gso(self, mv: memoryview, bs: list[int], be: list[int], addr: tuple) -> None:
        sock = self.sock
        n = len(bs)
        i = 0
        while i < n:
            size = be[i] - bs[i]
            j = i + 1
            limit = min(n, i + GSO_MAX_SEGMENTS, i + GSO_MAX_BYTES // size)
            while j < limit and bs[j] == be[j - 1] and be[j] - bs[j] == size:
                j += 1
            if j < n and j < limit and bs[j] == be[j - 1] and be[j] - bs[j] < size:
                j += 1  # a shorter last segment is allowed
            if j - i == 1:
                sock.sendto(mv[bs[i] : be[i]], addr)
            else:
                anc = [(socket.SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
                sock.sendmsg([mv[bs[i] : be[j - 1]]], anc, 0, addr)
            i = j

    def _sendto(self, dg: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendto(dg, self.data_addr)

    def _credit_timeout(self, now: float) -> None:
        policy = self.dataflow.poll_timeout(now)
        if policy == POLICY_RESEND and self._last_dg is not None and self.data_addr:
            self._sendto(self._last_dg)
            self.traffic.datagrams += 1


class Emulator:
    """A BEC emulator on a UDP port, run in a background thread."""

    def __init__(
        self,
        scenario: str | Path | Scenario = "default",
        host: str = "127.0.0.1",
        port: int = 1122,
        card_id: int | None = None,
        seed: int = 0,
        mtu: int | None = None,
        truth_path: str | Path | None = None,
        bank: int = 256,
        faults: dict[str, Any] | None = None,
        board: dict[str, Any] | None = None,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else Scenario.load(scenario)
        self.host, self.port = host, port
        self._kw = dict(
            card_id=card_id,
            seed=seed,
            mtu=mtu,
            truth_path=truth_path,
            bank_events=bank,
            faults=faults,
            board_overrides=board,
        )
        self.card: Card | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] = (host, port)

    def start(self) -> Emulator:
        self.card = Card(self.scenario, **self._kw)
        self.address = self.card.bind(self.host, self.port)
        self._thread = threading.Thread(target=self.card.serve, name="bec-emulator", daemon=True)
        self._thread.start()
        log.info("BEC emulator card %d on %s:%d", self.card.config.card_id, *self.address)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.card is not None:
            self.card.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def counters(self) -> dict[str, Any]:
        return self.card.counters() if self.card is not None else {}

    def summary(self) -> str:
        return self.card.summary() if self.card is not None else ""

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
