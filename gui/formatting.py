"""Short texts for the banner and the logbook snapshot (no Qt)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from agetdaq.gui.accumulators import total_losses
from agetdaq.gui.model import LinkInfo, StreamModel


def duration(seconds: object) -> str:
    """``1d 02:03:04`` / ``02:03:04``; ``-`` when unknown."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def number(value: object, fmt: str = ".3g", unit: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:{fmt}}{(' ' + unit) if unit else ''}"


def count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return f"{int(value):,}".replace(",", " ")


def age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return duration(seconds)


def connection(link: LinkInfo, now: float | None = None) -> str:
    """``connected (data 0.4 s old)``, ``STALE: no data for 12 s``, ``DISCONNECTED (...)``."""
    a = link.age(now)
    state = link.state
    if state == "connected":
        return f"connected (data {age(a)} old)"
    if state == "stale":
        return f"STALE: no data for {age(a)}"
    if state == "disconnected":
        return f"DISCONNECTED for {age(a)}"
    if state == "connecting":
        return f"connecting to {link.address} ({age(a)})"
    if state in ("replay", "finished"):
        return "replay" + (" finished" if state == "finished" else f" (data {age(a)} old)")
    if state == "error":
        return f"ERROR: {link.note}"
    return state


def losses(value: object) -> str:
    """``0`` or ``12 (builder 10, socket 2)``: the stages that lost something."""
    total = total_losses(value)
    if not total or not isinstance(value, Mapping):
        return str(total)
    parts = [f"{stage} {total_losses(v)}" for stage, v in value.items() if total_losses(v)]
    return f"{total} ({', '.join(parts)})"


def loss_text(status: Mapping[str, object], gaps: int) -> str:
    """``data lost 0 | not processed online 1 361 | stream gaps 0``: what is gone apart from
    what was only not analysed online (it is in the run file)."""
    lost, skipped = status.get("data_lost"), status.get("not_processed")
    if isinstance(lost, int) and isinstance(skipped, int):
        return (f"data lost {count(lost)} | not processed online {count(skipped)} | "
                f"stream gaps {gaps}")  # fmt: skip
    return f"losses {losses(status.get('losses'))} | stream gaps {gaps}"


def status_lines(model: StreamModel, now: float | None = None) -> list[str]:
    """The banner's fields as ``name: value`` lines (also the snapshot's status block)."""
    s = model.status
    run_type = s.get("run_type") or ""
    gain_rel, res, thr = model.latest_gain()
    return [
        f"stream: {model.name} [{model.address}]",
        f"connection: {connection(model.link, now)}",
        f"state: {s.get('state', 'unknown')}",
        f"run: {s.get('run_number', '-')} {run_type}".rstrip(),
        f"comment: {s.get('comment', '')}",
        f"elapsed: {duration(s.get('elapsed_s'))}",
        f"events: {count(s.get('events'))}",
        f"trigger rate: {number(s.get('trigger_rate'), '.3g', 'Hz')}",
        f"throughput: {number(s.get('mb_per_s'), '.3g', 'MB/s')}",
        f"losses: {loss_text(s, model.link.gaps)} (by stage: {losses(s.get('losses'))})",
        f"pedestal table: {s.get('pedestal_table') or 'NONE'}",
        f"DAQ message: {s.get('message', '')}",
        f"last run: {s.get('last_run') or '-'}",
        f"killed run: {s.get('killed_run') or '-'}",
        f"free disk: {number(s.get('disk_free_gb'), '.1f', 'GB')}",
        f"file: {s.get('file', '')}",
        f"stream gaps: {model.link.gaps} (DAQ restarts {model.link.restarts}, "
        f"reconnects {model.link.reconnects})",
        f"gain rel: {number(gain_rel, '.4f')}  resolution: {number(res, '.1f', '%')}"
        f"  threshold: {number(thr, '.2f', 'keV')}",
    ]
