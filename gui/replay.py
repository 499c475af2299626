"""Replay of a recorded run through the monitor: the same signals as the live stream.

Runs in the worker thread (file reads never happen on the GUI thread). The events table becomes
``summary`` messages paced at ``speed`` x the recorded host time (``speed <= 0``: as fast as the
GUI takes them), ``meta/pedestals`` a ``pedestal`` message, the waveforms of a sampled event
(at most ``event_rate_hz`` per wall second) an ``event`` message, and once per second of run
time a ``status`` message is synthesised (the file's own status snapshots supply losses and
throughput when present). A sampled event's waveforms are its stored channel rows or, for an
event the DAQ shed (build flag SAMPLES_IN_RAW: no channel rows), its channels decoded from the
raw datagram record by the reader, placed on strips by the file's own mapping. With ``loop`` the
file is replayed again and again as one endless run: each pass continues the clock (times shifted
by the recorded span plus LOOP_GAP_S) and the message numbering, so the monitor sees a run that
never ends (soak tests).
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import h5py
import numpy as np
import tomllib

from agetdaq.gui.worker import SourceWorker
from agetdaq.protocol.event import Event
from agetdaq.protocol.mapping import MappingError, StripMapping
from agetdaq.readout.schema import CLASS_NAMES, NOT_PROCESSED, SAMPLES_IN_RAW, SUMMARY_FIELDS
from agetdaq.readout.store import layout as L
from agetdaq.readout.store.reader import RunFile, RunFileError
from agetdaq.readout.transport.stream import Message

BLOCK_ROWS = 4096
TICK_S = 0.05
LOOP_GAP_S = 1.0  # run time between the last event of one pass and the first of the next
_STATUS_KEYS = ("losses", "mb_per_s", "bytes", "queue_fill", "dead_time", "board", "file_mb")


def summary_arrays(rows: np.ndarray) -> dict[str, np.ndarray]:
    """Stream-named feature arrays (docs/STREAM.md ``summary``) from event-table rows."""
    names = rows.dtype.names or ()
    out: dict[str, np.ndarray] = {}
    wanted = dict(SUMMARY_FIELDS)
    for key in ("event_id", "timestamp", "x_mm", "y_mm", "size_x", "size_y", "balance", "n_hits"):
        wanted.setdefault(key, key)
    for key, field in wanted.items():
        src = key if key in names else field
        if src in names:
            out[key] = np.ascontiguousarray(rows[src])
    out["time_s"] = row_times(rows)
    return out


def row_times(rows: np.ndarray) -> np.ndarray:
    """Host time (s) of event rows: ``time_ns``, else card ticks of 20 ns."""
    names = rows.dtype.names or ()
    if "time_ns" in names:
        return rows["time_ns"].astype(np.float64) / 1e9
    if "timestamp" in names:
        return rows["timestamp"].astype(np.float64) * 20e-9
    return np.zeros(len(rows))


class _Factory:
    """Numbered messages of one source, as a live publisher would number them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.seq: dict[str, int] = {}

    def make(self, topic: str, header: dict, arrays: dict | None, t: float) -> Message:
        seq = self.seq.get(topic, 0)
        self.seq[topic] = seq + 1
        h = dict(header, seq=seq, time=t, source=self.source, topic=topic)
        return Message(topic, h, dict(arrays or {}))


def _first_channel_row(ch: h5py.Dataset, event_row: int) -> int:
    """Index of the first channel row of ``event_row`` or later (rows are in event order)."""
    lo, hi = 0, int(ch.shape[0])
    while lo < hi:
        mid = (lo + hi) // 2
        if int(ch[mid]["event_row"]) < event_row:
            lo = mid + 1
        else:
            hi = mid
    return lo


def newest_stored_row(f: h5py.File, start: int, stop: int) -> int | None:
    """The last event row in ``[start, stop)`` that has stored waveforms, or None."""
    ch = f[L.CHANNELS]
    a, b = _first_channel_row(ch, start), _first_channel_row(ch, stop)
    if b <= a:
        return None
    return int(ch[b - 1]["event_row"])


