"""One-click logbook snapshot: the window as PNG plus a text summary next to it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from PyQt6.QtWidgets import QWidget

from agetdaq.gui import formatting as fmt
from agetdaq.gui.model import StreamModel


def summary_text(model: StreamModel, view_lines: Sequence[str], when: float | None = None) -> str:
    """Status fields, active alarms and fit results as plain text for the logbook."""
    when = time.time() if when is None else when
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(when))
    lines = [f"agetdaq monitor snapshot {stamp}", ""]
    lines += fmt.status_lines(model)
    lines.append("")
    lines += list(view_lines)
    return "\n".join(lines) + "\n"


def tab_stem(stem: str, index: int, title: str) -> str:
    """File stem of one tab's picture: ``snapshot-...-3-55fe-gain``."""
    words = "".join(c if c.isalnum() else " " for c in title.replace("&&", "&").lower()).split()
    return f"{stem}-{index}-{'-'.join(words) or 'tab'}"


def save_snapshot(
    window: QWidget, directory: str | Path, text: str, stem: str | None = None
) -> tuple[Path, Path]:
    """Grab ``window`` to ``<stem>.png`` and write ``text`` to ``<stem>.txt`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = stem or time.strftime("snapshot-%Y%m%d-%H%M%S")
    png = directory / f"{stem}.png"
    txt = directory / f"{stem}.txt"
    if not window.grab().save(str(png), "PNG"):
        raise OSError(f"could not write {png}")
    txt.write_text(text, encoding="utf-8")
    return png, txt
