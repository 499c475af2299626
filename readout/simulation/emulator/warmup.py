"""Compile (or load from numba's cache) every kernel of the emulated card before it serves."""

from __future__ import annotations

import numpy as np

from agetdaq.protocol.encode import max_frame_bytes_for_mtu
from agetdaq.readout.simulation.emulator.cardproc import CardProcessor
from agetdaq.readout.simulation.emulator.framering import FrameRing
from agetdaq.readout.simulation.emulator.hped import PedestalHistos
from agetdaq.readout.simulation.emulator.physics import PhysicsModel, compose_raw
from agetdaq.readout.simulation.emulator.triggers import dead_time_filter


def compile_kernels(
    physics: PhysicsModel, processor: CardProcessor, disc_levels: np.ndarray, hped: PedestalHistos
) -> None:
    """Run each kernel once on zeros, with the argument types the card passes."""
    raw = np.zeros((4, 68, physics.n_samples), dtype=np.uint16)
    processor.discriminate(raw, physics.pedestal, disc_levels, True)
    body = processor.body(raw, np.zeros(4, dtype=np.int64))
    processor.fill_histos(raw, hped.offset, hped.counts.copy())
    ring = FrameRing(0, max_frame_bytes_for_mtu(1500), 1 << 16)
    ring.add(0, 0, 0, body)
    one = np.zeros(1, dtype=np.int64)
    ring.add_bank(one, one, one, one, body, np.array([0, body.size], dtype=np.int64))
    dead_time_filter(np.zeros(1), np.zeros(1), 0.0, np.zeros(1, dtype=np.bool_))
    ped = physics.pedestal
    n_t = physics.n_samples
    compose_raw(  # the waveform composer, with the argument types PhysicsModel passes
        ped,
        np.ones_like(ped),
        np.zeros(n_t, np.float32),
        np.zeros(ped.shape, np.int64),
        np.zeros((ped.shape[0], n_t), np.float32),
        np.full(ped.shape, -1, np.int32),
        np.zeros((1, n_t), np.float32),
        np.empty((*ped.shape, n_t), np.uint16),
    )
