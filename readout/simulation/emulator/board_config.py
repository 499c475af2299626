"""The emulated card's own settings: a scenario's ``[board]`` table (the physics is params.py).

Loaded by the one settings loader (:mod:`agetdaq.readout.config`), every value range-checked;
``Emulator(board={...})`` overrides keys of the scenario's table the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from agetdaq.readout.config import setting

LINE_RATE_BYTES_S = 125_000_000  # GbE payload rate
RING_BYTES = 16 << 20  # [I] card memory for framed data waiting for credit


@dataclass(frozen=True)
class BoardConfig:
    """Card id, MTU, card memory, line pacing, discriminator and readout timing of one card."""

    card_id: int = setting(0, "card id (chips 4 x card_id .. + 3)", lo=0, hi=31)
    mtu: int = setting(
        1500, "Ethernet MTU: datagrams of min(MTU - 28, 8192) bytes at most", choices=(1500, 9000)
    )
    ring_bytes: int = setting(
        RING_BYTES, "card memory for framed data waiting for credit", lo=1 << 16, hi=1 << 30
    )
    line_rate_bytes_s: float = setting(
        float(LINE_RATE_BYTES_S), "send pacing (0 = unpaced)", lo=0.0, hi=1.25e10, unit="B/s"
    )
    gso: bool = setting(True, "send runs of datagrams with UDP segmentation offload")
    disc_level_adc: float = setting(
        20.0, "AGET discriminator level at dac + threshold code 0", lo=0.0, hi=4095.0, unit="ADC"
    )
    disc_step_adc: float = setting(
        5.0, "discriminator step per dac / threshold code", lo=0.0, hi=4095.0, unit="ADC"
    )
    readout_overhead_us: float = setting(
        20.0, "dead time of every event on top of the cells read", lo=0.0, hi=1e6, unit="us"
    )
    readout_ns_per_cell: float = setting(
        40.0, "dead time per SCA cell read on the busiest chip", lo=0.0, hi=1e6, unit="ns"
    )
    realtime_cpu_share: float = setting(
        0.25, "CPU share real-time event generation may use", gt=0.0, hi=1.0
    )
