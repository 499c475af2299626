"""Strips that read no charge, and the X-rays that lose charge on them.

The DAQ never counts a dead, noisy or masked strip as hit (its hit threshold is infinite), so an
X-ray whose charge cloud covers one loses that strip's share of one axis: its energy sum reads
low by up to ~20 % (more fails the X/Y balance cut). The gain map would read that loss as gain
(issue 15: up to 8 % deficits in the cells next to dead strips, the map's scale 4 % low). The
known list of such strips (the flags of the run's pedestal table) gives, for each X-ray, the
distance from its centroid to the nearest bad strip of each axis; X-rays closer than a margin
(GainMapConfig.bad_strip_margin_mm, 1 mm) are left out of the gain map. Measured on the
emulator (0.5 mm pitch, 16 bad strips, K-alpha energy sum over the true charge): 0.82 within
0.25 mm of a bad strip, 0.88 at 0.5-0.75 mm, 0.95 at 0.75-1 mm, 0.983 at 1-1.25 mm, 0.995 at
1.25-1.5 mm, 0.998 beyond (as far away).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agetdaq.readout.schema import PedestalFlag

FLAG_BAD = int(PedestalFlag.DEAD | PedestalFlag.NOISY | PedestalFlag.MASKED)


@dataclass(frozen=True)
class BadStrips:
    """Positions (mm, along the axis each strip measures) and names of the strips that read no
    charge: X strips measure x, Y strips measure y."""

    x_mm: tuple[float, ...] = ()
    y_mm: tuple[float, ...] = ()
    x_names: tuple[str, ...] = ()
    y_names: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.x_mm or self.y_mm)

    @property
    def names(self) -> tuple[str, ...]:
        return self.x_names + self.y_names

    @classmethod
    def from_strips(cls, strips, mapping=None) -> BadStrips:
        """From global strip numbers (X 0..119, Y 120..239 in the default mapping) and a
        ``agetdaq.protocol.mapping.StripMapping`` (default mapping when None)."""
        from agetdaq.protocol.mapping import StripMapping

        m = mapping or StripMapping.default()
        idx = sorted({int(s) for s in strips})
        bad = [s for s in idx if not 0 <= s < m.n_strips]
        if bad:
            raise ValueError(f"strip numbers must be 0..{m.n_strips - 1}, got {bad}")
        on = {a: [s for s in idx if m.axis[s] == a] for a in (0, 1)}
        pos = {a: tuple(float(m.position_mm[s]) for s in on[a]) for a in (0, 1)}
        names = {a: tuple(m.name(s) for s in on[a]) for a in (0, 1)}
        return cls(pos[0], pos[1], names[0], names[1])

    @classmethod
    def from_pedestal_rows(cls, rows: np.ndarray, mapping=None) -> BadStrips:
        """From the per-channel pedestal table of a run file (strips flagged dead, noisy or
        masked)."""
        strips = rows[(rows["strip"] >= 0) & ((rows["flags"] & FLAG_BAD) != 0)]["strip"]
        return cls.from_strips(strips.tolist(), mapping)

    @classmethod
    def union(cls, lists) -> BadStrips:
        """The strips bad in any of ``lists`` (e.g. the pedestal tables of several runs)."""
        xs = sorted({(x, n) for b in lists for n, x in zip(b.x_names, b.x_mm)})
        ys = sorted({(y, n) for b in lists for n, y in zip(b.y_names, b.y_mm)})
        return cls(
            tuple(x for x, _ in xs),
            tuple(y for y, _ in ys),
            tuple(n for _, n in xs),
            tuple(n for _, n in ys),
        )

    def distances(self, x_mm: np.ndarray, y_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance (mm) from each position to the nearest bad strip measuring x and y (inf
        without one; NaN positions give NaN)."""
        out = []
        for pos, bad in ((x_mm, self.x_mm), (y_mm, self.y_mm)):
            p = np.asarray(pos, dtype=np.float64)
            if bad:
                d = np.min(np.abs(p[..., None] - np.asarray(bad)), axis=-1)
            else:
                d = np.where(np.isnan(p), np.nan, np.inf)
            out.append(d)
        return out[0], out[1]

    def near(self, x_mm: np.ndarray, y_mm: np.ndarray, margin_mm: float) -> np.ndarray:
        """True where a position lies within ``margin_mm`` of a bad strip of either axis."""
        dx, dy = self.distances(x_mm, y_mm)
        with np.errstate(invalid="ignore"):
            return (dx < margin_mm) | (dy < margin_mm)

    def crossing(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> list[str]:
        """Names of the bad strips that run through a rectangle (X strips by their x, Y by y)."""
        out = [n for n, x in zip(self.x_names, self.x_mm) if x_range[0] <= x < x_range[1]]
        return out + [n for n, y in zip(self.y_names, self.y_mm) if y_range[0] <= y < y_range[1]]

    def to_dict(self) -> dict:
        return {"names": list(self.names), "x_mm": list(self.x_mm), "y_mm": list(self.y_mm)}


def bad_strips_from_run(path: str | Path) -> BadStrips | None:
    """The bad strips of a run file's pedestal table, placed with the run's own mapping; None
    when the file holds no pedestal table."""
    from agetdaq.readout.store.run import open_run

    run = open_run(Path(path))
    try:
        rows, mapping = run.pedestals, run.mapping
    finally:
        run.close()
    return None if rows is None else BadStrips.from_pedestal_rows(rows, mapping)
