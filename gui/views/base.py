"""The view plugin contract: a widget plus hook methods, redrawn from the selected stream's model.

A view declares the model ``parts`` it draws (``StreamModel.version`` keys); the window calls
``draw()`` at a capped rate and only for visible views whose parts changed (or whose content is
time-dependent: ``refresh_s``). ``redraw()`` must only ``setData``/``setImage`` on items built once
in ``build()``, never create plot items. Hooks: ``on_message`` (each message of the selected
stream, after the model took it), ``on_control_reply`` and ``model_changed`` (stream switched).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Protocol

from PyQt6.QtWidgets import QWidget

if TYPE_CHECKING:
    from agetdaq.gui.config import MonitorConfig
    from agetdaq.gui.model import StreamModel
    from agetdaq.protocol.mapping import StripMapping
    from agetdaq.readout.transport.stream import Message


class Host(Protocol):
    """What a view may use of the window."""

    mapping: StripMapping
    config: MonitorConfig
    muted: bool  # the alarms' audible cue is off

    @property
    def model(self) -> StreamModel: ...

    def control(self, cmd: str, **fields: object) -> bool: ...

    def control_state(self) -> tuple[bool, bool]: ...  # (available and reachable, busy)

    def control_address(self) -> str | None: ...

    def schedule_redraw(self) -> None: ...


class View:
    """Base of every view plugin."""

    title = ""
    parts: tuple[str, ...] = ()
    refresh_s: float | None = None

    def __init__(self, host: Host) -> None:
        self.host = host
        self._drawn: dict[str, int] = {}
        self._last_draw = -math.inf
        self.draw_count = 0
        self.widget: QWidget = self.build()

    # ---- hooks --------------------------------------------------------------------------------

    def build(self) -> QWidget:
        raise NotImplementedError

    def redraw(self) -> None:
        raise NotImplementedError

    def on_message(self, msg: Message) -> None:
        """A message of the selected stream (already applied to the model)."""

    def on_control_reply(self, cmd: str, reply: dict) -> None:
        """Reply of the selected stream's DAQ to a control request."""

    def model_changed(self) -> None:
        """The selected stream changed: everything must be drawn again."""
        self._drawn.clear()

    def summary(self) -> list[str]:
        """Lines for the logbook snapshot."""
        return []

    # ---- scheduling ---------------------------------------------------------------------------

    def is_visible(self) -> bool:
        return self.widget.isVisible()

    def needs_redraw(self, now: float | None = None) -> bool:
        version = self.host.model.version
        if any(self._drawn.get(p) != version[p] for p in self.parts):
            return True
        now = time.monotonic() if now is None else now
        return self.refresh_s is not None and now - self._last_draw >= self.refresh_s

    def draw(self, now: float | None = None) -> None:
        """Redraw and remember which data it showed."""
        version = self.host.model.version
        self._drawn = {p: version[p] for p in self.parts}
        self.redraw()
        self._last_draw = time.monotonic() if now is None else now
        self.draw_count += 1
