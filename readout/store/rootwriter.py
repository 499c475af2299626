"""ROOT's side of the export (:mod:`~agetdaq.readout.store.rootexport`): a ROOT file written by a
small C++ class compiled by cling once per process, so that the trees carry feminos-daq's C++
branch types and are filled from flat arrays in compiled code, block by block.

Needs ROOT's own Python package (the ``root`` extra); :func:`load_root` says so clearly otherwise.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agetdaq.readout.store.convert import ConvertError
from agetdaq.readout.store.rootblocks import N_BINS, EventBlock

COMPRESSIONS = {"zstd": (5, 1), "lzma": (2, 1), "zlib": (1, 1), "lz4": (4, 1), "none": (0, 0)}
"""name -> (ROOT algorithm code, default level)."""
BASKET_BYTES = 1 << 22  # per branch: a few full-readout events per basket


@dataclass
class RootRunInfo:
    """The ``run`` tree's single entry."""

    number: int = 0
    name: str = ""
    timestamp_ms: int = 0
    detector: str = ""
    tag: str = ""
    comments: str = ""
    commands: str = ""
    drift_field_V_cm_bar: float = math.nan
    mesh_voltage_V: float = math.nan
    detector_pressure_bar: float = math.nan


_CPP = r"""
#include <TFile.h>
#include <TTree.h>
#include <string>
#include <vector>

namespace agetdaq_root {

// The events tree with feminos-daq's branch types, filled from flat arrays.
class EventsTree {
public:
    ULong64_t timestamp = 0, card_timestamp = 0, event_id = 0;
    UInt_t event_count = 0;
    std::vector<unsigned short> signal_ids, signal_values;
    TTree* tree = nullptr;

    EventsTree(TFile* file, Int_t basket) {
        file->cd();
        tree = new TTree("events", "Signal events: one entry per event, many signals each");
        tree->Branch("timestamp", &timestamp);
        tree->Branch("signal_ids", &signal_ids, basket);
        tree->Branch("signal_values", &signal_values, basket);
        tree->Branch("card_timestamp", &card_timestamp);
        tree->Branch("event_id", &event_id);
        tree->Branch("event_count", &event_count);
    }

    // numpy's int64 / uint64 are long / unsigned long here (ULong64_t is unsigned long long)
    Long64_t fill(Long64_t n, const unsigned long* ts, const unsigned long* cts,
                  const unsigned long* ids, const UInt_t* counts, const long* n_signals,
                  const unsigned short* sig, const unsigned short* values) {
        Long64_t s = 0, bytes = 0;
        for (Long64_t i = 0; i < n; ++i) {
            timestamp = ts[i];
            card_timestamp = cts[i];
            event_id = ids[i];
            event_count = counts[i];
            signal_ids.assign(sig + s, sig + s + n_signals[i]);
            signal_values.assign(values + 512 * s, values + 512 * (s + n_signals[i]));
            s += n_signals[i];
            bytes += tree->Fill();
        }
        return bytes;
    }
};

void write_run(TFile* file, ULong64_t number, std::string name, ULong64_t timestamp,
               std::string detector, std::string tag, float drift, float mesh, float pressure,
               std::string comments, std::string commands) {
    file->cd();
    TTree run("run", "Run metadata");
    run.Branch("number", &number);
    run.Branch("name", &name);
    run.Branch("timestamp", &timestamp);
    run.Branch("detector", &detector);
    run.Branch("tag", &tag);
    run.Branch("drift_field_V_cm_bar", &drift);
    run.Branch("mesh_voltage_V", &mesh);
    run.Branch("detector_pressure_bar", &pressure);
    run.Branch("comments", &comments);
    run.Branch("commands", &commands);
    run.Fill();
    run.Write();
}

}  // namespace agetdaq_root
"""


def load_root():
    """ROOT's Python module with the writer compiled in (once); ConvertError without it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the PyPI build announces itself as alpha
            import ROOT
    except ImportError as exc:
        raise ConvertError(f"ROOT export needs ROOT (pip install 'agetdaq[root]'): {exc}") from None
    if not hasattr(ROOT, "agetdaq_root"):
        ROOT.gROOT.SetBatch(True)
        if not ROOT.gInterpreter.Declare(_CPP):
            raise ConvertError("ROOT could not compile the agetdaq ROOT writer")
        # compression runs while the next block is read and decoded
        ROOT.agetdaq_root.EventsTree.fill.__release_gil__ = True
    return ROOT


def compression_setting(name: str, level: int | None) -> int:
    """ROOT's compression setting (100 x algorithm + level) of a compression name and level."""
    if name not in COMPRESSIONS:
        raise ConvertError(f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}")
    algorithm, default = COMPRESSIONS[name]
    if name == "none":
        return 0
    lv = default if level is None else int(level)
    if not 1 <= lv <= 9:
        raise ConvertError(f"compression level {lv} not in 1..9")
    return 100 * algorithm + lv


class RootFile:
    """One ROOT file being written: the ``events`` tree, filled a block at a time, then the
    ``run`` tree (:meth:`finish`). ``setting``: :func:`compression_setting`; ``name`` for
    messages (default: the path)."""

    def __init__(self, path: Path, setting: int, name: str | Path | None = None) -> None:
        self._root = load_root()
        self._file = self._root.TFile.Open(str(path), "RECREATE", "agetdaq run", setting)
        if not self._file or self._file.IsZombie():
            raise ConvertError(f"{name or path}: ROOT cannot create the file")
        self._events = self._root.agetdaq_root.EventsTree(self._file, BASKET_BYTES)

    def __enter__(self) -> RootFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.Close()

    def fill(self, b: EventBlock) -> None:
        """The block's events as entries of the ``events`` tree."""
        n = len(b.time_ms)
        if not n:
            return
        values = np.ascontiguousarray(b.values.reshape(-1))
        ids = np.ascontiguousarray(b.signal_ids)
        if not len(ids):  # ROOT needs a valid pointer even when nothing is read from it
            ids, values = np.zeros(1, np.uint16), np.zeros(N_BINS, np.uint16)
        self._events.fill(
            n,
            np.ascontiguousarray(b.time_ms, dtype=np.uint64),
            np.ascontiguousarray(b.card_timestamp, dtype=np.uint64),
            np.ascontiguousarray(b.event_id, dtype=np.uint64),
            np.ascontiguousarray(b.event_count, dtype=np.uint32),
            np.ascontiguousarray(b.n_signals, dtype=np.int64),
            ids,
            values,
        )

    def finish(self, info: RootRunInfo) -> None:
        """Write the ``events`` tree and the ``run`` tree's one entry."""
        self._file.cd()
        self._events.tree.Write()
        self._root.agetdaq_root.write_run(
            self._file, info.number, info.name, info.timestamp_ms, info.detector, info.tag,
            info.drift_field_V_cm_bar, info.mesh_voltage_V, info.detector_pressure_bar,
            info.comments, info.commands,
        )  # fmt: skip
