"""The card's data-request bookkeeping (PROTOCOL.md §3.4, §3.6), free of sockets.

* ``daq 0xHHHHHH F|B [0xSS]`` adds to the send allowance (frames or bytes); ``daq 0xFFFFFF U``
  pauses (allowance 0, reply "daq paused"); bare ``daq`` reads the credits back.
* A request without a sequence number resets the expected request index and the reply index to 0
  and flags the next data datagram as first (lead bit 0x0100). Gaps in request numbers add to
  ``daq_missing``; a request with the expected number that arrives after a card timeout adds to
  ``rx_daq_delayed``.
* F mode: no new credit within ``cred_wait_time`` ms after a send, with the allowance used up,
  counts ``rx_daq_timeout`` and applies the loss policy (0 ignore, 1 re-credit one frame, 2 re-send
  the last datagram); after 4 timeouts without new credit the card gives up until the next credit.

Choices [I]: a B-mode allowance is charged the UDP payload size (lead word + frame), the size the
PC's credit loop counts; a datagram larger than the remaining byte allowance is still sent and the
allowance floors at 0; the unit of the latest request is the unit of the whole allowance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from agetdaq.protocol.words import LEAD_FIRST_REPLY

MAX_TIMEOUTS = 4
POLICY_IGNORE, POLICY_RECREDIT, POLICY_RESEND = 0, 1, 2


@dataclass
class CmdStatistics:
    """The nine ``cmd stat`` counters, in reply order."""

    rx_cmd: int = 0
    rx_daq: int = 0
    rx_daq_timeout: int = 0
    rx_daq_delayed: int = 0
    daq_missing: int = 0
    cmd_errors: int = 0
    tx_replies: int = 0
    tx_daq: int = 0
    tx_daq_resent: int = 0

    def values(self) -> list[int]:
        return [v & 0xFFFFFFFF for v in asdict(self).values()]

    def clear(self) -> None:
        for name in asdict(self):
            setattr(self, name, 0)


class DataFlow:
    """Send allowance, request / reply sequence numbers and the credit timeout of one card."""

    def __init__(self, cred_wait_ms: int = 200, loss_policy: int = POLICY_IGNORE) -> None:
        self.stats = CmdStatistics()
        self.cred_wait_ms = cred_wait_ms
        self.loss_policy = loss_policy
        self.bytes_sent = 0
        self.reset()

    def reset(self) -> None:
        """Power-up state of the data path (also used for an emulated reboot)."""
        self.allowance = 0
        self.unit = "F"
        self.expected_req = 0
        self.reply_seq = 0
        self.first_pending = True
        self._armed = False
        self._last_event_t = 0.0
        self._timeouts = 0

    # ---- requests ------------------------------------------------------------------------------

    def request(self, amount: int, unit: str, seq: int | None, now: float) -> str | None:
        """Apply ``daq 0xHHHHHH U [0xSS]``; return the reply text or None (no reply)."""
        self.stats.rx_daq += 1
        if seq is None:
            self.expected_req = 0
            self.reply_seq = 0
            self.first_pending = True
        else:
            gap = (seq - self.expected_req) & 0xFF
            if gap:
                self.stats.daq_missing += gap
            elif self._timeouts:
                self.stats.rx_daq_delayed += 1
            self.expected_req = (seq + 1) & 0xFF
        if amount == 0xFFFFFF:
            self.allowance = 0
            self.unit = unit
            self._armed = False
            self._timeouts = 0
            return "daq paused"
        self.unit = unit
        self.allowance += amount
        self._last_event_t = now
        self._timeouts = 0
        return None

    def credits_text(self) -> str:
        return f"send_credits: {self.allowance} {self.unit}"

    # ---- sending -------------------------------------------------------------------------------

    def n_sendable(self, sizes: np.ndarray) -> int:
        """How many of the next datagrams (payload sizes in bytes) the allowance lets out."""
        if self.allowance <= 0 or sizes.size == 0:
            return 0
        if self.unit == "F":
            return int(min(self.allowance, sizes.size))
        before = np.cumsum(sizes) - sizes  # allowance used before each datagram
        return int(np.searchsorted(before, self.allowance, side="left"))

    def take_leads(self, n: int) -> np.ndarray:
        """Lead words for the next n data datagrams (uint16), advancing the reply index."""
        leads = (self.reply_seq + np.arange(n, dtype=np.int64)) & 0xFF
        if n and self.first_pending:
            leads[0] |= LEAD_FIRST_REPLY
            self.first_pending = False
        self.reply_seq = (self.reply_seq + n) & 0xFF
        return leads.astype(np.uint16)

    def sent(self, n: int, n_bytes: int, now: float) -> None:
        """Charge the allowance for n datagrams of n_bytes in total."""
        if n <= 0:
            return
        if self.unit == "F":
            self.allowance = max(0, self.allowance - n)
        else:
            self.allowance = max(0, self.allowance - n_bytes)
        self.stats.tx_daq += n
        self.bytes_sent += n_bytes
        if self.unit == "F":
            self._armed = True
            self._last_event_t = now

    # ---- timeouts ------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """Time of the next credit timeout check, or None when not waiting for credit."""
        if not self._armed or self.unit != "F" or self.allowance > 0:
            return None
        return self._last_event_t + self.cred_wait_ms / 1000.0

    def poll_timeout(self, now: float) -> int | None:
        """Apply a due credit timeout; return the loss policy applied (None: nothing due)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return None
        self.stats.rx_daq_timeout += 1
        self._timeouts += 1
        self._last_event_t = now
        if self._timeouts >= MAX_TIMEOUTS:
            self._armed = False  # give up until the next credit
        if self.loss_policy == POLICY_RECREDIT:
            self.allowance += 1
        elif self.loss_policy == POLICY_RESEND:
            self.stats.tx_daq_resent += 1
        return self.loss_policy
