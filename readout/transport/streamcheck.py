"""Every frame of the monitoring stream checked against its contract (docs/STREAM.md).

:func:`check_message` lists what a decoded message breaks: the envelope (``seq``, ``time``,
``source``, ``topic``), the header fields of its topic (and of its ``kind`` for ``calib``), and
the names, kinds and shapes of its arrays, all as ``agetdaq.readout.schema`` defines them.
:class:`StreamAudit` runs raw multipart messages through the decoder and that check and counts
messages, malformed ones (undecodable or breaking the contract), sequence gaps and restarts per
(source, topic). The stream soak (``tools/stream_soak.py``, ``make stream-soak``) and the tests
use it; nothing here opens a socket.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from agetdaq.readout import schema as S
from agetdaq.readout.transport.stream import Message, StreamError, decode_message

STATES = ("idle", "configuring", "configured", "running", "stopping", "error")
# status fields a producer may leave out (docs/STREAM.md says which)
OPTIONAL_STATUS = frozenset({"dead_time"})


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _missing(header: Mapping[str, object], names: tuple[str, ...] | frozenset[str]) -> list[str]:
    return [f"header lacks {n!r}" for n in names if n not in header]


def _arrays(
    arrays: Mapping[str, np.ndarray], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> list[str]:
    out = [f"array {n!r} missing" for n in required if n not in arrays]
    known = set(required) | set(optional)
    out += [f"unexpected array {n!r}" for n in arrays if n not in known]
    return out


def _envelope(msg: Message) -> list[str]:
    h = msg.header
    out = []
    if msg.topic not in S.TOPICS:
        out.append(f"unknown topic {msg.topic!r}")
    if not _is_int(h.get("seq")) or h["seq"] < 0:
        out.append(f"bad seq {h.get('seq')!r}")
    if not _is_num(h.get("time")):
        out.append(f"bad time {h.get('time')!r}")
    if not isinstance(h.get("source"), str):
        out.append(f"bad source {h.get('source')!r}")
    if h.get("topic") != msg.topic:
        out.append(f"header topic {h.get('topic')!r} is not the frame's {msg.topic!r}")
    return out


def _status(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, tuple(f for f in S.STATUS_FIELDS if f not in OPTIONAL_STATUS))
    out += _arrays(a, ())
    if h.get("state") not in STATES:
        out.append(f"bad state {h.get('state')!r}")
    losses = h.get("losses")
    if not isinstance(losses, dict) or not all(
        isinstance(v, dict) and all(_is_int(n) for n in v.values()) for v in losses.values()
    ):
        out.append("losses is not {stage: {kind: count}}")
    counts = h.get("class_counts")
    if not isinstance(counts, dict) or set(counts) - set(S.CLASS_NAMES):
        out.append(f"bad class_counts {counts!r}")
    for key in ("events", "run_number", "data_lost", "not_processed"):
        if key in h and not _is_int(h[key]):
            out.append(f"{key} is not an integer")
    return out


def _summary(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, S.SUMMARY_HEADER) + _arrays(a, S.SUMMARY_ARRAYS)
    n = h.get("n")
    out += [f"array {k!r} is not 1-D of n = {n}" for k, v in a.items()
            if v.ndim != 1 or len(v) != n]  # fmt: skip
    return out


def _event(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, (*S.EVENT_MESSAGE_HEADER, *S.SUMMARY_FIELDS))
    out += _arrays(a, ("waveforms",), ("hits",))
    wf, hits = a.get("waveforms"), a.get("hits")
    if wf is not None and (wf.ndim != 2 or wf.dtype != np.float32):
        out.append(f"waveforms {wf.dtype} {wf.shape} is not float32 (n_strips, T)")
    if hits is not None and (hits.dtype != bool or wf is None or hits.shape != wf.shape[:1]):
        out.append(f"hits {hits.dtype} {hits.shape} is not bool (n_strips,)")
    if h.get("samples") not in S.EVENT_SAMPLES:
        out.append(f"bad samples {h.get('samples')!r}")
    return out


def _hist(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, S.HIST_HEADER) + _arrays(a, S.HIST_ARRAYS)
    if out:
        return out
    x, y, m = a["x_edges_mm"], a["y_edges_mm"], a["hitmap"]
    if m.shape != (len(x) - 1, len(y) - 1):
        out.append(f"hitmap {m.shape} does not fit edges {len(x)} x {len(y)}")
    if a["occupancy"].ndim != 1 or a["spectrum"].ndim != 1:
        out.append("occupancy and spectrum must be 1-D")
    return out


def _pedestal(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, S.PEDESTAL_HEADER) + _arrays(a, S.PEDESTAL_ARRAYS)
    if len({len(v) for v in a.values()}) > 1:
        out.append("pedestal arrays differ in length")
    return out


def _calib(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    kind = h.get("kind", "point")
    if kind not in S.CALIB_KINDS:
        return [f"unknown calib kind {kind!r}"]
    header, arrays = {
        "point": (S.CALIB_HEADER, S.CALIB_ARRAYS),
        "live": (S.CALIB_LIVE_HEADER, S.CALIB_LIVE_ARRAYS),
        "map": (S.CALIB_MAP_HEADER, S.CALIB_MAP_ARRAYS),
    }[kind]
    out = _missing(h, header) + _arrays(a, arrays)
    if out:
        return out
    if kind in ("point", "live") and len(a["edges"]) != len(a["spectrum"]) + 1:
        out.append("edges must be one longer than spectrum")
    if kind == "live":
        cx, cy = a["curve_x"], a["curve_y"]
        if not (len(cx) == len(cy) == 0 or len(cx) == len(cy) + 1):
            out.append("curve_x must be one longer than curve_y")
    if kind == "map":
        shape = (h.get("nx"), h.get("ny"))
        out += [f"{k} {a[k].shape} is not (nx, ny) {shape}" for k in arrays if a[k].shape != shape]
        reasons = h.get("reasons")
        if not isinstance(reasons, list) or len(reasons) != a["rel_gain"].size:
            out.append("reasons must hold one entry per region")
    return out


def _run(h: Mapping[str, object], a: Mapping[str, np.ndarray]) -> list[str]:
    out = _missing(h, S.RUN_HEADER) + _arrays(a, ())
    runs = h.get("runs")
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        out.append("runs is not a list of objects")
    return out


_CHECKS = {
    S.TOPIC_STATUS: _status,
    S.TOPIC_SUMMARY: _summary,
    S.TOPIC_EVENT: _event,
    S.TOPIC_HIST: _hist,
    S.TOPIC_PEDESTAL: _pedestal,
    S.TOPIC_CALIB: _calib,
    S.TOPIC_RUN: _run,
}


def check_message(msg: Message) -> list[str]:
    """What ``msg`` breaks of docs/STREAM.md (empty: nothing)."""
    out = _envelope(msg)
    check = _CHECKS.get(msg.topic)
    if check is None:
        return out + ([f"topic {msg.topic!r} is reserved"] if msg.topic in S.TOPICS else [])
    return out + check(msg.header, msg.arrays)


@dataclass
class StreamAudit:
    """Counts of a stream checked frame by frame (see the module docstring)."""

    messages: int = 0
    malformed: int = 0  # undecodable, or breaking the contract
    gaps: int = 0  # messages missing in some (source, topic) numbering
    restarts: int = 0  # a numbering started again (the DAQ restarted)
    per_topic: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # the first few, for the report
    last_seq: dict[tuple[str, str], int] = field(default_factory=dict)
    keep_problems: int = 20

    def feed(self, frames: list[bytes]) -> Message | None:
        """One raw multipart message; the decoded message when it keeps the contract."""
        self.messages += 1
        try:
            msg = decode_message(frames)
        except StreamError as exc:
            self._bad(f"undecodable: {exc}")
            return None
        self.per_topic[msg.topic] += 1
        self._sequence(msg)
        problems = check_message(msg)
        if problems:
            self._bad(f"{msg.topic} seq {msg.header.get('seq')}: {'; '.join(problems)}")
            return None
        return msg

    def _sequence(self, msg: Message) -> None:
        seq = msg.header.get("seq")
        if not _is_int(seq):
            return
        key = (str(msg.header.get("source", "")), msg.topic)
        prev = self.last_seq.get(key)
        self.last_seq[key] = seq
        if prev is None:
            return
        if seq > prev + 1:
            self.gaps += seq - prev - 1
            self._note(f"gap: {msg.topic} seq {prev} -> {seq}")
        elif seq <= prev:
            self.restarts += 1

    def _bad(self, text: str) -> None:
        self.malformed += 1
        self._note(text)

    def _note(self, text: str) -> None:
        if len(self.problems) < self.keep_problems:
            self.problems.append(text)

    def summary(self) -> str:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.per_topic.items()))
        return (f"{self.messages} messages ({topics}); malformed {self.malformed}, gaps "
                f"{self.gaps}, restarts {self.restarts}")  # fmt: skip
