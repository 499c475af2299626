"""The DAQ's run histograms (``hist`` messages) as the monitor shows them (no Qt, no computing).

Hitmap, strip occupancy, X-ray-like energy spectrum and class counts are the DAQ's own
(agetdaq.readout.analysis.monitor.RunHistograms, the same code in replay): the monitor keeps the
newest message and, for its Reset button, a baseline subtracted from what is shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from agetdaq.protocol.mapping import StripMapping
from agetdaq.readout.analysis.geometry import StripGeometry
from agetdaq.readout.schema import CLASS_NAMES


class RunHistView:
    """The newest ``hist`` of one stream, less the baseline taken at the last display reset."""

    def __init__(self, mapping: StripMapping) -> None:
        g = StripGeometry.from_mapping(mapping)
        self.x_edges, self.y_edges = g.x_edges, g.y_edges  # until the DAQ sends its own
        self.n_strips = mapping.n_strips
        self.clear()

    def clear(self) -> None:
        """A new run: nothing received yet."""
        nx, ny = len(self.x_edges) - 1, len(self.y_edges) - 1
        self.hitmap = np.zeros((nx, ny), np.float32)
        self.occupancy = np.zeros(self.n_strips, np.float32)
        self.spectrum = np.zeros(0, np.float32)
        self.spectrum_edges = np.zeros(1, np.float64)
        self.class_counts: dict[str, int] = dict.fromkeys(CLASS_NAMES, 0)
        self.events = 0
        self.not_processed = 0
        self.occupancy_events = 0
        self.outside = 0
        self.received = 0  # hist messages of this run
        self._base: dict[str, np.ndarray | float] = {}

    def set(self, header: Mapping[str, object], arrays: Mapping[str, np.ndarray]) -> bool:
        """Take a ``hist`` message; False (and nothing changed) when it does not fit."""
        hitmap = arrays.get("hitmap")
        occupancy = arrays.get("occupancy")
        if hitmap is None or hitmap.ndim != 2 or occupancy is None:
            return False
        if occupancy.shape != (self.n_strips,):
            return False
        x_e, y_e = arrays.get("x_edges_mm"), arrays.get("y_edges_mm")
        if x_e is not None and y_e is not None:
            if hitmap.shape != (len(x_e) - 1, len(y_e) - 1):
                return False
            self.x_edges, self.y_edges = np.asarray(x_e, np.float64), np.asarray(y_e, np.float64)
        elif hitmap.shape != self.hitmap.shape:
            return False
        if self._base and np.shape(self._base.get("hitmap")) != hitmap.shape:
            self._base = {}
        self.hitmap = np.asarray(hitmap, np.float32)
        self.occupancy = np.asarray(occupancy, np.float32)
        spectrum = arrays.get("spectrum")
        top = header.get("spectrum_max_adc")
        if spectrum is not None and spectrum.ndim == 1 and isinstance(top, (int, float)):
            self.spectrum = np.asarray(spectrum, np.float32)
            self.spectrum_edges = np.linspace(0.0, float(top), len(spectrum) + 1)
        counts = header.get("class_counts")
        if isinstance(counts, Mapping):
            self.class_counts = {str(k): int(v) for k, v in counts.items()
                                 if isinstance(v, (int, float))}  # fmt: skip
        for key in ("events", "not_processed", "occupancy_events", "outside"):
            v = header.get(key)
            if isinstance(v, int):
                setattr(self, key, v)
        self.received += 1
        return True

    def reset_display(self) -> None:
        """From now on show what arrives after this moment (the DAQ's totals go on)."""
        self._base = {"hitmap": self.hitmap.copy(), "occupancy": self.occupancy.copy(),
                      "occupancy_events": float(self.occupancy_events)}  # fmt: skip

    @property
    def shown_hitmap(self) -> np.ndarray:
        base = self._base.get("hitmap")
        return self.hitmap if base is None else self.hitmap - base

    @property
    def shown_occupancy(self) -> np.ndarray:
        base = self._base.get("occupancy")
        return self.occupancy if base is None else self.occupancy - base

    @property
    def shown_occupancy_events(self) -> int:
        return int(self.occupancy_events - float(self._base.get("occupancy_events", 0.0)))

    @property
    def total(self) -> int:
        """X-ray-like centroids in the shown hitmap."""
        return int(self.shown_hitmap.sum(dtype=np.float64))
