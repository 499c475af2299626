"""The legacy feminos-daq ``.aqs`` binary run file (PROTOCOL.md §5.1).

Layout of each (sub-run) file::

    u16 0x0100 | L   L = run-string length + its NUL, made even (the string is NOT written)
    i32 LE           Unix time of the run start
    frames           SOF ... EOF as received, without the 2-byte lead word; with the event
                     builder on, each built event is wrapped in bare 0x0009 ... 0x0008

Readers split the body with each frame's size word and skip the built-event markers, NULL words and
SOBE_SIZE (0x0006 + u32) items. A file larger than ``chunk_bytes`` continues in ``<stem>-NNN.aqs``.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agetdaq.protocol import words as w
from agetdaq.protocol.event import Event

HEADER_BYTES = 6
_CHUNK_RE = re.compile(r"^(?P<stem>.*)-(?P<n>\d{3})$")
_FRAME_BATCH = 2048  # frames handed to the decoder at once


class AqsFormatError(ValueError):
    """Not an .aqs file (bad header)."""


@dataclass(frozen=True)
class AqsHeader:
    """The 6-byte header: the run-string length field (string not stored) and the run start."""

    name_length: int  # L: run-string length with its NUL, made even
    start_time: int  # Unix seconds


def header_bytes(run_string: str, start_time: int) -> bytes:
    """The 6 header bytes for a run string (only its length is recorded) and a start time."""
    length = len(run_string.encode("latin-1", "replace")) + 1
    length += length % 2
    if length > 0xFF:
        raise ValueError(f"run string of {length - 1} characters: the header holds at most 254")
    return struct.pack("<Hi", w.ASCII_MSG_LEN | length, int(start_time))


def parse_header(data: bytes) -> AqsHeader:
    """Header of an .aqs file from its first 6 bytes."""
    if len(data) < HEADER_BYTES:
        raise AqsFormatError(f"file of {len(data)} bytes is shorter than the 6-byte .aqs header")
    prefix, start = struct.unpack_from("<Hi", data)
    if prefix & 0xFF00 != w.ASCII_MSG_LEN:
        raise AqsFormatError(f"first word 0x{prefix:04x} is not an .aqs header (0x01LL)")
    return AqsHeader(prefix & 0xFF, start)


def chunk_path(path: str | Path, index: int) -> Path:
    """Path of sub-run ``index``: ``x-000.aqs`` -> ``x-003.aqs``; ``x.aqs`` -> ``x-003.aqs``."""
    path = Path(path)
    m = _CHUNK_RE.match(path.stem)
    if index == 0 and not m:
        return path
    stem = m["stem"] if m else path.stem
    return path.with_name(f"{stem}-{index:03d}{path.suffix}")


def chunk_paths(path: str | Path) -> list[Path]:
    """The file and the existing sub-run files after it (``x-000.aqs``, ``x-001.aqs`` ...)."""
    path = Path(path)
    m = _CHUNK_RE.match(path.stem)
    first = int(m["n"]) if m else 0
    out = [path]
    index = first + 1
    while (nxt := chunk_path(path, index)).exists():
        out.append(nxt)
        index += 1
    return out


class AqsWriter:
    """Writes frames to an .aqs file.

    With ``chunk_bytes``, a frame that would take the file past it opens the next ``-NNN`` sub-run
    file first; a built event (0x0009 ... 0x0008) is never split, so it may pass the limit.
    """

    def __init__(
        self,
        path: str | Path,
        run_string: str = "",
        start_time: int | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        self.base = Path(path)
        self.start_time = int(time.time() if start_time is None else start_time)
        self._header = header_bytes(run_string, self.start_time)
        self.chunk_bytes = chunk_bytes
        self.paths: list[Path] = []
        self._index = 0
        self._in_event = False
        self._open_next()

    def _open_next(self) -> None:
        m = _CHUNK_RE.match(self.base.stem)
        p = chunk_path(self.base, self._index + (int(m["n"]) if m else 0))
        self._file = open(p, "wb")  # noqa: SIM115 (closed in close())
        self._file.write(self._header)
        self._size = HEADER_BYTES
        self.paths.append(p)
        self._index += 1

    def _roll(self, incoming: int) -> None:
        if (
            self.chunk_bytes
            and not self._in_event
            and self._size > HEADER_BYTES
            and self._size + incoming > self.chunk_bytes
        ):
            self._file.close()
            self._open_next()

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._size += len(data)

    def write_frame(self, frame: bytes) -> None:
        """One frame, SOF ... EOF (no lead word)."""
        if len(frame) < 2 or len(frame) % 2:
            raise ValueError(f"a frame has an even length >= 2, not {len(frame)}")
        self._roll(len(frame))
        self._write(bytes(frame))

    def write_datagram(self, datagram: bytes) -> None:
        """A datagram as received: its lead word is dropped."""
        self.write_frame(bytes(datagram)[2:])

    def begin_built_event(self) -> None:
        """Bare START_OF_BUILT_EVENT (0x0009) before the frames of one built event."""
        self._roll(4)
        self._write(struct.pack("<H", w.START_OF_BUILT_EVENT))
        self._in_event = True

    def end_built_event(self) -> None:
        """Bare END_OF_BUILT_EVENT (0x0008) after them."""
        self._write(struct.pack("<H", w.END_OF_BUILT_EVENT))
        self._in_event = False

    def write_events(self, events: Iterable[Event], built: bool = False, **encode_kw: Any) -> None:
        """Encode events into frames (``agetdaq.protocol.encode.encode_events``) and write them.

        ``built`` wraps each event in the built-event markers; its frames then end with the
        event (``eof_on_eoe``), as the feminos-daq builder needs. Otherwise ``encode_kw`` may
        also pack events across frames with ``eof_on_eoe=False``.
        """
        from agetdaq.protocol.encode import encode_events

        if not built:
            for d in encode_events(events, **{"eof_on_eoe": True, **encode_kw}):
                self.write_datagram(d)
            return
        for ev in events:
            datagrams = encode_events([ev], **{**encode_kw, "eof_on_eoe": True})
            self.begin_built_event()
            for d in datagrams:
                self.write_datagram(d)
            self.end_built_event()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> AqsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _new_counts() -> dict[str, int]:
    return dict.fromkeys(
        (
            "files",
            "data_frames",
            "other_frames",
            "built_event_markers",
            "sobe_items",
            "null_words",
            "garbage_words",
            "truncated_frames",
        ),
        0,
    )


@dataclass
class AqsReader:
    """Reads the frames and events of an .aqs run (following its sub-run files if asked)."""

    path: Path
    follow_chunks: bool = True
    counts: dict[str, int] = field(default_factory=_new_counts)
    decoder_errors: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        with open(self.path, "rb") as f:
            self.header = parse_header(f.read(HEADER_BYTES))

    @property
    def files(self) -> list[Path]:
        return chunk_paths(self.path) if self.follow_chunks else [self.path]

    def frames(self) -> Iterator[bytes]:
        """Data frames (SOF_D ... EOF) in file order; everything else is counted and skipped."""
        for p in self.files:
            self.counts["files"] += 1
            with open(p, "rb") as f:
                parse_header(f.read(HEADER_BYTES))
                if os.fstat(f.fileno()).st_size <= HEADER_BYTES:
                    continue
                with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    yield from split_frames(mm, HEADER_BYTES, self.counts)

    def events(self) -> Iterator[Event]:
        """Decoded events (``agetdaq.protocol.decode.StreamDecoder`` with has_lead=False)."""
        from agetdaq.protocol.decode import StreamDecoder, pack_datagrams

        decoder = StreamDecoder(check_seq=False, has_lead=False)
        batch: list[bytes] = []
        for frame in self.frames():
            batch.append(frame)
            if len(batch) >= _FRAME_BATCH:
                yield from decoder.decode(*pack_datagrams(batch)).events()
                batch.clear()
        if batch:
            yield from decoder.decode(*pack_datagrams(batch)).events()
        yield from decoder.flush().events()
        self.decoder_errors = decoder.error_counts()


def split_frames(buf: bytes | mmap.mmap, start: int, counts: dict[str, int]) -> Iterator[bytes]:
    """Walk an .aqs body from byte ``start``: yield data frames, count and skip the rest."""
    n = len(buf) - (len(buf) - start) % 2
    pos = start
    u16 = struct.Struct("<H").unpack_from
    while pos + 2 <= n:
        word = u16(buf, pos)[0]
        prefix = word & 0xFE00
        if prefix in (w.START_OF_DFRAME, w.START_OF_MFRAME):
            size = u16(buf, pos + 2)[0] if pos + 4 <= n else 0
            if size < 6 or size % 2:
                counts["garbage_words"] += 1
                pos += 2
                continue
            if pos + size > n:
                counts["truncated_frames"] += 1
                size = n - pos
            frame = bytes(buf[pos : pos + size])
            if prefix == w.START_OF_DFRAME:
                counts["data_frames"] += 1
                yield frame
            else:
                counts["other_frames"] += 1
            pos += size
        elif prefix == w.START_OF_CFRAME:
            counts["other_frames"] += 1
            pos = _skip_cframe(buf, pos, n)
        elif word in (w.START_OF_BUILT_EVENT, w.END_OF_BUILT_EVENT):
            counts["built_event_markers"] += 1
            pos += 2
        elif word == w.SOBE_SIZE:
            counts["sobe_items"] += 1
            pos += 6
        elif word == w.NULL_WORD:
            counts["null_words"] += 1
            pos += 2
        else:
            counts["garbage_words"] += 1
            pos += 2
    if pos < len(buf):
        counts["garbage_words"] += 1  # a dangling odd byte or cut word


def _skip_cframe(buf: bytes | mmap.mmap, pos: int, n: int) -> int:
    """Position after a C frame (SOF, error, ASCII_MSG_LEN, text + NUL (+pad), EOF)."""
    if pos + 6 > n:
        return n
    msg = struct.unpack_from("<H", buf, pos + 4)[0]
    if msg & 0xFF00 != w.ASCII_MSG_LEN:
        return pos + 6
    return min(n, pos + 6 + (((msg & 0xFF) + 2) & ~1) + 2)


def read_aqs(path: str | Path, follow_chunks: bool = True) -> list[Event]:
    """All events of an .aqs run."""
    return list(AqsReader(Path(path), follow_chunks).events())