def newest_raw_row(rows: np.ndarray, start: int) -> int | None:
    """The last of ``rows`` (event rows from ``start`` on) flagged SAMPLES_IN_RAW, or None."""
    if "build_flags" not in (rows.dtype.names or ()):
        return None
    flagged = np.flatnonzero(rows["build_flags"] & SAMPLES_IN_RAW)
    return start + int(flagged[-1]) if len(flagged) else None


def file_strip_lut(meta: dict[str, str]) -> np.ndarray:
    """[card, chip, DAQ index] -> global strip of the run: the file's own mapping and rst_len
    (``meta/mapping``, ``meta/config``), else the default mapping with rst_len 0."""
    mapping = StripMapping.default()
    if meta.get("mapping", "").strip():
        with contextlib.suppress(MappingError):  # unreadable: the default mapping
            mapping = StripMapping.from_text(meta["mapping"], "meta/mapping")
    try:
        rst_len = int(tomllib.loads(meta.get("config", "")).get("daq", {}).get("rst_len", 0))
    except (tomllib.TOMLDecodeError, AttributeError, TypeError, ValueError):
        rst_len = 0
    return mapping.lut(rst_len if rst_len in (0, 1) else 0)


def event_waveforms(
    f: h5py.File, event_row: int, pedestals: np.ndarray | None, n_strips: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(waveforms float32 (n_strips, T), hits) of one stored event, pedestal-subtracted (see
    strip_waveforms)."""
    ch = f[L.CHANNELS]
    lo = _first_channel_row(ch, event_row)
    block = ch[lo : lo + 2048]
    rows = block[block["event_row"] == event_row]
    if not len(rows):
        return None
    s0 = int(rows["sample_start"].min())
    s1 = int((rows["sample_start"] + rows["n_samples"]).max())
    bins = f[L.SAMPLE_BIN][s0:s1]
    adc = f[L.SAMPLE_ADC][s0:s1]
    starts = rows["sample_start"].astype(np.int64) - s0
    ends = starts + rows["n_samples"].astype(np.int64)
    traces = [
        (int(r["strip"]), bins[a:b], adc[a:b]) for r, a, b in zip(rows, starts, ends, strict=True)
    ]
    return strip_waveforms(traces, pedestals, n_strips)


def raw_event_waveforms(
    event: Event, lut: np.ndarray, pedestals: np.ndarray | None, n_strips: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(waveforms, hits) of an Event (channels as the card sent them), strips from ``lut``."""
    traces = []
    for c in event.channels:
        ok = c.card < lut.shape[0] and c.chip < lut.shape[1] and c.channel < lut.shape[2]
        traces.append((int(lut[c.card, c.chip, c.channel]) if ok else -1, c.bins, c.adc))
    return strip_waveforms(traces, pedestals, n_strips)


def strip_waveforms(
    traces: list[tuple[int, np.ndarray, np.ndarray]], pedestals: np.ndarray | None, n_strips: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(waveforms float32 (n_strips, T), hits) from (strip, time bins, raw ADC) traces,
    pedestal-subtracted; traces off the strips (FPN, unmapped: strip < 0) are left out.

    Without a pedestal table the baseline is the median of a channel's first 8 stored samples
    (zero suppression keeps samples before the pulse). A strip is hit when its peak exceeds
    5 sigma of its pedestal (25 ADC without a table).
    """
    traces = [t for t in traces if 0 <= t[0] < n_strips]
    if not traces:
        return None
    top = max((int(np.max(b)) for _, b, _ in traces if len(b)), default=-1)
    n_t = max(512, top + 1)
    wf = np.zeros((n_strips, n_t), np.float32)
    mean = np.full(n_strips, np.nan, np.float32)
    sigma = np.full(n_strips, 5.0, np.float32)
    if pedestals is not None and len(pedestals):
        s = pedestals["strip"].astype(np.int64)
        ok = (s >= 0) & (s < n_strips)
        mean[s[ok]] = pedestals["mean"][ok]
        sigma[s[ok]] = np.maximum(pedestals["sigma"][ok], 1e-3)
    for strip, bins, adc in traces:
        if not len(adc):
            continue
        adc = np.asarray(adc, np.float32)
        base = mean[strip] if np.isfinite(mean[strip]) else float(np.median(adc[:8]))
        wf[strip, np.asarray(bins, np.int64)] = adc - base
    hits = wf.max(axis=1) > 5.0 * sigma
    return wf, hits


class ReplayWorker(SourceWorker):
    """Reads a run file in its own thread and emits it like the live stream."""

    def __init__(
        self,
        path: str | Path,
        speed: float = 1.0,
        n_strips: int = 240,
        event_rate_hz: float = 5.0,
        batch_s: float = 0.05,
        max_backlog: int = 4,
        loop: bool = False,
    ) -> None:
        super().__init__(f"replay:{path}", batch_s, max_backlog)
        self.path = Path(path)
        self.speed = speed
        self.loop = loop
        self.passes = 0  # completed passes over the file
        self.n_strips = n_strips
        self.event_period = 1.0 / event_rate_hz if event_rate_hz > 0 else float("inf")
        self.info.state = "replay"
        self._lut = StripMapping.default().lut()  # the file's own, once it is open

    def run(self) -> None:
        try:
            rf = RunFile(self.path)
        except RunFileError as exc:
            self.info.state, self.info.note = "error", str(exc)
            self._emit_link(time.monotonic(), force=True)
            return
        try:
            self._replay(rf)
        except (OSError, KeyError, ValueError, RuntimeError) as exc:
            self.info.state, self.info.note = "error", f"replay failed: {exc}"
        finally:
            rf.close()
            self._maybe_emit(time.monotonic(), force=True)
            self._emit_link(time.monotonic(), force=True)

    def _replay(self, rf: RunFile) -> None:
        meta = rf.metadata()
        peds = rf.pedestals()
        self._lut = file_strip_lut(meta)
        factory = _Factory(meta.get("detector") or self.path.stem)
        run_number = int(meta["run_number"]) if meta.get("run_number", "").isdigit() else 0
        base = {
            "run_number": run_number,
            "run_type": meta.get("run_type", ""),
            "comment": meta.get("comment", ""),
            "start_time": meta.get("start_time", ""),
            "file": str(self.path),
            "board_alive": True,
            "replay": True,
        }
        file_status = [(float(s.get("time", 0.0)), s) for s in _status_rows(rf)]
        n_total = rf.n_events
        first = rf.events(0, 1)
        t0 = float(row_times(first)[0]) if len(first) else time.time()
        t_last = float(row_times(rf.events(n_total - 1, n_total))[0]) if n_total else t0
        span = max(t_last - t0, 0.0) + LOOP_GAP_S  # clock shift of one pass (loop)
        offset = 0.0  # added to recorded times in this pass
        now = time.monotonic()
        if peds is not None and len(peds):
            arrays = {n: np.ascontiguousarray(peds[n]) for n in peds.dtype.names or ()}
            self._accept(factory.make("pedestal", {"run_number": run_number}, arrays, t0), now)
        cursor, next_status, next_event_wall = 0, t0, 0.0
        counts = np.zeros(4, np.int64)
        last_status_events, last_status_t = 0, t0
        wall0 = time.monotonic()
        block = np.zeros(0, dtype=first.dtype)
        block_start = 0
        while not self._stop:
            now = time.monotonic()
            if self.backlog >= self.max_backlog:
                self._emit_link(now)
                time.sleep(0.01)
                continue
            if self.speed > 0:
                target = t0 + self.speed * (now - wall0) - offset  # in recorded time
            else:
                target = float("inf")
            if cursor >= block_start + len(block) and cursor < n_total:
                block_start, block = cursor, rf.events(cursor, min(cursor + BLOCK_ROWS, n_total))
            rows = block[cursor - block_start :]
            times = row_times(rows)
            take = int(np.searchsorted(times, target, side="right"))
            rows, times = rows[:take], times[:take]
            t_now = offset + min(target, float(times[-1]) if len(times) else target)
            if len(rows):
                done = rows
                if "build_flags" in (rows.dtype.names or ()):
                    done = rows[(rows["build_flags"] & NOT_PROCESSED) == 0]
                arrays = summary_arrays(done)
                arrays["time_s"] += offset
                if "class" in arrays:
                    counts += np.bincount(np.clip(arrays["class"].astype(np.int64), 0, 3),
                                          minlength=4)[:4]  # fmt: skip
                header = {"run_number": run_number, "n": len(done)}
                t_msg = float(times[-1]) + offset
                self._accept(factory.make("summary", header, arrays, t_msg), now)
                if now >= next_event_wall:
                    stored = newest_stored_row(rf.file, cursor, cursor + take)
                    raw = newest_raw_row(rows, cursor)
                    row = max((r for r in (stored, raw) if r is not None), default=None)
                    if row is not None:
                        rec = block[row - block_start]
                        msg = self._event_message(rf, factory, row, rec, peds, offset)
                        if msg is not None:
                            self._accept(msg, now)
                            next_event_wall = now + self.event_period
                cursor += take
            wrap = self.loop and n_total > 0 and cursor >= n_total
            finished = cursor >= n_total and not wrap
            if finished:
                t_now = max(t_now, next_status)
            while next_status <= t_now:
                dt = max(next_status - last_status_t, 1e-9)
                total = self.passes * n_total + cursor
                rate = (total - last_status_events) / dt if next_status > t0 else 0.0
                last_status_events, last_status_t = total, next_status
                status = dict(base, state="idle" if finished else "running")
                status.update(_file_status_at(file_status, next_status - offset))
                status.update(
                    elapsed_s=next_status - t0, events=total, events_per_s=rate,
                    trigger_rate=rate, class_counts=dict(zip(CLASS_NAMES, counts.tolist())),
                    replay_progress=cursor / max(n_total, 1),
                    message="replay finished" if finished else f"replay x{self.speed:g}"
                    + (f" (pass {self.passes + 1})" if self.loop else ""),
                )  # fmt: skip
                self._accept(factory.make("status", status, None, next_status), now)
                next_status += 1.0
            self._maybe_emit(now, force=finished)
            self._emit_link(now)
            if wrap:  # the next pass continues the clock and the event count
                self.passes += 1
                offset += span
                cursor, block_start, block = 0, 0, block[:0]
                continue
            if finished:
                self.info.state = "finished"
                return
            if not take or self.speed > 0:
                time.sleep(TICK_S if take == 0 else 0.005)

    def _event_message(
        self,
        rf: RunFile,
        factory: _Factory,
        row: int,
        rec: np.void,
        peds: np.ndarray | None,
        offset: float = 0.0,
    ) -> Message | None:
        names = rec.dtype.names or ()
        if "build_flags" in names and int(rec["build_flags"]) & SAMPLES_IN_RAW:
            got = raw_event_waveforms(rf.event(row), self._lut, peds, self.n_strips)
        else:
            got = event_waveforms(rf.file, row, peds, self.n_strips)
        if got is None:
            return None
        wf, hits = got
        one = summary_arrays(np.asarray(rec).reshape(1))
        one["time_s"] += offset
        header = {k: v[0].item() for k, v in one.items()}
        header["event_count"] = int(rec["event_count"]) if "event_count" in names else 0
        t = float(one["time_s"][0])
        return factory.make("event", header, {"waveforms": wf, "hits": hits}, t)


def _status_rows(rf: RunFile) -> list[dict]:
    out = []
    rows = rf.file[L.STATUS][:]
    for r in rows:
        try:
            d = json.loads(bytes(r["json"]).rstrip(b"\0") or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(d, dict):
            d.setdefault("time", int(r["time_ns"]) / 1e9)
            out.append(d)
    return out


def _file_status_at(rows: list[tuple[float, dict]], t: float) -> dict:
    """Throughput and loss fields of the newest recorded status snapshot at or before ``t``."""
    best = None
    for ts, d in rows:
        if ts <= t:
            best = d
        else:
            break
    if best is None:
        return {}
    return {k: best[k] for k in _STATUS_KEYS if k in best}
