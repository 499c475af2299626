"""55Fe calibration analysis: spectra, the line model and its fit, X-ray selection, gain,
resolution and threshold trends, the gain map. No GUI, no file format (docs/CALIBRATION.md).
"""

from agetdaq.readout.analysis.calibration.fit import FitConfig, FitResult, fit_spectrum
from agetdaq.readout.analysis.calibration.gainmap import (
    GainMap,
    GainMapConfig,
    GainMapResult,
    RegionResult,
)
from agetdaq.readout.analysis.calibration.judge import SliceJudge, SliceXrays
from agetdaq.readout.analysis.calibration.linecheck import LineCheckConfig
from agetdaq.readout.analysis.calibration.model import (
    ARGON,
    XENON,
    Line,
    SourceLines,
    lines_for_gas,
)
from agetdaq.readout.analysis.calibration.selection import XraySelection, cut_flow, select_xrays
from agetdaq.readout.analysis.calibration.spectrum import Spectrum
from agetdaq.readout.analysis.calibration.trend import GainTrend, TrendConfig
from agetdaq.readout.analysis.calibration.trendpoint import TrendPoint, expand

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
    "LineCheckConfig",
    "RegionResult",
    "SliceJudge",
    "SliceXrays",
    "SourceLines",
    "Spectrum",
    "TrendConfig",
    "TrendPoint",
    "XraySelection",
    "cut_flow",
    "expand",
    "fit_spectrum",
    "lines_for_gas",
    "select_xrays",
]
