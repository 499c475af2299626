"""The emulated card's clock: model time since the start and the 50 MHz event timestamp."""

from __future__ import annotations

import time

import numpy as np

TICKS_PER_S = 50_000_000
TICK_MASK = 2**48 - 1  # the timestamp is 48 bits


class CardClock:
    """Model time (s since :meth:`start`) and the timestamp counter, cleared or set by commands."""

    def __init__(self) -> None:
        self.t_start = time.monotonic()
        self.zero = 0.0  # model time at which the counter read ``offset``
        self.offset = 0

    def start(self) -> float:
        """Model time 0 is now (the card starts serving); returns the monotonic start time."""
        self.t_start = time.monotonic()
        return self.t_start

    def model_time(self) -> float:
        return time.monotonic() - self.t_start

    def clear(self) -> None:
        """``clr tstamp`` (and a reboot): the counter restarts from 0 now."""
        self.zero, self.offset = self.model_time(), 0

    def set(self, ticks: int) -> None:
        """``tstamp_init``: the counter reads ``ticks`` now."""
        self.zero, self.offset = self.model_time(), ticks

    def ticks(self, t: float) -> int:
        """Timestamp of model time ``t``."""
        return max(int((t - self.zero) * TICKS_PER_S + self.offset), 0) & TICK_MASK

    def ticks_of(self, times: np.ndarray) -> np.ndarray:
        """Timestamps (int64) of an array of model times."""
        stamps = ((times - self.zero) * TICKS_PER_S + self.offset).astype(np.int64)
        return np.maximum(stamps, 0) & TICK_MASK
