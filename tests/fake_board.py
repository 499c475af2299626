"""A tiny stand-in for a BEC on 127.0.0.1, for the receiver / credit / board-link unit tests.

It answers commands with CFRAMEs (agetdaq.protocol.commands.encode_cframe), keeps a send allowance
that ``daq`` requests add to (``daq 0xFFFFFF`` clears it, a request without sequence number flags
the next data frame as first), and sends DFRAMEs built from agetdaq.protocol.words while it has
allowance. It records every datagram it received. Not the emulator: no physics, no command
semantics.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

from agetdaq.protocol import words as w
from agetdaq.protocol.commands import encode_cframe, reply_text


def dframe(seq: int, first: bool = False, n_body: int = 4, fill: int = 0, card: int = 0) -> bytes:
    """A data datagram: lead | SOF_D | size | ``n_body`` ADC words (value ``fill``) | EOF."""
    body = [w.adc_sample((fill + i) & 0xFFF) for i in range(n_body)]
    frame = [w.start_of_frame(w.START_OF_DFRAME, card), 0, *body, w.END_OF_FRAME]
    frame[1] = 2 * len(frame)
    words_ = [w.lead_word(seq, first), *frame]
    return struct.pack(f"<{len(words_)}H", *words_)


class FakeBoard:
    """UDP responder thread. ``replies`` maps a command's first word to (error, message);
    commands whose first word is in ``silent`` get no reply."""

    def __init__(
        self,
        *,
        total_frames: int | None = None,
        n_body: int = 4,
        unit_default: str = "F",
        replies: dict[str, tuple[int, str]] | None = None,
        silent: set[str] | None = None,
        skip_seqs: set[int] | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = self.sock.getsockname()
        self.total_frames = total_frames
        self.n_body = n_body
        self.replies = replies or {}
        self.silent = silent or set()
        self.skip_seqs = skip_seqs or set()  # frame indices "lost in the network" (not sent)
        self.received: list[bytes] = []
        self.requests: list[tuple[int, str, int | None]] = []
        self.allowance = 0
        self.max_allowance = 0
        self.unit = unit_default
        self.frames_sent = 0
        self.frame_index = 0
        self._rep_ix = 0
        self._first = True
        self.client: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-board", daemon=True)

    def __enter__(self) -> FakeBoard:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def send_raw(self, datagram: bytes, to: tuple[str, int]) -> None:
        self.sock.sendto(datagram, to)

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.002)
        return predicate()

    def _frames_left(self) -> bool:
        return self.total_frames is None or self.frame_index < self.total_frames

    def _run(self) -> None:
        while not self._stop.is_set():
            sending = self.allowance > 0 and self.client is not None and self._frames_left()
            ready, _, _ = select.select([self.sock], [], [], 0 if sending else 0.01)
            if ready:
                data, addr = self.sock.recvfrom(65536)
                self.received.append(data)
                self._handle(data, addr)
            elif sending:
                self._send_frame()

    def _send_frame(self) -> None:
        assert self.client is not None
        datagram = dframe(self._rep_ix & 0xFF, self._first, self.n_body, self.frame_index)
        self._first = False
        self._rep_ix += 1
        if self.frame_index not in self.skip_seqs:
            self.sock.sendto(datagram, self.client)
            self.frames_sent += 1
        self.frame_index += 1
        self.allowance -= 1 if self.unit == "F" else len(datagram)

    def _handle(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("ascii", "replace").strip()
        words = text.split()
        if not words or words[0] in self.silent:
            return
        if words[0] == "daq" and len(words) >= 3:
            amount, unit = int(words[1], 16), words[2]
            seq = int(words[3], 16) if len(words) > 3 else None
            self.requests.append((amount, unit, seq))
            self.client = addr
            if amount == 0xFFFFFF:
                self.allowance = 0
                self.sock.sendto(encode_cframe(reply_text(0, 0, "daq paused")), addr)
                return
            self.unit = unit
            if seq is None:
                self._rep_ix = 0
                self._first = True
            self.allowance += amount
            self.max_allowance = max(self.max_allowance, self.allowance)
            return
        error, msg = self.replies.get(words[0], (0, f"{text} ok"))
        self.sock.sendto(encode_cframe(reply_text(error, 0, msg), error), addr)
