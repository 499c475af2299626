"""The run file: its layout, the crash-safe writer, the one reader, conversions and ROOT export.

Enters: raw datagrams, event rows, channel waveforms, status snapshots and metadata from the
data path. Leaves: HDF5 run files (docs/FILE_FORMAT.md), runs read back from .h5, .aqs and
.pcap files through one API (:func:`open_run`), and .aqs and .root conversions. The row types
are :mod:`agetdaq.readout.schema`'s. The store sits below the data path: it imports neither
``datapath`` nor ``cli``.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "open_run": "agetdaq.readout.store.run",
    "Run": "agetdaq.readout.store.run",
    "RunInfo": "agetdaq.readout.store.run",
    "RunFileError": "agetdaq.readout.store.errors",
    "UnknownFormatError": "agetdaq.readout.store.errors",
    "DamagedRunFileError": "agetdaq.readout.store.errors",
    "NewerFormatError": "agetdaq.readout.store.errors",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    """``from agetdaq.readout.store import open_run`` without importing h5py and the decoder
    for every user of the layout."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
