"""Online processing kernels of the DAQ: dense waveforms, pedestals, common mode, hits, features,
classification and software trigger (numba kernels with plain numpy references)."""

from readout.processing.features import FEATURES_DTYPE
from readout.processing.pedestal import PedestalAccumulator, PedestalTable
from readout.processing.pipeline import Processed, Processor, ProcessorConfig
from readout.processing.trigger import (
    MUON,
    NOISE,
    OTHER,
    XRAY,
    SelectionConfig,
    TriggerConfig,
    classify,
    trigger,
)
from readout.processing.waveforms import DenseBatch, FlatBatch, StripLayout, scatter

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
