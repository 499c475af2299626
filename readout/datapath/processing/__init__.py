"""Online processing kernels of the DAQ: dense waveforms, pedestals, common mode, hits, features,
classification and software trigger (numba kernels with plain numpy references)."""

from agetdaq.readout.datapath.processing.features import FEATURES_DTYPE
from agetdaq.readout.datapath.processing.pedestal import PedestalAccumulator, PedestalTable
from agetdaq.readout.datapath.processing.pipeline import Processed, Processor, ProcessorConfig
from agetdaq.readout.datapath.processing.trigger import (
    MUON,
    NOISE,
    OTHER,
    XRAY,
    SelectionConfig,
    TriggerConfig,
    classify,
    trigger,
)
from agetdaq.readout.datapath.processing.waveforms import (
    DenseBatch,
    FlatBatch,
    StripLayout,
    scatter,
)

__all__ = [
    "FEATURES_DTYPE",
    "MUON",
    "NOISE",
    "OTHER",
    "XRAY",
    "DenseBatch",
    "FlatBatch",
    "PedestalAccumulator",
    "PedestalTable",
    "Processed",
    "Processor",
    "ProcessorConfig",
    "SelectionConfig",
    "StripLayout",
    "TriggerConfig",
    "classify",
    "scatter",
    "trigger",
]
