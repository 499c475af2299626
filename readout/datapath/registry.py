"""Stage names -> stage classes, and the default order of the data path.

A built-in stage is one line in STAGES (and its name in DEFAULT_STAGES if every pipeline should
have it); a stage of your own needs no line here: list it in the settings' ``[pipeline] stages``
as ``"package.module:Class"``.
"""

from __future__ import annotations

import importlib

from agetdaq.readout.datapath.stage import PipelineError, Stage

_HERE = "agetdaq.readout.datapath.stages"

STAGES: dict[str, str] = {
    "sequence": f"{_HERE}.sequence:Sequence",
    "record_raw": f"{_HERE}.record:RecordRaw",
    "decode": f"{_HERE}.decode:Decode",
    "build": f"{_HERE}.build:Build",
    "shed": f"{_HERE}.shed:Shed",
    "process": f"{_HERE}.process:Process",
    "pedcheck": f"{_HERE}.pedcheck:PedCheck",
    "pedestal": f"{_HERE}.pedestal:Pedestal",
    "rows": f"{_HERE}.rows:Rows",
    "record": f"{_HERE}.record:Record",
    "calibration": f"{_HERE}.calibration:Calibration",
    "publish": f"{_HERE}.publish:Publish",
}

DEFAULT_STAGES: tuple[str, ...] = (
    "sequence",
    "record_raw",
    "decode",
    "build",
    "shed",
    "process",
    "pedcheck",
    "pedestal",
    "rows",
    "record",
    "calibration",
    "publish",
)


def stage_class(name: str) -> type[Stage]:
    """The class of a stage name, or of a ``"package.module:Class"`` entry."""
    target = STAGES.get(name, name)
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise PipelineError(
            f"unknown stage {name!r}; known: {sorted(STAGES)} (or 'package.module:Class')"
        )
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise PipelineError(f"stage {name!r}: cannot load {target}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise PipelineError(f"stage {name!r}: {target} is not a Stage")
    return cls


def check_names(names: tuple[str, ...] | list[str]) -> None:
    """Known names or ``module:Class`` entries, each once (nothing is imported here)."""
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or (name not in STAGES and ":" not in name):
            raise PipelineError(
                f"unknown stage {name!r}; known: {sorted(STAGES)} (or 'package.module:Class')"
            )
        if name in seen:
            raise PipelineError(f"stage {name!r} is listed twice")
        seen.add(name)
