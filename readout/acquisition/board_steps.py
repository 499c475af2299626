"""The board's side of the run sequence: wake it, configure it, stop and drain it, restart it."""

from __future__ import annotations

import logging
import time

from agetdaq.protocol.script import Script
from agetdaq.readout.link.board_link import BoardError, BoardLink

log = logging.getLogger("agetdaq.readout.acquisition.engine")

STOP_TRIGGERS = "sca enable 0"
RESTART_TRIGGERS = ("sca enable 1",)  # a run after a stopped one (clock and counter go on)


class BoardSteps:
    """Board commands around runs; remembers whether the last stop disabled the triggers."""

    def __init__(self, link: BoardLink, board: str, timeout_s: float) -> None:
        self.link = link
        self.board = board
        self.timeout_s = timeout_s
        self.triggers_stopped = False

    def wait_for_board(self, limit_s: float) -> str:
        """Ask ``version`` until the board answers (a datagram sent before it was up is lost)."""
        end = time.monotonic() + limit_s
        while True:
            left = end - time.monotonic()
            try:
                reply = self.link.command("version", timeout=max(0.05, min(1.0, left)))
                return reply.text.strip() if reply is not None else ""
            except BoardError:
                if time.monotonic() >= end:
                    raise BoardError(
                        f"board {self.board} does not answer "
                        f"(no reply to 'version' within {limit_s:g} s)"
                    ) from None

    def configure(self, script: Script) -> None:
        """Wait for the board, then send the script's board steps (BoardError if it fails)."""
        self.wait_for_board(self.timeout_s)
        self.link.run_script(script, on_daq=lambda step: None)
        self.triggers_stopped = False

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

    def wait_quiet(self, quiet_s: float, limit_s: float) -> None:
        """Let in-flight frames arrive: until no datagram for ``quiet_s`` (at most ``limit_s``)."""
        end = time.monotonic() + limit_s
        last = self.link.receiver.counters.datagrams
        calm_since = time.monotonic()
        while time.monotonic() < end:
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
