"""What the board's registers mean for the emulated card's data path.

:class:`FrontEnd` owns the AGET discriminator levels and the physics' clock and shaping as last
applied, and brings the card processor, the frame ring and the event bank up to date when the
board's registers change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agetdaq.readout.simulation.emulator.board_config import BoardConfig

if TYPE_CHECKING:
    from agetdaq.readout.simulation.emulator.bank import EventBank
    from agetdaq.readout.simulation.emulator.board import Board
    from agetdaq.readout.simulation.emulator.cardproc import CardProcessor
    from agetdaq.readout.simulation.emulator.framering import FrameRing
    from agetdaq.readout.simulation.emulator.physics import PhysicsModel


class FrontEnd:
    """Discriminator levels, signal polarity and the physics configuration of one card."""

    def __init__(
        self,
        processor: CardProcessor,
        ring: FrameRing,
        physics: PhysicsModel,
        bank: EventBank | None,
        config: BoardConfig,
    ) -> None:
        self.processor = processor
        self.ring = ring
        self.physics = physics
        self.bank = bank
        self.disc_base = config.disc_level_adc
        self.disc_step = config.disc_step_adc
        self.up = int(physics.scenario.detector.polarity) == 1  # signals go up from the pedestal
        self.disc_levels = np.full((4, 68), np.inf, dtype=np.float32)
        self.version = -1  # board version last applied
        self._phys_cfg = (physics.wckdiv, physics.peaking_time_code)

    def apply(self, board: Board) -> None:
        """The board's registers changed: refresh the data path from them."""
        self.processor.refresh()
        self.ring.eof_on_eoe = bool(board.flags["eof_on_eoe"])
        self.disc_levels = board.channels.disc_levels(self.disc_base, self.disc_step)
        phys = (board.sca["wckdiv"], int(board.channels.aget["time"][0]))
        if phys != self._phys_cfg:
            self.physics.configure(*phys)
            self._phys_cfg = phys
        self.version = board.version

    def ensure_bank_encoded(self) -> None:
        """Frame the bank's events with the current settings (once per board version)."""
        if self.bank is not None:
            self.bank.encode(
                self.processor, self.physics.pedestal, self.disc_levels, self.up, self.version
            )
