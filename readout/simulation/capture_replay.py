"""A capture played back as a fake board: a run reproduced exactly from a pcap file.

:func:`~agetdaq.readout.simulation.captured_board.load_capture` reads one board's side of a capture
(``agetdaq run --pcap``, Wireshark, tcpdump): the commands sent to it, the reply each one got, and
the data frames it sent. :class:`CaptureReplay` then listens on a UDP address and behaves like that
board towards a DAQ (``agetdaq run --bec HOST:PORT``):

* **Commands** are answered from the capture, matched by command text (whitespace normalised) in
  order: the k-th ``sca enable 1`` gets the reply the k-th one got; once a text's replies are used
  up its last reply is repeated (a replayed run may ask ``version`` more often). Replies are
  paired with commands as the DAQ pairs them, one pending command at a time: a command followed
  by another before any reply timed out, and its replayed twin gets no reply either (counted
  ``unanswered``). A command absent from the capture gets
  ``-1 Fem(NN) replay: ... is not in the capture`` (counted ``unmatched``).
* **Data** frames are sent as they were captured, original lead words included, to the sender of
  the last ``daq`` request, while the credit allows: ``daq 0xN F|B [0xSS]`` adds N frames or
  bytes to the allowance, each frame takes 1 or its length in bytes, ``daq 0xFFFFFF F`` pauses
  (allowance 0) and is answered from the capture. A bare ``daq`` is answered from the live
  allowance (``send_credits: N U``), as the card does.
* **Segments.** The frames between two captured pause replies form one segment (one run of a
  ``serve`` session). A pause in the replay that comes after some frames of the current segment
  were sent moves to the next segment; frames left in it are counted ``skipped``. A pause before
  any data (the configuration scripts start with one) does not.
* **Speed**: ``speed`` 1 keeps the captured spacing of the frames, 2 halves it, 0 sends as fast as
  the credit allows. After a stall longer than ``max_lag_s`` (e.g. waiting for credit) the
  schedule restarts from the frame at hand instead of bursting to catch up.

[I] The card's request-sequence bookkeeping (first request resets its reply index) is not
re-enacted: the frames keep their captured lead words, so a DAQ that grants credit the way the
original one did sees the original sequence, and the decoder the original datagrams.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agetdaq.protocol.commands import DAQ_PAUSE, encode_cframe, reply_text
from agetdaq.protocol.pcap import Address
from agetdaq.readout.simulation.captured_board import (
    CapturedBoard,
    ReplayError,
    load_capture,
    normalise,
    parse_daq,
)

__all__ = [
    "MAX_LAG_S",
    "CaptureReplay",
    "CapturedBoard",
    "ReplayCounters",
    "ReplayError",
    "load_capture",
    "normalise",
    "parse_daq",
]

log = logging.getLogger(__name__)

MAX_LAG_S = 0.05


@dataclass
class ReplayCounters:
    commands: int = 0
    replies: int = 0
    unmatched: int = 0
    unanswered: int = 0
    requests: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_skipped: int = 0
    segments_done: int = 0


class CaptureReplay:
    """A fake board on a UDP socket, replaying a :class:`CapturedBoard`; one thread."""

    def __init__(
        self,
        capture: CapturedBoard | str | Path,
        listen: Address = ("127.0.0.1", 1122),
        *,
        speed: float = 1.0,
        board: Address | None = None,
        max_lag_s: float = MAX_LAG_S,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as the credit allows), not {speed}")
        self.capture = (
            capture if isinstance(capture, CapturedBoard) else load_capture(capture, board)
        )
        self.listen = listen
        self.speed = speed
        self.max_lag_s = max_lag_s
        self.counters = ReplayCounters()
        self.address: Address = listen
        self.allowance = 0
        self.unit = "F"
        self.data_addr: Address | None = None
        self.last_command = time.monotonic()
        self._used: dict[str, int] = {}
        self._seg = 0
        self._pos = 0
        self._anchor: tuple[float, float] | None = None  # (monotonic, capture time)
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> CaptureReplay:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        try:
            sock.bind(self.listen)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._sock = sock
        self.address = sock.getsockname()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="pcap-replay", daemon=True)
        self._thread.start()
        log.info(
            "replaying board %s:%d (%d frames in %d segments, %d command texts) on %s:%d",
            *self.capture.board,
            self.capture.n_frames,
            len(self.capture.segments),
            len(self.capture.replies),
            *self.address,
        )
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> CaptureReplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        """Every data frame of the capture has been sent or skipped."""
        segs = self.capture.segments
        return self._seg >= len(segs) or (self._seg == len(segs) - 1 and self._pos >= len(segs[-1]))

    def stats(self) -> dict[str, object]:
        return {
            "board": f"{self.capture.board[0]}:{self.capture.board[1]}",
            "listen": f"{self.address[0]}:{self.address[1]}",
            "frames_in_capture": self.capture.n_frames,
            "segments": len(self.capture.segments),
            "done": self.done,
            "allowance": self.allowance,
            **self.counters.__dict__,
        }

    # ---- loop --------------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._sock is not None
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([self._sock], [], [], self._timeout())
                if readable:
                    self._commands()
                self._send_data()
        finally:
            self._sock.close()

    def _timeout(self) -> float:
        if self._seg >= len(self.capture.segments) or self.allowance <= 0 or not self.data_addr:
            return 0.05
        if self._pos >= len(self.capture.segments[self._seg]):
            return 0.05
        due = self._due()
        return 0.0 if due is None else min(0.05, max(0.0, due - time.monotonic()))

    def _due(self) -> float | None:
        """Monotonic time the next frame is due (None = now)."""
        if self.speed <= 0 or self._anchor is None:
            return None
        t_cap = self.capture.segments[self._seg][self._pos][0]
        return self._anchor[0] + (t_cap - self._anchor[1]) / self.speed

    def _commands(self) -> None:
        sock = self._sock
        assert sock is not None
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP error of an earlier send
                log.debug("recvfrom: %s", exc)
                continue
            self.last_command = time.monotonic()
            self.counters.commands += 1
            reply = self._answer(normalise(data), addr)
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, addr)
                self.counters.replies += 1

    def _answer(self, text: str, addr: Address) -> bytes | None:
        req = parse_daq(text)
        if req is not None:
            self.data_addr = addr
            if req.bare:
                msg = f"send_credits: {self.allowance} {self.unit}"
                sid = self.capture.source_id
                return encode_cframe(reply_text(0, sid, msg), 0, source_id=sid)
            if not req.pause:
                self.counters.requests += 1
                self.unit = req.unit
                self.allowance = min(self.allowance + req.amount, DAQ_PAUSE)
                return None
            self.allowance = 0
            self._end_segment()
        return self._captured_reply(text)

    def _captured_reply(self, text: str) -> bytes | None:
        replies = self.capture.replies.get(text)
        if not replies:
            self.counters.unmatched += 1
            log.warning("replay: %r is not in the capture", text)
            sid = self.capture.source_id
            msg = reply_text(-1, sid, f"replay: {text[:120]!r} is not in the capture")
            return encode_cframe(msg, -1, source_id=sid)
        k = self._used.get(text, 0)
        self._used[text] = k + 1
        reply = replies[min(k, len(replies) - 1)]
        if reply is None:
            self.counters.unanswered += 1  # unanswered in the capture: unanswered here
        return reply

    def _end_segment(self) -> None:
        if self._seg >= len(self.capture.segments) or self._pos == 0:
            return
        self.counters.frames_skipped += len(self.capture.segments[self._seg]) - self._pos
        self._next_segment()

    def _next_segment(self) -> None:
        self._seg += 1
        self._pos = 0
        self._anchor = None
        self.counters.segments_done += 1

    def _send_data(self) -> None:
        sock, addr = self._sock, self.data_addr
        if addr is None or sock is None:
            return
        for _ in range(256):
            if self._seg >= len(self.capture.segments) or self.allowance <= 0:
                return
            seg = self.capture.segments[self._seg]
            if self._pos >= len(seg):
                return  # segment sent: wait for the pause that ends it
            t_cap, datagram = seg[self._pos]
            now = time.monotonic()
            if self.speed > 0:
                due = self._due()
                if due is None or now - due > self.max_lag_s:
                    self._anchor = (now, t_cap)
                elif due > now:
                    return
            try:
                sock.sendto(datagram, addr)
            except BlockingIOError:
                return  # send buffer full: try again on the next turn
            except OSError as exc:
                log.debug("sendto %s: %s", addr, exc)
            self._pos += 1
            self.counters.frames_sent += 1
            self.counters.bytes_sent += len(datagram)
            self.allowance -= 1 if self.unit == "F" else len(datagram)
