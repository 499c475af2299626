"""Readout mapping: which strip each AGET channel reads, from a CSV data file.

File format: comment lines start with ``#``; then the header
``card,chip,aget_channel,axis,strip,position_mm`` and one row per connected channel.
``aget_channel`` is the *physical* AGET channel 1..64, so a mapping holds for either ``rst_len``
(DAQ indices come from :mod:`agetdaq.protocol.channels`). Every strip number of an axis must appear
once, from 0 without gaps; a channel may carry one strip only.

Strips are held in a *global order*: X0..X(n_x-1), then Y0..Y(n_y-1) (global index = strip for X,
n_x + strip for Y). All per-strip attributes are numpy arrays in that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from agetdaq.protocol.channels import DAQ_INDEX_LUT, N_LUT_INDICES
from agetdaq.protocol.event import signal_id

COLUMNS = ("card", "chip", "aget_channel", "axis", "strip", "position_mm")
AXES = ("X", "Y")
N_CARDS = 32
N_CHIPS = 4
MAX_STRIP = 4095
DEFAULT_FILE = "babyiaxo.csv"


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class StripMapping:
    """Per-strip arrays in global order (see module docstring)."""

    card: np.ndarray  # int16
    chip: np.ndarray  # int16
    aget_channel: np.ndarray  # int16, physical 1..64
    axis: np.ndarray  # int8, 0 = X, 1 = Y
    strip: np.ndarray  # int16, strip number within its axis
    position_mm: np.ndarray  # float64
    source: str = "<rows>"
    _luts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    # -- construction ----------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> StripMapping:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MappingError(f"{path}: cannot read mapping: {exc}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def default(cls) -> StripMapping:
        """The shipped BabyIAXO mapping (protocol/data/babyiaxo.csv)."""
        ref = resources.files("agetdaq.protocol").joinpath("data", DEFAULT_FILE)
        return cls.from_text(ref.read_text(encoding="utf-8"), f"protocol/data/{DEFAULT_FILE}")

    @classmethod
    def from_text(cls, text: str, source: str = "<text>") -> StripMapping:
        rows: list[tuple[int, int, int, int, int, float, int]] = []
        header_seen = False
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split(",")]
            if not header_seen:
                if tuple(fields) != COLUMNS:
                    raise MappingError(f"{source}:{number}: header must be {','.join(COLUMNS)}")
                header_seen = True
                continue
            rows.append(_parse_row(fields, source, number))
        if not header_seen:
            raise MappingError(f"{source}: no header line {','.join(COLUMNS)}")
        return cls._from_rows(rows, source)

    @classmethod
    def _from_rows(cls, rows: list, source: str) -> StripMapping:
        if not rows:
            raise MappingError(f"{source}: mapping has no strips")
        seen_chan: dict[tuple[int, int, int], int] = {}
        seen_strip: dict[tuple[int, int], int] = {}
        for card, chip, chan, axis, strip, _pos, number in rows:
            key = (card, chip, chan)
            if key in seen_chan:
                raise MappingError(
                    f"{source}:{number}: card {card} chip {chip} channel {chan} "
                    f"already mapped on line {seen_chan[key]}"
                )
            seen_chan[key] = number
            if (axis, strip) in seen_strip:
                raise MappingError(
                    f"{source}:{number}: strip {AXES[axis]}{strip} already mapped on line "
                    f"{seen_strip[axis, strip]}"
                )
            seen_strip[axis, strip] = number
        for axis in (0, 1):
            strips = sorted(s for a, s in seen_strip if a == axis)
            for expected, got in enumerate(strips):
                if got != expected:
                    raise MappingError(
                        f"{source}:{seen_strip[axis, got]}: strip {AXES[axis]}{got} follows a gap: "
                        f"strip {AXES[axis]}{expected} is missing"
                    )
        rows = sorted(rows, key=lambda r: (r[3], r[4]))
        cols = list(zip(*rows))
        return cls(
            card=np.array(cols[0], dtype=np.int16),
            chip=np.array(cols[1], dtype=np.int16),
            aget_channel=np.array(cols[2], dtype=np.int16),
            axis=np.array(cols[3], dtype=np.int8),
            strip=np.array(cols[4], dtype=np.int16),
            position_mm=np.array(cols[5], dtype=np.float64),
            source=source,
        )

    # -- queries ---------------------------------------------------------------------------------

    @property
    def n_strips(self) -> int:
        return len(self.strip)

    @property
    def n_x(self) -> int:
        return int(np.count_nonzero(self.axis == 0))

    @property
    def n_y(self) -> int:
        return int(np.count_nonzero(self.axis == 1))

    def global_index(self, axis: str, strip: int) -> int:
        a = AXES.index(axis)
        n = self.n_x if a == 0 else self.n_y
        if not 0 <= strip < n:
            raise IndexError(f"no strip {axis}{strip} (axis has {n})")
        return strip if a == 0 else self.n_x + strip

    def name(self, index: int) -> str:
        """``"X17"`` / ``"Y3"`` for a global strip index."""
        return f"{AXES[int(self.axis[index])]}{int(self.strip[index])}"

    def chip_of_strip(self, index: int) -> int:
        return int(self.chip[index])

    def card_of_strip(self, index: int) -> int:
        return int(self.card[index])

    def daq_channel(self, rst_len: int = 0) -> np.ndarray:
        """DAQ channel index of every strip (int16, global order)."""
        return DAQ_INDEX_LUT[rst_len][self.aget_channel]

    def signal_ids(self, rst_len: int = 0) -> np.ndarray:
        """feminos-daq signal id (card*288 + chip*72 + index) of every strip (int32)."""
        return signal_id(
            self.card.astype(np.int32), self.chip.astype(np.int32), self.daq_channel(rst_len)
        ).astype(np.int32)

    def lut(self, rst_len: int = 0) -> np.ndarray:
        """Read-only int16 array [card 0..31, chip 0..3, DAQ index 0..78] -> global strip or -1."""
        if rst_len not in self._luts:
            lut = np.full((N_CARDS, N_CHIPS, N_LUT_INDICES), -1, dtype=np.int16)
            lut[self.card, self.chip, self.daq_channel(rst_len)] = np.arange(self.n_strips)
            lut.setflags(write=False)
            self._luts[rst_len] = lut
        return self._luts[rst_len]

    def strip_index(self, card: int, chip: int, daq_channel: int, rst_len: int = 0) -> int:
        """Global strip index read at (card, chip, DAQ index), or -1."""
        if not (0 <= card < N_CARDS and 0 <= chip < N_CHIPS and 0 <= daq_channel < N_LUT_INDICES):
            return -1
        return int(self.lut(rst_len)[card, chip, daq_channel])

    def strip_name(self, card: int, chip: int, daq_channel: int, rst_len: int = 0) -> str | None:
        index = self.strip_index(card, chip, daq_channel, rst_len)
        return None if index < 0 else self.name(index)

    @property
    def x_positions_mm(self) -> np.ndarray:
        return self.position_mm[self.axis == 0]

    @property
    def y_positions_mm(self) -> np.ndarray:
        return self.position_mm[self.axis == 1]

    # -- stable forms for files ------------------------------------------------------------------

    def to_text(self) -> str:
        """CSV text in global order; :meth:`from_text` reads it back to an equal mapping."""
        lines = [",".join(COLUMNS)]
        for i in range(self.n_strips):
            lines.append(
                f"{self.card[i]},{self.chip[i]},{self.aget_channel[i]},{AXES[self.axis[i]]},"
                f"{self.strip[i]},{float(self.position_mm[i])!r}"
            )
        return "\n".join(lines) + "\n"

    def to_table(self) -> np.ndarray:
        """Structured array (one record per strip, global order), e.g. for an HDF5 dataset."""
        table = np.zeros(
            self.n_strips,
            dtype=[("card", "i2"), ("chip", "i2"), ("aget_channel", "i2"), ("axis", "S1"),
                   ("strip", "i2"), ("position_mm", "f8")],
        )  # fmt: skip
        for name in ("card", "chip", "aget_channel", "strip", "position_mm"):
            table[name] = getattr(self, name)
        table["axis"] = np.array([b"X", b"Y"])[self.axis]
        return table

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StripMapping):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, n), getattr(other, n))
            for n in ("card", "chip", "aget_channel", "axis", "strip", "position_mm")
        )

    __hash__ = None  # type: ignore[assignment]


def _parse_row(
    fields: list[str], source: str, number: int
) -> tuple[int, int, int, int, int, float, int]:
    where = f"{source}:{number}"
    if len(fields) != len(COLUMNS):
        raise MappingError(f"{where}: expected {len(COLUMNS)} fields, got {len(fields)}")

    def integer(i: int, lo: int, hi: int) -> int:
        text = fields[i]
        if not text.lstrip("-").isdigit():
            raise MappingError(f"{where}: {COLUMNS[i]} {text!r} is not an integer")
        value = int(text)
        if not lo <= value <= hi:
            raise MappingError(f"{where}: {COLUMNS[i]} {value} out of range {lo}..{hi}")
        return value

    card = integer(0, 0, N_CARDS - 1)
    chip = integer(1, 0, N_CHIPS - 1)
    chan = integer(2, 1, 64)
    if fields[3] not in AXES:
        raise MappingError(f"{where}: axis {fields[3]!r} is not X or Y")
    strip = integer(4, 0, MAX_STRIP)
    try:
        position = float(fields[5])
    except ValueError:
        raise MappingError(f"{where}: position_mm {fields[5]!r} is not a number") from None
    if not math.isfinite(position):
        raise MappingError(f"{where}: position_mm {fields[5]!r} is not finite")
    return card, chip, chan, AXES.index(fields[3]), strip, position, number
