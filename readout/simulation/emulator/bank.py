"""Pre-generated event bank, replayed when real-time generation cannot keep up.

At start-up the bank asks the physics model for N events: a physics pool with kinds drawn in the
proportion of the scenario rates (X-rays and muons), and a pedestal pool (a quarter of N, at least
one event) for generator triggers. The raw waveforms are kept; the card-processed bodies are
encoded lazily for the current card settings (:meth:`EventBank.encode`, re-run after any
configuration change), so a replay is a copy with new header words (:mod:`framering`).
Replayed events keep their truth; gain drift is frozen at the bank's generation time.
"""

from __future__ import annotations

import logging

import numpy as np

from agetdaq.readout.simulation.emulator import truth as truth_mod
from agetdaq.readout.simulation.emulator.cardproc import N_CHIPS, CardProcessor

log = logging.getLogger(__name__)

KIND_CODES = {"pedestal": 0, "xray": 1, "muon": 2}


class EventBank:
    """Raw events with truth; encoded bodies for the settings of :attr:`version`."""

    def __init__(self, physics, n_events: int, seed: int = 0, time_s: float = 0.0) -> None:
        rng = np.random.default_rng([seed, 7])
        sc = physics.scenario
        rates = np.array([sc.fe55.rate_hz, sc.muon.rate_hz], dtype=np.float64)
        n_ped = max(1, n_events // 4)
        n_phys = n_events - n_ped if rates.sum() > 0 else 0
        kinds = ["pedestal"] * n_ped
        if n_phys > 0:
            p = rates / rates.sum()
            kinds += [("xray", "muon")[k] for k in rng.choice(2, size=n_phys, p=p)]
        self.kinds = kinds
        self.kind_code = np.array([KIND_CODES[k] for k in kinds], dtype=np.int8)
        n = len(kinds)
        self.raw = np.empty((n, N_CHIPS, 68, physics.n_samples), dtype=np.uint16)
        self.fragments: list[str] = []
        for k, kind in enumerate(kinds):
            ev = physics.generate(kind, time_s)
            self.raw[k] = ev.raw
            self.fragments.append(truth_mod.fragment(ev.truth))
        self.last_cells = rng.integers(0, 512, size=(n, N_CHIPS)).astype(np.int64)
        self.pedestal_index = np.flatnonzero(self.kind_code == 0)
        self.physics_index = np.flatnonzero(self.kind_code > 0)
        self.version = -1
        self.words = np.zeros(0, dtype=np.uint16)
        self.offsets = np.zeros(n + 1, dtype=np.int64)
        self.n_read_max = np.zeros(n, dtype=np.int64)
        self.hit_counts = np.zeros((n, N_CHIPS), dtype=np.int64)
        log.info("event bank: %d events (%d pedestal, %d physics)", n, n_ped, n - n_ped)

    def __len__(self) -> int:
        return len(self.kinds)

    def encode(
        self, proc: CardProcessor, base: np.ndarray, level: np.ndarray, up: bool, version: int
    ) -> None:
        """Card-process every bank event with the processor's current settings."""
        if version == self.version:
            return
        bodies = []
        for k in range(len(self)):
            proc.discriminate(self.raw[k], base, level, up)
            bodies.append(proc.body(self.raw[k], self.last_cells[k]))
            self.n_read_max[k] = int(proc.stats[:, 0].max())
            self.hit_counts[k] = proc.stats[:, 1]
        self.offsets[1:] = np.cumsum([b.shape[0] for b in bodies])
        self.words = np.concatenate(bodies) if bodies else np.zeros(0, dtype=np.uint16)
        self.version = version

    def pick(self, physics: bool, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random bank indices for n triggers of the given class (physics or generator)."""
        pool = self.physics_index if physics and self.physics_index.size else self.pedestal_index
        return pool[rng.integers(0, pool.size, size=n)]
