"""Incremental histogram of event energies in ADC with fixed, uniform binning."""

from __future__ import annotations

from typing import Any

import numpy as np


class Spectrum:
    """Counts of event energies (ADC) in ``n_bins`` uniform bins over ``[adc_min, adc_max)``.

    Values outside the range and non-finite values are counted in ``underflow``, ``overflow``
    and ``invalid``, so ``total + underflow + overflow + invalid`` equals everything filled.
    """

    def __init__(self, n_bins: int = 2048, adc_max: float = 8192.0, adc_min: float = 0.0) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        if not adc_max > adc_min:
            raise ValueError(f"adc_max ({adc_max}) must exceed adc_min ({adc_min})")
        self.n_bins = int(n_bins)
        self.adc_min = float(adc_min)
        self.adc_max = float(adc_max)
        self.counts = np.zeros(self.n_bins, dtype=np.int64)
        self.underflow = 0
        self.overflow = 0
        self.invalid = 0

    @property
    def bin_width(self) -> float:
        return (self.adc_max - self.adc_min) / self.n_bins

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.adc_min, self.adc_max, self.n_bins + 1)

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[1:] + e[:-1])

    @property
    def total(self) -> int:
        """Counts inside the range."""
        return int(self.counts.sum())

    def fill(self, values: np.ndarray) -> None:
        """Add a batch of energies (ADC)."""
        v = np.asarray(values, dtype=float).ravel()
        finite = np.isfinite(v)
        self.invalid += int(v.size - np.count_nonzero(finite))
        v = v[finite]
        below, above = v < self.adc_min, v >= self.adc_max
        self.underflow += int(np.count_nonzero(below))
        self.overflow += int(np.count_nonzero(above))
        v = v[~(below | above)]
        idx = np.floor((v - self.adc_min) / self.bin_width).astype(np.int64)
        np.clip(idx, 0, self.n_bins - 1, out=idx)  # rounding at the range ends
        self.counts += np.bincount(idx, minlength=self.n_bins)

    def same_binning(self, other: Spectrum) -> bool:
        return (self.n_bins, self.adc_min, self.adc_max) == (
            other.n_bins,
            other.adc_min,
            other.adc_max,
        )

    def merge(self, other: Spectrum) -> None:
        """Add another spectrum with identical binning into this one."""
        if not self.same_binning(other):
            raise ValueError(
                "cannot merge spectra with different binning: "
                f"{(self.n_bins, self.adc_min, self.adc_max)} vs "
                f"{(other.n_bins, other.adc_min, other.adc_max)}"
            )
        self.counts += other.counts
        self.underflow += other.underflow
        self.overflow += other.overflow
        self.invalid += other.invalid

    def __iadd__(self, other: Spectrum) -> Spectrum:
        self.merge(other)
        return self

    def copy(self) -> Spectrum:
        out = Spectrum(self.n_bins, self.adc_max, self.adc_min)
        out.merge(self)
        return out

    def clear(self) -> None:
        self.counts[:] = 0
        self.underflow = self.overflow = self.invalid = 0

    def rebin(self, factor: int) -> Spectrum:
        """A new spectrum with ``factor`` adjacent bins summed; ``factor`` must divide n_bins."""
        if factor < 1 or self.n_bins % factor:
            raise ValueError(f"rebin factor {factor} must be >= 1 and divide n_bins={self.n_bins}")
        out = Spectrum(self.n_bins // factor, self.adc_max, self.adc_min)
        out.counts = self.counts.reshape(-1, factor).sum(axis=1)
        out.underflow, out.overflow, out.invalid = self.underflow, self.overflow, self.invalid
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "n_bins": self.n_bins,
            "adc_min": self.adc_min,
            "adc_max": self.adc_max,
            "counts": self.counts.tolist(),
            "underflow": self.underflow,
            "overflow": self.overflow,
            "invalid": self.invalid,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spectrum:
        out = cls(int(d["n_bins"]), float(d["adc_max"]), float(d["adc_min"]))
        counts = np.asarray(d["counts"], dtype=np.int64)
        if counts.shape != (out.n_bins,):
            raise ValueError(f"counts has shape {counts.shape}, expected ({out.n_bins},)")
        out.counts = counts
        out.underflow = int(d.get("underflow", 0))
        out.overflow = int(d.get("overflow", 0))
        out.invalid = int(d.get("invalid", 0))
        return out

    @classmethod
    def from_values(
        cls, values: np.ndarray, n_bins: int = 2048, adc_max: float = 8192.0, adc_min: float = 0.0
    ) -> Spectrum:
        out = cls(n_bins, adc_max, adc_min)
        out.fill(values)
        return out

    def __repr__(self) -> str:
        return (
            f"Spectrum(n_bins={self.n_bins}, range=[{self.adc_min:g}, {self.adc_max:g}), "
            f"total={self.total})"
        )
