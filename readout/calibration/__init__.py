"""55Fe calibration analysis: spectra, the line model and its fit, X-ray selection, gain,
resolution and threshold trends, the gain map. No GUI, no file format (docs/CALIBRATION.md).
"""

from readout.calibration.fit import FitConfig, FitResult, fit_spectrum
from readout.calibration.gainmap import GainMap, GainMapConfig, GainMapResult, RegionResult
from readout.calibration.model import ARGON, XENON, Line, SourceLines, lines_for_gas
from readout.calibration.selection import XraySelection, cut_flow, select_xrays
from readout.calibration.spectrum import Spectrum
from readout.calibration.trend import GainTrend, TrendConfig, TrendPoint

__all__ = [
    "ARGON",
    "XENON",
    "FitConfig",
    "FitResult",
    "GainMap",
    "GainMapConfig",
    "GainMapResult",
    "GainTrend",
    "Line",
    "RegionResult",
    "SourceLines",
    "Spectrum",
    "TrendConfig",
    "TrendPoint",
    "XraySelection",
    "cut_flow",
    "fit_spectrum",
    "lines_for_gas",
    "select_xrays",
]
