"""The board's UDP socket: one per board, connected, with a large receive buffer read back.

Enters: the board's address and the buffer size wanted. Leaves: a bound, connected socket and a
:class:`RcvbufReport` of the size the kernel granted.

A short ``SO_RCVBUF`` grant (``net.core.rmem_max`` too low) is logged as a warning with the sysctl
that fixes it (FIELD-NOTES); :func:`set_rcvbuf` can retry with ``SO_RCVBUFFORCE`` (root).
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass

log = logging.getLogger("agetdaq.readout.link.receiver")

DEFAULT_RCVBUF = 64 << 20
SO_RCVBUFFORCE = 33  # Linux; needs CAP_NET_ADMIN


@dataclass(frozen=True)
class RcvbufReport:
    """Receive-buffer size asked for and what the kernel really gave (read back)."""

    requested: int
    granted: int
    rmem_max: int | None
    forced: bool = False

    @property
    def short(self) -> bool:
        return self.granted < self.requested

    def warning(self) -> str | None:
        """Operator-facing text when the grant is short, else None."""
        if not self.short:
            return None
        limit = f"{self.rmem_max} bytes" if self.rmem_max is not None else "unknown"
        return (
            f"SO_RCVBUF: requested {self.requested} bytes, the kernel granted {self.granted} "
            f"(net.core.rmem_max = {limit}); bursts may be dropped by the kernel. "
            f"Raise it with: sysctl -w net.core.rmem_max={self.requested}"
        )


def read_rmem_max() -> int | None:
    try:
        with open("/proc/sys/net/core/rmem_max", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def set_rcvbuf(sock: socket.socket, requested: int, force: bool = False) -> RcvbufReport:
    """Request ``requested`` bytes of receive buffer, read the size back and warn when short.
    ``force`` retries with SO_RCVBUFFORCE (root / CAP_NET_ADMIN) past ``rmem_max``."""
    if requested <= 0:
        raise ValueError(f"receive buffer size must be positive, got {requested}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, requested)
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    forced = False
    if granted < requested and force and sys.platform.startswith("linux"):
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, requested)
            granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            forced = True
        except OSError as exc:
            log.info("SO_RCVBUFFORCE not permitted (%s)", exc)
    report = RcvbufReport(requested, granted, read_rmem_max(), forced)
    if (msg := report.warning()) is not None:
        log.warning(msg)
    return report


def open_board_socket(
    board: tuple[str, int],
    *,
    local: tuple[str, int] = ("", 0),
    rcvbuf: int = DEFAULT_RCVBUF,
    force_rcvbuf: bool = False,
    connect: bool = True,
) -> tuple[socket.socket, RcvbufReport]:
    """UDP socket for one board: bound to ``local`` (ephemeral port by default), receive buffer
    set and read back, connected to ``board`` unless ``connect`` is False."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        report = set_rcvbuf(sock, rcvbuf, force_rcvbuf)
        sock.bind(local)
        if connect:
            sock.connect(board)
    except OSError:
        sock.close()
        raise
    return sock, report
