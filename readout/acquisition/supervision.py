"""Supervision of the board during a run: heartbeat, silence, credit, restarts.

:class:`BoardWatch` keeps its own state (alive, re-grants, last heartbeat, last sign of life,
restarts seen) and reports incidents as messages, and passes on the notices of the data path's
stages (e.g. pedestals that do not fit the data); the engine logs them and puts them on the
stream. A board silent for longer than ``board_timeout_s`` (no reply, no data) is lost: the
engine ends the run (:meth:`BoardWatch.lost`).
"""

from __future__ import annotations

import time
from typing import Any

from agetdaq.readout.link.board_link import BoardLink
from agetdaq.readout.link.errors import BoardError


def credit_left(text: str) -> int | None:
    """Allowance from the reply to a bare ``daq`` ("... send_credits: N F"), None if absent."""
    words = text.replace(":", " ").split()
    for i, w in enumerate(words[:-1]):
        if w == "send_credits":
            try:
                return int(words[i + 1], 0)
            except ValueError:
                return None
    return None


class BoardWatch:
    """Watches one board while a run is running (call :meth:`check` every ~0.1 s).

    Heartbeat: a bare ``daq`` every ``heartbeat_s`` proves the board alive and reads its credit.
    No data is normal at low trigger rates, so silence alone proves nothing. A board that does not
    answer is reported not answering; one that neither answers nor sends data for longer than
    ``board_timeout_s`` is lost (:meth:`lost`; checked right after each heartbeat, so the run ends
    within ``board_timeout_s`` plus one heartbeat). A board that answers with no credit left while
    we wait for data (it rebooted, or a grant was lost) gets a fresh window. The data path's
    builder tells a reboot (event counter and clock back to 0): reported, the run goes on.
    """

    def __init__(
        self,
        link: BoardLink,
        datapath: Any,
        board: str,
        heartbeat_s: float,
        board_timeout_s: float = 4.0,
    ) -> None:
        self.link = link
        self.datapath = datapath
        self.board = board
        self.heartbeat_s = heartbeat_s
        self.board_timeout_s = board_timeout_s
        self.alive = True
        self.regrants = 0
        self._last_heartbeat = 0.0
        self._last_answer = time.monotonic()
        self._restarts_seen = 0
        self._notices_seen = 0

    def begin_run(self) -> None:
        self._restarts_seen = 0
        self._notices_seen = 0
        self._last_answer = time.monotonic()
        self.alive = True

    def silent_s(self) -> float:
        """Seconds since the board last answered a heartbeat or sent data."""
        last_data = self.datapath.counters.last_data_ns / 1e9
        return time.monotonic() - max(self._last_answer, last_data)

    def lost(self) -> str | None:
        """Why the board counts as lost (silent longer than ``board_timeout_s``), or None."""
        silent = self.silent_s()
        if self.alive or silent <= self.board_timeout_s:
            return None
        return (
            f"board lost: {self.board} neither answered nor sent data for {silent:.1f} s "
            f"(board_timeout_s = {self.board_timeout_s:g})"
        )

    def data_age(self, run_start_mono: float) -> float:
        """Seconds since the last datagram (or since the run started)."""
        last = self.datapath.counters.last_data_ns
        ref = last if last else int(run_start_mono * 1e9)
        return max(0.0, (time.monotonic_ns() - ref) / 1e9)

    def check(self, run_number: int, run_start_mono: float) -> list[str]:
        """The incidents since the last call (messages), in the order they were seen."""
        out = self._heartbeat(run_start_mono)
        n = self.datapath.counters.restarts
        if n > self._restarts_seen:
            self._restarts_seen = n
            out.append(
                f"board {self.board} restarted (event counter and clock back to 0); "
                f"{n} restart(s) in run {run_number}, the run goes on"
            )
        notices = self.datapath.notices
        out += notices[self._notices_seen :]
        self._notices_seen = len(notices)
        return out

    def _heartbeat(self, run_start_mono: float) -> list[str]:
        now = time.monotonic()
        if now - self._last_heartbeat < self.heartbeat_s:
            return []
        self._last_heartbeat = now
        try:
            reply = self.link.command("daq", timeout=self.heartbeat_s, check=False)
        except BoardError as exc:
            if self.alive:
                self.alive = False
                return [f"board {self.board} not answering: {exc}"]
            return []
        self._last_answer = time.monotonic()
        out = []
        if not self.alive:
            self.alive = True
            out.append(f"board {self.board} answers again")
        credit = credit_left(reply.text if reply is not None else "")
        age = self.data_age(run_start_mono)
        if credit == 0 and age > self.heartbeat_s:
            self.regrants += 1
            self.link.credit.stop()
            self.link.credit.start()
            out.append(
                f"board {self.board} holds no credit and sent nothing for {age:.1f} s "
                "(rebooted, or a grant was lost): window re-granted"
            )
        return out
