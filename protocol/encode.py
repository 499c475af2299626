"""Data-frame encoder: events -> 16-bit words -> DFRAMEs -> UDP payloads (PROTOCOL.md §1.3-1.4).

Each event's block of words comes from :mod:`agetdaq.protocol.event_block` (layout and EOE size
convention); this module cuts the words into frames and the frames into datagrams.

Frame cuts (PROTOCOL.md §1.1, §8): a datagram is at most :data:`MAX_DATAGRAM_BYTES` (the 8 192
bytes the card's ring-buffer slot holds and the PC clients read) and its IP packet stays within
the MTU (payload <= MTU - 28). :class:`DataFramer` closes a data frame at an item boundary: before
a channel header, a hit-count word, START_OF_EVENT or END_OF_EVENT, never inside a channel's
samples, the event header (SOE + 5 words + last cells) or EOE + size, because every public client
(feminos-daq ``Frame_Print`` / ``ReadFrame``, rawlib, restDAQ) restarts its channel state at a
frame start. The one exception, as on the card: a channel block longer than a whole frame is cut
where the frame is full (not between a TIME_BIN_IX and its sample). ``cut="word"`` cuts anywhere,
which no card does; the tests use it to keep the decoders tolerant of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numba import njit

from agetdaq.protocol.event import Event
from agetdaq.protocol.event_block import event_words
from agetdaq.protocol.words import (
    CHAN_HIT_CNT,
    CHAN_HIT_IX,
    END_OF_EVENT,
    END_OF_FRAME,
    N_SOE_WORDS,
    START_OF_DFRAME,
    START_OF_EVENT,
    TIME_BIN_IX,
    lead_word,
    start_of_frame,
)

MTU_DEFAULT = 1500
MAX_DATAGRAM_BYTES = 8192
"""Largest UDP payload: the card's ring-buffer slot and the PC clients' read size."""
IP_UDP_HEADER_BYTES = 28  # IPv4 (20, no options) + UDP (8)
LEAD_BYTES = 2
FRAME_OVERHEAD_WORDS = 3  # SOF, size, EOF
MIN_FRAME_BYTES = 2 * (FRAME_OVERHEAD_WORDS + 1)
CUTS = ("channel", "word")


def max_datagram_bytes_for_mtu(mtu: int = MTU_DEFAULT) -> int:
    """Largest UDP payload of a data datagram: min(MTU - 28, 8192) (1500 -> 1472, 9000 -> 8192),
    so that its IP packet is not fragmented and the PC reads it whole."""
    if mtu - IP_UDP_HEADER_BYTES < LEAD_BYTES + MIN_FRAME_BYTES:
        raise ValueError(f"MTU {mtu} leaves no room for a data frame")
    return min(mtu - IP_UDP_HEADER_BYTES, MAX_DATAGRAM_BYTES) & ~1


def max_frame_bytes_for_mtu(mtu: int = MTU_DEFAULT) -> int:
    """Largest DFRAME (SOF ... EOF) in a datagram: the payload less the lead word (1470, 8190)."""
    return max_datagram_bytes_for_mtu(mtu) - LEAD_BYTES


@njit(cache=True, nogil=True)
def opens_item(word: int) -> bool:
    """True for a word a frame may start with: channel header, hit count, SOE, EOE."""
    top = word & 0xC000
    if top in (CHAN_HIT_IX, CHAN_HIT_CNT):
        return True
    low = word & 0xFFF0
    return low in (START_OF_EVENT, END_OF_EVENT)


@njit(cache=True, nogil=True)
def item_ends_kernel(words: np.ndarray, out: np.ndarray) -> int:
    """Write the end (exclusive) of each item of ``words`` into ``out``; return how many.

    An item runs from a word that :func:`opens_item` to the next one; SOE takes its 5 words and
    END_OF_EVENT its size word whatever their bits (a timestamp may look like a channel header).
    """
    n = words.shape[0]
    i = 0
    k = 0
    while i < n:
        low = words[i] & 0xFFF0
        j = i + 1
        if low == START_OF_EVENT:
            j = min(n, i + 1 + N_SOE_WORDS)
        elif low == END_OF_EVENT:
            j = min(n, i + 2)
        while j < n and not opens_item(words[j]):
            j += 1
        out[k] = j
        k += 1
        i = j
    return k


def item_ends(words: np.ndarray) -> np.ndarray:
    """End (exclusive) of each item of ``words`` (see :func:`item_ends_kernel`)."""
    out = np.empty(len(words), dtype=np.int64)
    return out[: item_ends_kernel(np.asarray(words, dtype=np.uint16), out)]


def item_ends_py(words: Sequence[int]) -> list[int]:
    """Plain-Python twin of :func:`item_ends` (the tests compare them)."""

    def opens(x: int) -> bool:
        return x & 0xC000 in (CHAN_HIT_IX, CHAN_HIT_CNT) or x & 0xFFF0 in (
            START_OF_EVENT,
            END_OF_EVENT,
        )

    ends, i, n = [], 0, len(words)
    while i < n:
        skip = {START_OF_EVENT: N_SOE_WORDS, END_OF_EVENT: 1}.get(words[i] & 0xFFF0, 0)
        j = min(n, i + 1 + skip)
        while j < n and not opens(words[j]):
            j += 1
        ends.append(j)
        i = j
    return ends


def split_point(words: np.ndarray, pos: int, room: int) -> int:
    """Where an item longer than a frame is cut: the frame full, but a TIME_BIN_IX stays with
    the sample it announces."""
    cut = pos + room
    if room > 1 and int(words[cut - 1]) & 0xFE00 == TIME_BIN_IX:
        cut -= 1
    return cut


class DataFramer:
    """Packs event words into DFRAMEs ``SOF_D | size | body | EOF`` of at most max_frame_bytes.

    ``eof_on_eoe=True``: every frame ends right after an event (a larger event still spans
    several frames). ``False``: events are packed back to back. ``cut="channel"`` (the card's
    rule, module docstring) closes a frame only between items; ``cut="word"`` fills every frame
    and cuts anywhere. Frames are fresh uint16 arrays; input arrays may be reused by the caller
    after ``add``. Items are found in each ``add`` call's words (pass whole events).
    """

    def __init__(
        self,
        source_id: int = 0,
        max_frame_bytes: int = max_frame_bytes_for_mtu(),
        eof_on_eoe: bool = True,
        version: int = 0,
        cut: str = "channel",
    ) -> None:
        if max_frame_bytes < MIN_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes={max_frame_bytes} < {MIN_FRAME_BYTES}")
        if cut not in CUTS:
            raise ValueError(f"cut={cut!r}: choose one of {', '.join(CUTS)}")
        self.source_id = source_id
        self.eof_on_eoe = eof_on_eoe
        self.max_frame_bytes = max_frame_bytes
        self.cut = cut
        self._sof = start_of_frame(START_OF_DFRAME, source_id, version)
        self._cap = max_frame_bytes // 2 - FRAME_OVERHEAD_WORDS
        self._buf = np.empty(self._cap + FRAME_OVERHEAD_WORDS, dtype=np.uint16)
        self._buf[0] = self._sof
        self._fill = 0  # body words in _buf

    @property
    def body_capacity(self) -> int:
        """Body words per frame."""
        return self._cap

    def _emit(self) -> np.ndarray:
        n = self._fill + FRAME_OVERHEAD_WORDS
        self._buf[1] = 2 * n
        self._buf[n - 1] = END_OF_FRAME
        self._fill = 0
        return self._buf[:n].copy()

    def add(self, words: np.ndarray | Sequence[int]) -> list[np.ndarray]:
        """Append one event's words (or any words); return the frames completed by them."""
        w = np.asarray(words)
        if w.ndim != 1:
            raise ValueError("words must be 1-D")
        if w.dtype != np.uint16:
            if w.size and (int(w.min()) < 0 or int(w.max()) > 0xFFFF):
                raise ValueError("words must be 16-bit")
            w = w.astype(np.uint16)
        ends = item_ends(w) if self.cut == "channel" else None
        frames: list[np.ndarray] = []
        pos, n = 0, w.shape[0]
        while pos < n:
            room = self._cap - self._fill
            if n - pos <= room:
                cut = n
            elif ends is None:
                cut = pos + room
            else:
                k = int(np.searchsorted(ends, pos + room, side="right")) - 1
                cut = int(ends[k]) if k >= 0 else pos
                if cut <= pos:  # the next item does not fit
                    if self._fill:
                        frames.append(self._emit())
                        continue
                    cut = split_point(w, pos, room)  # an item longer than a frame
            self._buf[2 + self._fill : 2 + self._fill + cut - pos] = w[pos:cut]
            self._fill += cut - pos
            pos = cut
            if pos < n or self._fill == self._cap:
                frames.append(self._emit())
        if self.eof_on_eoe and self._fill:
            frames.append(self._emit())
        return frames

    def flush(self) -> list[np.ndarray]:
        """Close the partly filled frame, if any."""
        return [self._emit()] if self._fill else []


def datagram(frame: np.ndarray, seq: int, first: bool = False) -> bytes:
    """UDP payload: lead word (8-bit seq, 0x0100 on the first reply) + frame, little-endian."""
    lead = np.array([lead_word(seq, first)], dtype="<u2").tobytes()
    return lead + np.asarray(frame, dtype="<u2").tobytes()


def encode_events(
    events: Iterable[Event],
    *,
    source_id: int = 0,
    max_frame_bytes: int = max_frame_bytes_for_mtu(),
    eof_on_eoe: bool = True,
    first_seq: int = 0,
    first_flag: bool = True,
    zero_suppressed: bool | None = None,
    cut: str = "channel",
) -> list[bytes]:
    """Events -> datagrams with consecutive sequence numbers (first one flagged if asked)."""
    framer = DataFramer(source_id, max_frame_bytes, eof_on_eoe, cut=cut)
    frames: list[np.ndarray] = []
    for ev in events:
        frames.extend(framer.add(event_words(ev, zero_suppressed=zero_suppressed)))
    frames.extend(framer.flush())
    return [
        datagram(f, (first_seq + i) & 0xFF, first_flag and i == 0) for i, f in enumerate(frames)
    ]
