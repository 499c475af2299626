"""The emulated card's dead-time and hit-count histograms (``hbusy``, ``hhit``)."""

from __future__ import annotations

import numpy as np

N_CHIPS = 4
HBUSY_BINS = 1024
HBUSY_BIN_US = 10.0  # [I] dead-time histogram bin width
HHIT_BINS = 128


class CardHistograms:
    """Busy time per event (``hbusy``) and hit channels per chip and event (``hhit``)."""

    def __init__(self) -> None:
        self.hbusy = np.zeros(HBUSY_BINS, dtype=np.int64)
        self.hhit = np.zeros((N_CHIPS, HHIT_BINS), dtype=np.int64)

    def add_busy(self, busy_s: float) -> None:
        self.hbusy[min(int(busy_s * 1e6 / HBUSY_BIN_US), HBUSY_BINS - 1)] += 1

    def add_busy_many(self, busy_s: np.ndarray) -> None:
        b = np.minimum((busy_s * 1e6 / HBUSY_BIN_US).astype(np.int64), HBUSY_BINS - 1)
        np.add.at(self.hbusy, b, 1)

    def add_hits(self, hits: np.ndarray) -> None:
        """One event: ``hits[c]`` hit channels on chip c."""
        self.hhit[np.arange(N_CHIPS), np.minimum(hits, HHIT_BINS - 1)] += 1

    def add_hits_many(self, hits: np.ndarray) -> None:
        """Many events: ``hits[k, c]`` hit channels of event k on chip c."""
        for c in range(N_CHIPS):
            np.add.at(self.hhit[c], np.minimum(hits[:, c], HHIT_BINS - 1), 1)

    def clear_busy(self) -> None:
        self.hbusy[:] = 0

    def clear_hits(self, chips: list[int]) -> None:
        self.hhit[chips] = 0
