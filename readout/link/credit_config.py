"""Credit window settings of one BEC (``credits restore <window> <threshold> F|B``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from agetdaq.protocol.commands import MAX_DAQ_AMOUNT
from agetdaq.readout.config import setting


@dataclass(frozen=True)
class CreditConfig:
    """Window and threshold in ``unit`` ('F' frames or 'B' bytes); ring water marks as fractions."""

    unit: str = setting("F", "F = frames, B = bytes", choices=("F", "B"))
    window: int = setting(8, "credit granted per request", lo=1, hi=MAX_DAQ_AMOUNT)
    threshold: int = setting(1, "ask again when the credit left falls to this", lo=0)
    high_water: float = setting(0.5, "ring fill that pauses the credit", gt=0.0, lt=1.0)
    low_water: float = setting(0.25, "ring fill that resumes it", gt=0.0, lt=1.0)

    def __post_init__(self) -> None:
        if self.unit not in ("F", "B"):
            raise ValueError(f"credit unit must be 'F' or 'B', not {self.unit!r}")
        if not 1 <= self.window <= MAX_DAQ_AMOUNT:
            raise ValueError(f"credit window must be 1..{MAX_DAQ_AMOUNT}, not {self.window}")
        if not 0 <= self.threshold <= self.window:
            raise ValueError(
                f"credit threshold must be 0..window ({self.window}), not {self.threshold}"
            )
        if not 0.0 < self.low_water <= self.high_water < 1.0:
            raise ValueError("need 0 < low_water <= high_water < 1")

    @classmethod
    def from_restore(cls, args: Sequence[str], base: CreditConfig | None = None) -> CreditConfig:
        """From the words after ``credits restore``: ``<window> <threshold> F|B``."""
        if len(args) != 3:
            raise ValueError(f"usage: credits restore <window> <threshold> F|B, got {args!r}")
        try:
            window, threshold = int(args[0], 0), int(args[1], 0)
        except ValueError as exc:
            raise ValueError(f"credits restore: bad number in {args!r}") from exc
        return replace(base or cls(), unit=args[2].upper(), window=window, threshold=threshold)
