"""The board's side of the run sequence: wake it, put it in a known state, configure it, stop and
drain it, restart it. Every wait before a run can be cut short by the owner's stop request."""

from __future__ import annotations

import logging
import re
import threading
import time

from agetdaq.protocol.script import Script
from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.link.errors import BoardError, BoardInterrupted, BoardTimeout

log = logging.getLogger("agetdaq.readout.acquisition.engine")

STOP_TRIGGERS = "sca enable 0"
RESTART_TRIGGERS = ("sca enable 1",)  # a run after a stopped one (clock and counter go on)
CLEAR_COUNTERS = ("clr tstamp", "clr evcnt")
DRAIN_QUIET_S = 0.2  # the card's memory is empty once nothing came for this long
DRAIN_LIMIT_S = 10.0
PENDING = re.compile(r"pending:\s*(\d+)\s+frames\s+(\d+)\s+bytes")  # the reply to rbf getpnd


class BoardSteps:
    """Board commands around runs; remembers whether the last stop disabled the triggers."""

    def __init__(self, link: BoardLink, board: str, timeout_s: float) -> None:
        self.link = link
        self.board = board
        self.timeout_s = timeout_s
        self.triggers_stopped = False
        self.drained = 0  # data frames the last configure found left in the card

    def wait_for_board(self, limit_s: float, stop: threading.Event | None = None) -> str:
        """Ask ``version`` until the board answers (a datagram sent before it was up is lost)."""
        end = time.monotonic() + limit_s
        while True:
            left = end - time.monotonic()
            try:
                reply = self.link.command("version", timeout=max(0.05, min(1.0, left)), stop=stop)
                return reply.text.strip() if reply is not None else ""
            except BoardInterrupted:
                raise
            except BoardError:
                if time.monotonic() >= end:
                    raise BoardTimeout(
                        f"board {self.board} does not answer "
                        f"(no reply to 'version' within {limit_s:g} s)"
                    ) from None

    def configure(self, script: Script, stop: threading.Event | None = None) -> None:
        """Wait for the board, put it in a known state, then send the script's board steps
        (BoardError if it fails, BoardInterrupted if ``stop`` is set meanwhile)."""
        self.wait_for_board(self.timeout_s, stop)
        self.known_state(stop)
        self.link.scripts.run(script, on_daq=lambda step: None, stop=stop)
        self.triggers_stopped = False

    def known_state(self, stop: threading.Event | None = None) -> None:
        """Triggers off, data paused, the card's memory drained, clock and event counter cleared;
        the next credit request (without sequence number) restarts its reply sequence. A DAQ
        that died mid-run (kill -9, power) left the card triggering and its memory full of that
        run's events: none of them may reach the next run. The memory is drained with credit
        unless the card says it holds nothing (``rbf getpnd``); no run is open here, so the data
        path discards what drains (counted ``outside_run``)."""
        self.link.command(STOP_TRIGGERS, timeout=self.timeout_s, stop=stop)
        self.link.stop_data(timeout=self.timeout_s)
        self.drained = 0
        before = self.link.receiver.counters.data_frames
        end = time.monotonic() + DRAIN_LIMIT_S
        held = self.pending(stop)
        # drained until the card says it holds nothing: a quiet spell alone can be a card (or a
        # loaded host) that paused, with the memory still full (CI saw the next run get them)
        while held != (0, 0) and time.monotonic() < end:  # something, or it cannot tell
            self.link.start_data()
            try:
                self.wait_quiet(DRAIN_QUIET_S, max(0.0, end - time.monotonic()), stop)
            finally:
                self.link.stop_data(timeout=self.timeout_s)
            self.wait_quiet(DRAIN_QUIET_S / 2, 1.0, stop)  # the frames that beat the pause
            if held is None or (stop is not None and stop.is_set()):
                break  # a card that cannot tell gets one drain: all we can do
            held = self.pending(stop)
        self.drained = self.link.receiver.counters.data_frames - before
        if held not in (None, (0, 0)):
            log.warning("board %s still holds %d frame(s) after %g s of draining",
                        self.board, held[0], DRAIN_LIMIT_S)  # fmt: skip
        if self.drained:
            log.warning(
                "board %s still held %d data frame(s) of an earlier run: discarded",
                self.board,
                self.drained,
            )
        for line in CLEAR_COUNTERS:
            self.link.command(line, timeout=self.timeout_s, stop=stop)
        if stop is not None and stop.is_set():
            raise BoardInterrupted(f"stopped while preparing board {self.board}")

    def pending(self, stop: threading.Event | None = None) -> tuple[int, int] | None:
        """(frames, bytes) waiting in the card's memory (``rbf getpnd``), None if it cannot
        tell (the command refused, or a reply of another form)."""
        try:
            reply = self.link.command("rbf getpnd", timeout=self.timeout_s, stop=stop)
        except BoardInterrupted:
            raise
        except BoardError as exc:
            log.info("board %s cannot tell what its memory holds: %s", self.board, exc)
            return None
        found = PENDING.search(reply.text if reply is not None else "")
        return (int(found[1]), int(found[2])) if found else None

    def restart_triggers(self, script_text: str) -> None:
        """After a stop that disabled the triggers, turn them on again if the script left them
        on. The card's clock and event counter go on across runs, as they did before the stop."""
        if not self.triggers_stopped or not script_enables_triggers(script_text):
            return
        for line in RESTART_TRIGGERS:
            self.link.command(line, timeout=self.timeout_s)
        self.triggers_stopped = False

    def stop_and_drain(self) -> None:
        """No new triggers; what the card already holds drains into this run, not the next;
        then pause the data and let the frames in flight arrive."""
        try:
            self.link.command(STOP_TRIGGERS, timeout=min(self.timeout_s, 1.0))
        except BoardError as exc:
            log.warning("stop of the triggers not acknowledged: %s", exc)
        else:
            self.triggers_stopped = True
            self.wait_quiet(0.2, 2.0)
        try:
            self.link.stop_data(timeout=self.timeout_s)
        except BoardError as exc:
            log.warning("pause not acknowledged: %s", exc)
        self.wait_quiet(0.2, 2.0)

    def wait_quiet(
        self, quiet_s: float, limit_s: float, stop: threading.Event | None = None
    ) -> None:
        """Let in-flight frames arrive: until no datagram for ``quiet_s`` (at most ``limit_s``,
        or until ``stop`` is set)."""
        end = time.monotonic() + limit_s
        last = self.link.receiver.counters.datagrams
        calm_since = time.monotonic()
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            time.sleep(0.02)
            now_count = self.link.receiver.counters.datagrams
            if now_count != last:
                last, calm_since = now_count, time.monotonic()
            elif time.monotonic() - calm_since >= quiet_s:
                return


def script_enables_triggers(text: str) -> bool:
    """Whether a command script leaves the card's triggers on (its last ``sca enable``)."""
    last = None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split("//", 1)[0].split()
        if words[:2] == ["sca", "enable"] and len(words) == 3:
            last = words[2]
    return last is not None and last not in ("0", "0x0")
