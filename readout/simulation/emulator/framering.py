"""The card's ring buffer: events -> DFRAMEs -> ready-to-send datagrams in one uint16 arena.

Each datagram sits in the arena as ``lead | SOF_D | size | body... | EOF``; the lead word is written
when the datagram is sent (its sequence number is only known then). An event block is ``SOE(type) ts
ts ts cnt cnt | body | EOE size``, the layout of :mod:`agetdaq.protocol.encode`, with the EOE size =
bytes of the whole block. ``eof_on_eoe`` closes the frame after each event; otherwise events are
packed back to back, and a partly filled frame waits for more data or for
:meth:`FrameRing.close_open` (the ``rbf timed`` flush).

Frames are cut as the card cuts them (the rule of :mod:`agetdaq.protocol.encode`, whose
``DataFramer`` gives the same frames): only between items, never inside a channel's samples, so
the PC clients that restart their channel state at each frame read every channel whole. The one
exception is the card's too: a channel block longer than a whole frame (a zero-suppressed channel
with many short runs at MTU 1500) continues in the next frame. The frame size comes from
:func:`~agetdaq.protocol.encode.max_frame_bytes_for_mtu`: datagrams of at most 8 192 bytes whose
IP packets fit the MTU.

The numba kernels take the event body (see :mod:`agetdaq.readout.simulation.emulator.cardproc`) and
rewrite only the header words, so pre-encoded bank events are replayed with new timestamps and
counters without Python work per event.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from agetdaq.protocol.encode import FRAME_OVERHEAD_WORDS, opens_item
from agetdaq.protocol.event_block import EOE_SIZE_OFFSET_BYTES
from agetdaq.protocol.words import END_OF_FRAME, START_OF_DFRAME, TIME_BIN_IX, start_of_frame

# state vector layout
S_WPOS, S_OPEN, S_FILL, S_NDG = range(4)
EVENT_OVERHEAD_WORDS = 8  # SOE + 5 header words + EOE + size


@njit(cache=True, nogil=True)
def frames_bound(n: int, cap: int) -> int:
    """Most frames ``n`` words take, a partly open frame before them included: two frames in a
    row hold more than ``cap`` words (the second was opened for an item the first had no room
    for), so at most 2n/cap + 2."""
    return 2 * n // cap + 3


@njit(cache=True, nogil=True)
def _close(buf: np.ndarray, dg: np.ndarray, st: np.ndarray) -> None:
    start = st[S_OPEN]
    p = st[S_WPOS]
    buf[p] = END_OF_FRAME
    p += 1
    buf[start + 2] = 2 * (st[S_FILL] + 3)
    n = st[S_NDG]
    dg[n, 0] = start
    dg[n, 1] = p
    st[S_NDG] = n + 1
    st[S_WPOS] = p
    st[S_OPEN] = -1
    st[S_FILL] = 0


@njit(cache=True, nogil=True)
def _begin_item(buf: np.ndarray, dg: np.ndarray, st: np.ndarray, cap: int, n: int) -> None:
    """Close the open frame when an item of ``n`` words does not fit in what is left of it."""
    if st[S_OPEN] >= 0 and st[S_FILL] > 0 and n > cap - st[S_FILL]:
        _close(buf, dg, st)


@njit(cache=True, nogil=True)
def _put(
    buf: np.ndarray, dg: np.ndarray, st: np.ndarray, sof: int, cap: int, src: np.ndarray
) -> None:
    """Append words, opening frames as needed; only an item longer than a frame is cut, and
    never between a TIME_BIN_IX and its sample."""
    n = src.shape[0]
    i = 0
    while i < n:
        if st[S_OPEN] < 0:
            p = st[S_WPOS]
            buf[p] = 0
            buf[p + 1] = sof
            buf[p + 2] = 0
            st[S_OPEN] = p
            st[S_WPOS] = p + 3
            st[S_FILL] = 0
        room = cap - st[S_FILL]
        take = min(room, n - i)
        if take < n - i and take > 1 and (src[i + take - 1] & 0xFE00) == TIME_BIN_IX:
            take -= 1
        p = st[S_WPOS]
        buf[p : p + take] = src[i : i + take]
        st[S_WPOS] = p + take
        st[S_FILL] += take
        i += take
        if i < n or st[S_FILL] == cap:
            _close(buf, dg, st)


@njit(cache=True, nogil=True)
def append_event_kernel(
    buf: np.ndarray,
    dg: np.ndarray,
    st: np.ndarray,
    sof: int,
    cap: int,
    eof_on_eoe: bool,
    event_type: int,
    timestamp: int,
    event_count: int,
    body: np.ndarray,
) -> None:
    """Frame one event (header + body + EOE) into the arena; the caller checked the space.

    Frames close between items only (:func:`agetdaq.protocol.encode.opens_item`): the header
    with the last-cell words that follow it, each channel block, each hit count, EOE + size.
    """
    hdr = np.empty(6, dtype=np.uint16)
    hdr[0] = 0x00F0 | (event_type & 0x7)
    hdr[1] = timestamp & 0xFFFF
    hdr[2] = (timestamp >> 16) & 0xFFFF
    hdr[3] = (timestamp >> 32) & 0xFFFF
    hdr[4] = event_count & 0xFFFF
    hdr[5] = (event_count >> 16) & 0xFFFF
    size = (2 * (body.shape[0] + EVENT_OVERHEAD_WORDS) + EOE_SIZE_OFFSET_BYTES) & 0xFFFFF
    eoe = np.empty(2, dtype=np.uint16)
    eoe[0] = 0x00E0 | (size >> 16)
    eoe[1] = size & 0xFFFF
    n = body.shape[0]
    j = 0
    while j < n and not opens_item(body[j]):
        j += 1
    _begin_item(buf, dg, st, cap, 6 + j)
    _put(buf, dg, st, sof, cap, hdr)
    if j > 0:
        _put(buf, dg, st, sof, cap, body[:j])
    while j < n:
        i = j
        j += 1
        while j < n and not opens_item(body[j]):
            j += 1
        _begin_item(buf, dg, st, cap, j - i)
        _put(buf, dg, st, sof, cap, body[i:j])
    _begin_item(buf, dg, st, cap, 2)
    _put(buf, dg, st, sof, cap, eoe)
    if eof_on_eoe and st[S_OPEN] >= 0:
        _close(buf, dg, st)


@njit(cache=True, nogil=True)
def append_bank_kernel(
    buf: np.ndarray,
    dg: np.ndarray,
    st: np.ndarray,
    sof: int,
    cap: int,
    eof_on_eoe: bool,
    types: np.ndarray,
    stamps: np.ndarray,
    counts: np.ndarray,
    index: np.ndarray,
    words: np.ndarray,
    offsets: np.ndarray,
    limit_words: int,
) -> int:
    """Frame bank events ``index[k]`` (bodies ``words[offsets[i]:offsets[i+1]]``) until the arena
    would pass ``limit_words`` or the datagram table fills; return the number framed."""
    max_dg = dg.shape[0]
    for k in range(index.shape[0]):
        i = index[k]
        n = offsets[i + 1] - offsets[i] + EVENT_OVERHEAD_WORDS
        need = n + frames_bound(n, cap) * (FRAME_OVERHEAD_WORDS + 1)
        if st[S_WPOS] + need > limit_words or st[S_NDG] + frames_bound(n, cap) > max_dg:
            return k
        append_event_kernel(
            buf,
            dg,
            st,
            sof,
            cap,
            eof_on_eoe,
            types[k],
            stamps[k],
            counts[k],
            words[offsets[i] : offsets[i + 1]],
        )
    return index.shape[0]


class FrameRing:
    """Arena of framed datagrams waiting for credit; bounded by the card memory ``capacity``."""

    def __init__(self, source_id: int, max_frame_bytes: int, capacity_bytes: int) -> None:
        self.sof = start_of_frame(START_OF_DFRAME, source_id)
        self.cap = max_frame_bytes // 2 - FRAME_OVERHEAD_WORDS
        self.capacity_words = capacity_bytes // 2
        self.eof_on_eoe = True
        self.buf = np.zeros(4 * self.capacity_words + (1 << 20), dtype=np.uint16)
        self.bytes_view = memoryview(self.buf.view(np.uint8))
        self.dg = np.zeros((self.capacity_words // 4 + 1024, 2), dtype=np.int64)
        self.st = np.zeros(4, dtype=np.int64)
        self.read = 0  # first unsent datagram
        self.reset()

    def reset(self) -> None:
        """Lose everything (rbf reset, reboot)."""
        self.st[:] = (0, -1, 0, 0)
        self.read = 0

    @property
    def n_ready(self) -> int:
        return int(self.st[S_NDG]) - self.read

    @property
    def has_open(self) -> bool:
        return int(self.st[S_OPEN]) >= 0 and int(self.st[S_FILL]) > 0

    def pending_words(self) -> int:
        first = int(self.dg[self.read, 0]) if self.n_ready else int(self.st[S_OPEN])
        return 0 if first < 0 else int(self.st[S_WPOS]) - first

    def free_words(self) -> int:
        return self.capacity_words - self.pending_words()

    def _compact(self) -> None:
        """Move the unsent tail to the arena start (called when all but the tail was sent)."""
        first = int(self.dg[self.read, 0]) if self.n_ready else int(self.st[S_OPEN])
        wpos = int(self.st[S_WPOS])
        if first < 0:
            self.st[S_WPOS] = 0
        else:
            self.buf[: wpos - first] = self.buf[first:wpos]
            self.st[S_WPOS] = wpos - first
            if self.st[S_OPEN] >= 0:
                self.st[S_OPEN] -= first
        n = self.n_ready
        self.dg[:n] = self.dg[self.read : self.read + n] - first
        self.st[S_NDG] = n
        self.read = 0

    def _room(self, words: int) -> bool:
        if self.pending_words() + words > self.capacity_words:
            return False
        limit = self.buf.shape[0]
        if int(self.st[S_WPOS]) + words > limit or int(self.st[S_NDG]) + 64 > self.dg.shape[0]:
            self._compact()
        return int(self.st[S_WPOS]) + words <= limit

    def event_words_needed(self, body_words: int) -> int:
        n = body_words + EVENT_OVERHEAD_WORDS
        return n + frames_bound(n, self.cap) * (FRAME_OVERHEAD_WORDS + 1)

    def add(self, event_type: int, timestamp: int, event_count: int, body: np.ndarray) -> bool:
        """Frame one event; False (nothing written) when the card memory is full."""
        need = self.event_words_needed(body.shape[0])
        n_frames = frames_bound(body.shape[0] + EVENT_OVERHEAD_WORDS, self.cap)
        if n_frames > self.dg.shape[0] - int(self.st[S_NDG]) - 64:
            self._compact()
        if not self._room(need):
            return False
        append_event_kernel(
            self.buf,
            self.dg,
            self.st,
            self.sof,
            self.cap,
            self.eof_on_eoe,
            event_type,
            timestamp,
            event_count,
            body,
        )
        return True

    def add_bank(
        self,
        types: np.ndarray,
        stamps: np.ndarray,
        counts: np.ndarray,
        index: np.ndarray,
        words: np.ndarray,
        offsets: np.ndarray,
    ) -> int:
        """Frame bank events while the card memory has room; return how many were framed."""
        if not self._room(0):
            return 0
        wpos = int(self.st[S_WPOS])
        if (
            int(self.st[S_NDG]) * 2 > self.dg.shape[0]
            or wpos + self.free_words() > self.buf.shape[0]
        ):
            self._compact()
        limit = min(
            self.buf.shape[0], int(self.st[S_WPOS]) + self.free_words()
        )  # card memory bound
        return int(
            append_bank_kernel(
                self.buf,
                self.dg,
                self.st,
                self.sof,
                self.cap,
                self.eof_on_eoe,
                types,
                stamps,
                counts,
                index,
                words,
                offsets,
                limit,
            )
        )

    def close_open(self) -> bool:
        """Close a partly filled frame (ring-buffer timeout flush); True if one was closed."""
        if not self.has_open:
            return False
        if int(self.st[S_NDG]) >= self.dg.shape[0]:
            self._compact()
        p = int(self.st[S_WPOS])
        start = int(self.st[S_OPEN])
        self.buf[p] = END_OF_FRAME
        self.buf[start + 2] = 2 * (int(self.st[S_FILL]) + 3)
        n = int(self.st[S_NDG])
        self.dg[n] = (start, p + 1)
        self.st[:] = (p + 1, -1, 0, n + 1)
        return True

    def ready(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) word offsets of up to ``limit`` ready datagrams (not yet consumed)."""
        n = min(self.n_ready, limit)
        rows = self.dg[self.read : self.read + n]
        return rows[:, 0], rows[:, 1]

    def consume(self, n: int) -> None:
        self.read += n
        if self.read == int(self.st[S_NDG]) and int(self.st[S_OPEN]) < 0:
            self.st[S_WPOS] = 0
            self.st[S_NDG] = 0
            self.read = 0
