"""The pipeline: stages built from the settings (names in order, options) and linked in a chain.

Each stage's ``emit`` is the next stage's ``process``. The stages that read the ring views
(``needs`` "raw") come first; right after the last of them the ring slots go back to the link, so
the processing after them never holds the ring. A need that no earlier stage adds is refused
when the pipeline is built, not when the first batch arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import is_dataclass
from typing import Any

from agetdaq.readout.config import ConfigError, build
from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.registry import check_names, stage_class
from agetdaq.readout.datapath.stage import (
    PathContext,
    PathCounters,
    PipelineError,
    RunState,
    Stage,
    discard,
)

ALWAYS = ("raw", "time_ns")  # what the data path puts in every batch


def make_options(cls: type[Stage], name: str, values: Mapping[str, Any]) -> Any:
    """A stage's Options from a settings table, through the one settings loader (kinds, limits,
    unknown keys); errors name the stage and the key."""
    opt = cls.Options
    if not values:
        return opt()
    if not is_dataclass(opt):
        raise PipelineError(f"stage {name!r} takes no options (got {sorted(values)})")
    try:
        return build(opt, values)
    except ConfigError as exc:
        raise PipelineError(f"stage {name!r}: {exc}") from None


def check_order(names: Sequence[str], stages: Sequence[type[Stage] | Stage]) -> None:
    """The ring readers first; every need filled by an earlier stage (PipelineError if not)."""
    have = set(ALWAYS)
    raw_done = False
    for name, s in zip(names, stages):
        if "raw" in s.needs and raw_done:
            raise PipelineError(
                f"stage {name!r} reads the ring views: put it before every stage that does not"
            )
        raw_done = raw_done or "raw" not in s.needs
        missing = [n for n in s.needs if n not in have]
        if missing:
            raise PipelineError(
                f"stage {name!r} needs {missing}, which no stage before it adds"
                f" (stages: {list(names)})"
            )
        have.update(s.adds)


class Pipeline:
    """Stages in order, linked; the data path drives it batch by batch."""

    def __init__(self, stages: Sequence[Stage], names: Sequence[str] | None = None) -> None:
        self.stages = list(stages)
        self.names = list(names) if names is not None else [s.name for s in self.stages]
        if len(set(self.names)) != len(self.names):
            raise PipelineError(f"two stages of the same name in {self.names}")
        check_order(self.names, self.stages)
        self._link()
        self._tickers = [s for s in self.stages if type(s).tick is not Stage.tick]

    @classmethod
    def from_settings(
        cls,
        names: Sequence[str],
        context: PathContext,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Pipeline:
        """Build the stages listed in order (``options[entry]``: a stage's options). A stage
        is known by its class's ``name`` (a ``module:Class`` entry without one, by the entry)."""
        check_names(list(names))
        options = options or {}
        stages, keys = [], []
        for entry in names:
            stage_cls = stage_class(entry)
            opts = make_options(stage_cls, entry, options.get(entry, {}))
            stages.append(stage_cls(context, opts))
            keys.append(stage_cls.name or entry)
        return cls(stages, keys)

    def _link(self) -> None:
        n_raw = next(
            (i for i, s in enumerate(self.stages) if "raw" not in s.needs), len(self.stages)
        )
        for i, s in enumerate(self.stages):
            nxt = self.stages[i + 1].process if i + 1 < len(self.stages) else discard
            s.emit = _released(nxt) if i == n_raw - 1 else nxt
        self._first = self.stages[0].process if self.stages else discard

    # ---- driven by the data path ------------------------------------------------------------

    def process(self, batch: Batch) -> None:
        self._first(batch)

    def begin_run(self, run: RunState) -> None:
        for s in self.stages:
            s.run = run
            s.begin_run(run)

    def end_run(self) -> None:
        """Flush every stage in order (what one passes on reaches the later ones), then end."""
        for s in self.stages:
            s.flush()
        for s in self.stages:
            s.end_run()

    def tick(self) -> None:
        for s in self._tickers:
            s.tick()

    def warm_up(self, batch: Batch) -> None:
        for s in self.stages:
            s.warm_up(batch)

    # ---- what it counted --------------------------------------------------------------------

    def counters(self) -> dict[str, dict[str, Any]]:
        """Per stage, by name, what it counted this run."""
        return {name: s.counters() for name, s in zip(self.names, self.stages)}

    def add_totals(self, totals: PathCounters) -> None:
        for s in self.stages:
            s.add_totals(totals)

    def stage(self, name: str) -> Stage:
        """The stage listed under ``name``."""
        try:
            return self.stages[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no stage {name!r} in the pipeline {self.names}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.names


def _released(nxt: Callable[[Batch], None]) -> Callable[[Batch], None]:
    """Pass on after giving the ring slots back."""

    def release_then(batch: Batch) -> None:
        batch.release_raw()
        nxt(batch)

    return release_then
