"""Runs kept as datagrams only: legacy .aqs runs and captures of board traffic.

Their events are decoded on every pass over the file (``agetdaq.protocol.decode``, one decoder
per board), in file order, and are not built: an event row's id is its position, its
``build_flags`` NOT_PROCESSED and its features zero. ``raw_first`` / ``raw_count`` index
:meth:`DecodedRun.datagrams`, which for an .aqs run are its data frames with the lead words the
card would have given them (0x0100 on the first, then the sequence number).
"""

from __future__ import annotations

import itertools
import re
from abc import abstractmethod
from collections import deque
from collections.abc import Hashable, Iterator
from pathlib import Path

import numpy as np

from agetdaq.protocol import decode_kernel as dk
from agetdaq.protocol import words as w
from agetdaq.protocol.aqs import AqsFormatError, AqsReader
from agetdaq.protocol.decode import DecodedBatch, StreamDecoder, pack_datagrams
from agetdaq.protocol.event import DecodeError, Event
from agetdaq.protocol.pcap import Address, PcapFormatError, is_reply, new_stats, read_pcap
from agetdaq.readout.schema import EVENT_DTYPE, NOT_PROCESSED
from agetdaq.readout.store.errors import DamagedRunFileError
from agetdaq.readout.store.records import header_rows
from agetdaq.readout.store.run import Run, RunInfo, start_text

DECODE_BATCH = 1024  # datagrams per decoder call
_HISTORY = 8  # decoder calls whose datagram indices are kept (an event spanning more: raw_first -1)
_RUN_NUMBER = re.compile(r"R(\d{3,})")
_WAITING = 256  # datagrams kept of a source that has not sent a board frame yet
_DAMAGE_COUNTS = ("truncated", "truncated_frames", "garbage_words")  # reader counters of damage


class _Board:
    """One source's decoder, its pending datagrams, and file index and time of its recent ones."""

    def __init__(self, has_lead: bool, check_seq: bool) -> None:
        self.decoder = StreamDecoder(check_seq=check_seq, has_lead=has_lead)
        self.pending: list[bytes] = []
        self.index: list[int] = []
        self.times: list[float] = []
        self.seen = 0  # datagrams handed to the decoder
        self.history: deque[tuple[int, np.ndarray, np.ndarray]] = deque(maxlen=_HISTORY)

    def add(self, payload: bytes, index: int, t: float) -> None:
        self.pending.append(payload)
        self.index.append(index)
        self.times.append(t)

    def decode(self, final: bool = False) -> list[tuple[DecodedBatch, np.ndarray, np.ndarray]]:
        """Decoded batches with, per event, the file index of its first and last datagram and the
        time of its first."""
        out = []
        if self.pending:
            self.history.append(
                (self.seen, np.array(self.index, np.int64), np.array(self.times, np.float64))
            )
            batch = self.decoder.decode(*pack_datagrams(self.pending))
            self.seen += len(self.pending)
            self.pending, self.index, self.times = [], [], []
            out.append(batch)
        if final:
            out.append(self.decoder.flush())
        return [(b, *self._resolve(b)) for b in out if len(b)]

    def _resolve(self, batch: DecodedBatch) -> tuple[np.ndarray, np.ndarray]:
        ev = batch.events_table
        base = self.history[0][0]
        index = np.concatenate([h[1] for h in self.history])
        times = np.concatenate([h[2] for h in self.history])
        ends = []
        for col in (dk.EV_FIRST_DGRAM, dk.EV_LAST_DGRAM):
            k = ev[:, col] - base
            ok = (k >= 0) & (k < len(index))
            ends.append(np.where(ok, index[np.clip(k, 0, len(index) - 1)], -1))
        k = np.clip(ev[:, dk.EV_FIRST_DGRAM] - base, 0, len(times) - 1)
        return np.stack(ends, axis=1), times[k]


