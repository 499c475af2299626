"""A command script (:class:`agetdaq.protocol.script.Script`) run over one board link.

The whole script is parsed and validated first (text or path in ->
:class:`~agetdaq.protocol.script.ScriptError` before any datagram leaves; every board step checked
with the board type's command set -> :class:`~agetdaq.readout.link.errors.BoardError`). Then board
steps go one by one with their replies logged, ``sleep`` waits (a stop request cuts every wait
short: :class:`~agetdaq.readout.link.errors.BoardInterrupted`), ``fem`` selects (the selection
lasts across scripts), ``credits`` configures the link's credit loop and client ``DAQ`` steps go
to ``on_daq`` (default :meth:`~agetdaq.readout.link.board_link.BoardLink.daq_step`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agetdaq.protocol.command_table import CommandError
from agetdaq.protocol.commands import Reply
from agetdaq.protocol.script import Script, Step, parse_script
from agetdaq.readout.link.board import Command
from agetdaq.readout.link.credit_config import CreditConfig
from agetdaq.readout.link.errors import BoardError, BoardInterrupted

if TYPE_CHECKING:
    from agetdaq.readout.link.board_link import BoardLink

log = logging.getLogger("agetdaq.readout.link.board_link")


@dataclass(frozen=True)
class StepResult:
    step: Step
    reply: Reply | None  # None for steps without a reply


class ScriptRunner:
    """Scripts over ``link``; remembers which front-end the ``fem`` steps selected (this board is
    front-end ``fem_index``: its board steps are skipped while it is not selected)."""

    def __init__(self, link: BoardLink, fem_index: int = 0) -> None:
        self.link = link
        self.fem_index = fem_index
        self.selected = True

    def run(
        self,
        script: Script | str | Path,
        *,
        on_daq: Callable[[Step], object] | None = None,
        on_client: Callable[[Step], object] | None = None,
        on_reply: Callable[[Step, Reply | None], object] | None = None,
        stop: threading.Event | None = None,
    ) -> list[StepResult]:
        """Run a script (parsed here first if given as text or path). Returns each board step with
        its reply. ``stop`` set interrupts it between steps, in a ``sleep`` and while a reply is
        awaited: :class:`BoardInterrupted` (the script did not complete)."""
        if not isinstance(script, Script):
            script = parse_script(script)  # raises ScriptError before anything is sent
        plan = self._plan(script)
        link = self.link
        daq = on_daq or link.daq_step
        results: list[StepResult] = []
        for step, command in plan:
            if stop is not None and stop.is_set():
                raise BoardInterrupted(
                    f"{link.address}: script stopped before {step.file}:{step.line}"
                )
            if step.kind == "board":
                if not self.selected:
                    log.info("%s: %r skipped (fem not selected)", link.address, step.text)
                    continue
                assert command is not None
                reply = link.exchange(
                    command.text, link.board.expects_reply(command), None, True, stop
                )
                log.info("%s %s:%d %r -> %s", link.address, step.file, step.line, step.text,
                         _reply_summary(reply))  # fmt: skip
                results.append(StepResult(step, reply))
                if on_reply is not None:
                    on_reply(step, reply)
            elif step.kind == "sleep":
                _sleep(step.args["seconds"], stop)
                if stop is not None and stop.is_set():
                    raise BoardInterrupted(
                        f"{link.address}: script stopped in {step.file}:{step.line} {step.text!r}"
                    )
            elif step.kind == "fem":
                self._select(step)
            elif step.kind == "credits":
                self._credits(step)
            elif step.kind == "daq":
                daq(step)
            elif on_client is not None:
                on_client(step)
            else:
                log.info("%s: client step %r has no handler here; skipped", link.address, step.text)
        return results

    def _plan(self, script: Script) -> list[tuple[Step, Command | None]]:
        """Every step with its board command validated by the board type (before any is sent)."""
        plan: list[tuple[Step, Command | None]] = []
        for step in script:
            command = None
            if step.kind == "board":
                try:
                    command = self.link.board.validate_step(step)
                except CommandError as exc:
                    raise BoardError(
                        f"{step.file}:{step.line}: {exc.message}", code=exc.code, text=step.text
                    ) from None
            plan.append((step, command))
        return plan

    def _select(self, step: Step) -> None:
        a = step.args
        if a.get("query"):
            state = "selected" if self.selected else "not selected"
            log.info("%s: fem %d %s", self.link.address, self.fem_index, state)
        elif a.get("all"):
            self.selected = True
        elif "mask" in a:
            self.selected = bool(a["mask"] >> self.fem_index & 1)
        else:
            self.selected = a["fem"] == self.fem_index

    def _credits(self, step: Step) -> None:
        a = step.args
        credit = self.link.credit
        if a["action"] == "show":
            log.info("%s: %s", self.link.address, credit.describe())
            return
        config = CreditConfig(
            unit=a["unit"],
            window=a["credit"],
            threshold=a["threshold"],
            high_water=credit.config.high_water,
            low_water=credit.config.low_water,
        )
        credit.configure(config)


def _sleep(seconds: float, stop: threading.Event | None) -> None:
    if stop is None:
        time.sleep(seconds)
    else:
        stop.wait(seconds)


def _reply_summary(reply: Reply | None) -> str:
    if reply is None:
        return "(no reply expected)"
    if reply.kind == "C":
        return repr(reply.text.strip())
    return f"MFRAME of {len(reply.payload)} words"
