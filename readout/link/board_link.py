"""The DAQ's link to one board: command / reply channel, receiver and credit loop on one socket.

Enters: command lines and scripts from the acquisition; the board's datagrams (through the
:class:`~agetdaq.readout.link.receiver.Receiver`). Leaves: commands and credit requests to the
board, parsed replies to the caller, data frames in the receiver's ring. Counts: commands sent,
stale replies, timeouts (with the receiver's and the credit loop's: :meth:`BoardLink.stats`).

The board type (:mod:`agetdaq.readout.link.board`, default Feminos) supplies the command set, the
reply parser, the credit request format, the pause request, the default port and the datagram size.

* :meth:`BoardLink.command` sends one command line and waits for its single reply (default 4 s, as
  feminos-daq; no retry). At most one command is pending: callers are serialised by a lock.
  Replies carry no sequence number (lead word 0), so a reply that arrives after its command timed
  out would be taken for the next one: queued replies are therefore drained, counted
  (``stale_replies``) and logged before every new command.
* Error codes (< 0) raise :class:`BoardError` with the card's text; a reply that is not a valid
  frame raises it too. Data requests (Feminos: ``daq 0x.. U [0x..]``) get no reply: sent without
  waiting.
* ``link.scripts.run(script)`` executes a :class:`agetdaq.protocol.script.Script`, checked in
  full before anything is sent (:class:`~agetdaq.readout.link.script_runner.ScriptRunner`, which
  also keeps the ``fem`` selection); client ``DAQ`` steps go to :meth:`BoardLink.daq_step` by
  default (starts / stops the credit loop). The errors are those of :mod:`.errors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agetdaq.protocol.command_table import CommandError
from agetdaq.protocol.commands import ProtocolError, Reply
from agetdaq.protocol.script import Step
from agetdaq.readout.link.board import Board, board_type
from agetdaq.readout.link.credit import CreditConfig, CreditLoop
from agetdaq.readout.link.errors import BoardError, BoardInterrupted, BoardTimeout
from agetdaq.readout.link.receiver import DEFAULT_RCVBUF, DEFAULT_SLOTS, RcvbufReport, Receiver
from agetdaq.readout.link.script_runner import ScriptRunner
from agetdaq.readout.link.udp import open_board_socket

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 4.0


STOP_POLL_S = 0.05  # how often an interruptible wait looks at its stop request


class BoardLink:
    """One board: socket, :class:`Receiver` (data ring + replies), :class:`CreditLoop`, command
    channel. ``board`` = the board type or its name (default Feminos); ``port`` None = its
    default port, ``slot_size`` None = its largest datagram."""

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        local: tuple[str, int] = ("", 0),
        rcvbuf: int = DEFAULT_RCVBUF,
        force_rcvbuf: bool = False,
        n_slots: int = DEFAULT_SLOTS,
        slot_size: int | None = None,
        credit: CreditConfig | None = None,
        check_frames: bool = True,
        fem_index: int = 0,
        board: Board | str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        try:
            self.board = board_type(board)
        except ValueError as exc:
            raise BoardError(str(exc)) from None
        if port is None:
            port = self.board.default_port
        self.host, self.port = host, port
        self.address = f"{host}:{port}"
        self.timeout = timeout
        if not 0 < port < 65536:
            raise ValueError(f"board port must be 1..65535, not {port}")
        try:
            self._sock, self.rcvbuf_report = open_board_socket(
                (host, port), local=local, rcvbuf=rcvbuf, force_rcvbuf=force_rcvbuf
            )
        except OSError as exc:
            raise BoardError(f"cannot open a UDP socket to board {host}:{port}: {exc}") from None
        self.credit = CreditLoop(self._sock.send, credit, board=self.board)
        self.receiver = Receiver(
            self._sock,
            n_slots=n_slots,
            slot_size=slot_size,
            sink=self.credit,
            check_frames=check_frames,
            name=self.address,
            board=self.board,
        )
        self._cmd_lock = threading.Lock()
        self._closed = False
        self.scripts = ScriptRunner(self, fem_index)  # keeps the `fem` selection
        self.commands_sent = 0
        self.stale_replies = 0
        self.timeouts = 0
        self.tap: Callable[[str, bytes, int], None] | None = None  # see set_tap

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def rcvbuf(self) -> RcvbufReport:
        return self.rcvbuf_report

    @property
    def local_address(self) -> tuple[str, int]:
        return self._sock.getsockname()

    def start(self) -> BoardLink:
        if not self.receiver.running:
            self.receiver.start()
        return self

    def close(self) -> None:
        """Pause the board if data was flowing (best effort), stop the capture thread and close
        the socket (idempotent)."""
        if self._closed:
            return
        if self.credit.running:
            try:
                self.stop_data(timeout=min(self.timeout, 1.0))
            except BoardError as exc:
                log.warning("%s: could not pause the board on close: %s", self.address, exc)
        self._closed = True
        self.credit.stop()
        self.receiver.stop()
        self._sock.close()

    def __enter__(self) -> BoardLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands ----------------------------------------------------------------------------
    def command(
        self,
        line: str,
        timeout: float | None = None,
        *,
        check: bool = True,
        validate_line: bool = True,
        stop: threading.Event | None = None,
    ) -> Reply | None:
        """Send one command line and return its reply (None for a data request, which gets none).
        The line is checked against the board type's command set first unless ``validate_line``
        is False (then a reply is always awaited). ``check`` raises :class:`BoardError` on an
        error code; ``stop`` set cuts the wait for the reply short (:class:`BoardInterrupted`)."""
        if not validate_line:
            return self.exchange(" ".join(line.split()), True, timeout, check, stop)
        try:
            parsed = self.board.validate(line)
        except CommandError as exc:
            raise BoardError(
                f"not sent to {self.address}: {exc.message}", code=exc.code, text=line
            ) from None
        return self.exchange(parsed.text, self.board.expects_reply(parsed), timeout, check, stop)

    def exchange(
        self,
        text: str,
        wants_reply: bool,
        timeout: float | None = None,
        check: bool = True,
        stop: threading.Event | None = None,
    ) -> Reply | None:
        """Send a command already checked against the board type's command set, and await its
        reply if it ``wants_reply`` (:meth:`command` without the check)."""
        if self._closed:
            raise BoardError(f"link to {self.address} is closed")
        if not text:
            raise BoardError(f"empty command for board {self.address}")
        wait = self.timeout if timeout is None else timeout
        with self._cmd_lock:
            if not self.receiver.running:
                self.receiver.start()
            stale = self.receiver.drain_replies()
            if stale:  # one line however many (a confused board can send hundreds)
                self.stale_replies += len(stale)
                first = repr(stale[0])
                first = first if len(first) <= 120 else first[:117] + "..."
                log.warning("%s: %d stale repl%s discarded before %r (first: %s)", self.address,
                            len(stale), "y" if len(stale) == 1 else "ies", text, first)  # fmt: skip
            self._send(text.encode("ascii"))
            self.commands_sent += 1
            if not wants_reply:
                return None
            got = self._wait_reply(wait, stop)
        if got is None:
            if stop is not None and stop.is_set():
                raise BoardInterrupted(
                    f"stopped while waiting for {self.address} to answer {text!r}"
                )
            self.timeouts += 1
            raise BoardTimeout(f"no reply from board {self.address} to {text!r} within {wait:g} s")
        try:
            reply = self.board.parse_reply(got.datagram)
        except ProtocolError as exc:
            raise BoardError(
                f"malformed reply from board {self.address} to {text!r}: {exc}"
            ) from None
        log.debug("%s %r -> %r", self.address, text, reply.text or reply.kind)
        if check and reply.error < 0:
            raise BoardError(
                f"board {self.address} refused {text!r} (error {reply.error}): "
                f"{reply.text.strip()}",
                code=reply.error,
                text=reply.text,
            )
        return reply

    def _wait_reply(self, wait: float, stop: threading.Event | None):
        """The reply, or None after ``wait`` s or once ``stop`` is set."""
        if stop is None:
            return self.receiver.get_reply(wait)
        end = time.monotonic() + wait
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return None
            got = self.receiver.get_reply(min(left, STOP_POLL_S))
            if got is not None:
                return got
        return None

    def set_tap(self, tap: Callable[[str, bytes | memoryview, int], None] | None) -> None:
        """Hand every datagram sent and received to ``tap(direction, payload, monotonic_ns)``
        (direction "tx" or "rx"; see :mod:`agetdaq.readout.link.pcap_tap`). Call before
        :meth:`start`."""
        self.tap = tap
        self.credit.tap = tap
        self.receiver.tap = tap

    def _send(self, datagram: bytes) -> None:
        if self.tap is not None:
            self.tap("tx", datagram, time.monotonic_ns())
        try:
            self._sock.send(datagram)
        except ConnectionRefusedError:
            # An ICMP error left by an earlier datagram surfaces on this send: try once more.
            try:
                self._sock.send(datagram)
            except OSError as exc:
                raise BoardError(f"cannot send to board {self.address}: {exc}") from None
        except OSError as exc:
            raise BoardError(f"cannot send to board {self.address}: {exc}") from None

    # ---- data --------------------------------------------------------------------------------
    def start_data(self, budget_bytes: int | None = None) -> None:
        """Open the credit window (``DAQ -1`` = no budget, ``DAQ N`` = N bytes)."""
        self.start()
        self.credit.start(budget_bytes)

    def stop_data(self, timeout: float | None = None) -> Reply | None:
        """Stop granting and pause the board (its pause request, which is answered; Feminos:
        ``daq 0xFFFFFF F``)."""
        self.credit.stop()
        return self.command(self.board.pause_request, timeout)

    def daq_step(self, step: Step) -> None:
        """Default handler of client ``DAQ`` steps: -1 / N start, 0 stops, bare logs progress."""
        n = step.args.get("bytes")
        if n is None:
            rx = self.receiver.counters
            log.info(
                "%s DAQ: %d frames, %d bytes, lost %d, malformed %d",
                self.address,
                rx.data_frames,
                rx.data_bytes,
                self.credit.counters.lost_replies + rx.lost,
                rx.malformed,
            )
        elif n == 0:
            self.stop_data()
        else:
            self.start_data(None if n < 0 else n)

    def stats(self) -> dict[str, object]:
        return {
            "board": self.address,
            "commands_sent": self.commands_sent,
            "stale_replies": self.stale_replies,
            "timeouts": self.timeouts,
            "receiver": self.receiver.stats(),
            "credit": self.credit.snapshot(),
            "rcvbuf_requested": self.rcvbuf_report.requested,
            "rcvbuf_granted": self.rcvbuf_report.granted,
        }