class DecodedRun(Run):
    """A file of datagrams whose events are decoded on every pass (see the module docstring)."""

    has_lead = True
    check_seq = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._n_events: int | None = None
        self._n_datagrams: int | None = None
        self._errors: dict[str, int] = {}
        self._source: dict[str, int] = {}

    @abstractmethod
    def _payloads(self, counts: dict[str, int]) -> Iterator[tuple[Hashable, bytes, float]]:
        """(source, payload as the decoder takes it, unix time) of every data datagram."""

    def _new_counts(self) -> dict[str, int]:
        return {}

    def _batches(self) -> Iterator[tuple[DecodedBatch, np.ndarray, np.ndarray]]:
        """One pass: decoded batches with the datagram span and time of every event."""
        counts = self._new_counts()
        boards: dict[Hashable, _Board] = {}
        try:
            for i, (src, payload, t) in enumerate(self._payloads(counts)):
                b = boards.get(src)
                if b is None:
                    b = boards[src] = _Board(self.has_lead, self.check_seq)
                b.add(payload, i, t)
                if len(b.pending) >= DECODE_BATCH:
                    yield from b.decode()
            for b in boards.values():
                yield from b.decode(final=True)
        finally:  # also when the caller stops early: the counters cover what was read
            errors = dict.fromkeys((e.name for e in DecodeError), 0)
            for b in boards.values():
                for name, n in b.decoder.error_counts().items():
                    errors[name] += n
            self._errors, self._source = errors, counts
            self._note_damage(counts)

    def _pass(
        self, start: int, stop: int | None
    ) -> Iterator[tuple[DecodedBatch, int, np.ndarray, np.ndarray]]:
        """(batch, its first event's position, spans, times) of the batches overlapping
        ``start:stop``; counts the events when the pass reads the whole file."""
        pos = 0
        for batch, spans, times in self._batches():
            n = len(batch)
            if stop is not None and pos >= stop:
                return  # the rest is not read: the counters cover what was
            if pos + n > start:
                yield batch, pos, spans, times
            pos += n
        self._n_events = pos

    @property
    def n_events(self) -> int:
        if self._n_events is None:
            for _ in self._pass(1 << 62, None):
                pass
        return int(self._n_events or 0)

    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        parts = []
        for batch, pos, spans, times in self._pass(start, stop):
            rows = header_rows(
                batch,
                np.arange(pos, pos + len(batch), dtype=np.uint64),
                NOT_PROCESSED,
                (times * 1e9).astype(np.uint64),
            )
            rows["raw_first"] = np.maximum(spans[:, 0], 0)
            rows["raw_count"] = np.where(spans.min(axis=1) >= 0, spans[:, 1] - spans[:, 0] + 1, 0)
            a, b = max(start - pos, 0), None if stop is None else max(stop - pos, 0)
            parts.append(rows[a:b])
        return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)

    def events(self, start: int = 0, stop: int | None = None, raw: bool = False) -> Iterator[Event]:
        for batch, pos, _, _ in self._pass(start, stop):
            a, b = max(start - pos, 0), None if stop is None else max(stop - pos, 0)
            yield from batch.events()[a:b]

    @property
    def n_datagrams(self) -> int:
        if self._n_datagrams is None:
            self._n_datagrams = sum(1 for _ in self.datagrams())
        return self._n_datagrams

    def datagrams(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        return itertools.islice(self._datagrams(), start, stop)

    def _datagrams(self) -> Iterator[bytes]:
        counts = self._new_counts()
        try:
            for i, (_, payload, _) in enumerate(self._payloads(counts)):
                yield self._as_datagram(payload, i)
        finally:
            self._source = counts
            self._note_damage(counts)

    def _note_damage(self, counts: dict[str, int]) -> None:
        """What the last pass found cut or unreadable in the file (``damage``)."""
        found = {k: int(counts.get(k, 0)) for k in _DAMAGE_COUNTS}
        self.damage[:] = [f"{k.replace('_', ' ')}: {n}" for k, n in found.items() if n]

    def _as_datagram(self, payload: bytes, index: int) -> bytes:
        """The datagram (lead word included) of the ``index``-th payload."""
        return payload

    def counters(self) -> dict[str, dict[str, int]]:
        return {"decoder_errors": dict(self._errors), "source": dict(self._source)}


class AqsRun(DecodedRun):
    """A legacy feminos-daq run: the .aqs file and its ``-NNN`` sub-run files."""

    format = "aqs"
    has_lead = False  # .aqs frames have no lead word
    check_seq = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self.header = AqsReader(path).header
        except AqsFormatError as exc:
            raise DamagedRunFileError(f"{path}: {exc}") from None
        except OSError as exc:
            raise DamagedRunFileError(f"{path}: {exc.strerror or exc}") from None
        m = _RUN_NUMBER.search(path.name)
        self._number = int(m.group(1)) if m else 0

    @property
    def info(self) -> RunInfo:
        return RunInfo(
            path=self.path,
            format=self.format,
            run_number=self._number,
            run_type="",
            comment="",
            detector="",
            start_unix=float(self.header.start_time),
            format_version=None,
            software_version="feminos-daq",
            closed=True,
        )

    @property
    def metadata(self) -> dict[str, str]:
        return {
            "run_number": str(self._number),
            "start_time": start_text(self.header.start_time),
            "source_file": str(self.path),
            "source_format": self.format,
            "aqs_name_length": str(self.header.name_length),
        }

    def _payloads(self, counts: dict[str, int]) -> Iterator[tuple[Hashable, bytes, float]]:
        reader = AqsReader(self.path)
        t = float(self.header.start_time)
        try:
            for frame in reader.frames():
                yield 0, frame, t
        finally:
            counts.update(reader.counts)

    def _as_datagram(self, payload: bytes, index: int) -> bytes:
        """A frame with the lead word the card would have given it (module docstring)."""
        lead = 0x0100 if index == 0 else index & 0xFF
        return lead.to_bytes(2, "little") + payload


def _is_frame(payload: bytes) -> bool:
    """A board frame (data, monitoring or command reply) behind a lead word."""
    return len(payload) >= 4 and (payload[2] | payload[3] << 8) & 0xFE00 in (
        w.START_OF_DFRAME,
        w.START_OF_MFRAME,
        w.START_OF_CFRAME,
    )


class PcapRun(DecodedRun):
    """The board traffic of a capture (``agetdaq run --pcap``, Wireshark, tcpdump).

    The data datagrams are what the boards sent, command replies left out (counted); a board is
    a source that sends board frames, from UDP ``port`` or at ``board`` when given. Several
    boards are decoded each with its own decoder, in capture order.
    """

    format = "pcap"

    def __init__(
        self, path: Path, port: int | None = None, board: tuple[str, int] | None = None
    ) -> None:
        super().__init__(path)
        self.port, self.board = port, board
        try:
            first = next(iter(read_pcap(path)), None)
        except PcapFormatError as exc:
            raise DamagedRunFileError(str(exc)) from None
        except OSError as exc:
            raise DamagedRunFileError(f"{path}: {exc.strerror or exc}") from None
        self._t0 = first.timestamp if first is not None else 0.0
        self._boards: dict[Address, int] | None = None

    def _new_counts(self) -> dict[str, int]:
        return {**new_stats(), "replies": 0, "other_datagrams": 0, "boards": 0}

    def _wanted(self, src: Address) -> bool:
        if self.board is not None:  # host "" or port 0: any
            return self.board[0] in ("", src[0]) and self.board[1] in (0, src[1])
        return self.port is None or src[1] == self.port

    def sources_seen(self) -> dict[Address, tuple[int, bool]]:
        """Every UDP source of the capture: (datagrams, sent a board frame?), whatever was
        chosen (to name them when the chosen one sent nothing)."""
        seen: dict[Address, tuple[int, bool]] = {}
        for rec in read_pcap(self.path, new_stats()):
            n, frames = seen.get(rec.src, (0, False))
            seen[rec.src] = (n + 1, frames or _is_frame(rec.payload))
        return seen

    def _payloads(self, counts: dict[str, int]) -> Iterator[tuple[Hashable, bytes, float]]:
        known: set[Address] = set()  # sources that sent a board frame
        data: set[Address] = set()
        waiting: dict[Address, list[tuple[bytes, float]]] = {}  # until the source sends a frame
        chosen = self.board is not None or self.port is not None
        try:
            for rec in read_pcap(self.path, counts):
                src, payload = rec.src, rec.payload
                if not self._wanted(src):
                    continue
                if src not in known and _is_frame(payload):
                    known.add(src)
                    for early, t in waiting.pop(src, ()):
                        data.add(src)
                        yield src, early, t
                if is_reply(payload):
                    counts["replies"] += 1
                elif chosen or src in known:
                    data.add(src)
                    yield src, payload, rec.timestamp
                elif len(held := waiting.setdefault(src, [])) < _WAITING:
                    held.append((payload, rec.timestamp))
                else:
                    counts["other_datagrams"] += 1
        finally:
            counts["boards"] = len(data)
            counts["other_datagrams"] += sum(len(v) for v in waiting.values())

    def has_board_traffic(self) -> bool:
        """Whether any data datagram of a (chosen) board is in the capture: stops at the first
        one, so a capture with board traffic costs a few records, not a pass."""
        payloads = self._payloads(self._new_counts())
        try:
            return next(payloads, None) is not None
        finally:
            payloads.close()

    def boards(self) -> dict[Address, int]:
        """The boards of the capture with the number of data datagrams each sent."""
        if self._boards is None:
            found: dict[Address, int] = {}
            for src, _, _ in self._payloads(self._new_counts()):
                found[src] = found.get(src, 0) + 1
            self._boards = found
        return dict(self._boards)

    @property
    def info(self) -> RunInfo:
        return RunInfo(
            path=self.path,
            format=self.format,
            run_number=0,
            run_type="",
            comment="",
            detector="",
            start_unix=self._t0,
            format_version=None,
            software_version="",
            closed=True,
        )

    @property
    def metadata(self) -> dict[str, str]:
        meta = {
            "run_number": "0",
            "start_time": start_text(self._t0),
            "source_file": str(self.path),
            "source_format": self.format,
        }
        if self.board is not None:
            meta["board"] = f"{self.board[0]}:{self.board[1]}"
        return meta
