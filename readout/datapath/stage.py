"""The Stage contract: a stage gets a batch, does its work on the whole batch, and passes it on.

A stage class has a ``name``, the :class:`~agetdaq.readout.datapath.batch.Batch` fields it
``needs`` and ``adds``, and its ``Options`` (a frozen dataclass: the settings'
``[pipeline.options.<name>]``). The pipeline (:mod:`agetdaq.readout.datapath.chain`) builds it as
``cls(context, options)`` and sets ``emit`` to the next stage's :meth:`Stage.process`. Hooks:

- :meth:`process` per batch: work on the batch as a whole (numpy / numba, no per-event Python),
  then ``self.emit(batch)``: once, once per part (the shed stage cuts chunks), or not at all;
- :meth:`begin_run` before a run's first batch (``self.run`` is set), :meth:`flush` after its last
  (pass on what is held back), :meth:`end_run` after the flush (leave results in
  ``run.outputs``);
- :meth:`tick` now and then, with or without data; :meth:`warm_up` once before the first run:
  compile the kernels on a synthetic batch, filling its fields as ``process`` would (no state);
- :meth:`counters` what it counted this run (losses where they happen); :meth:`add_totals` its
  share of the path totals the acquisition watches (:class:`PathCounters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import numpy as np

    from agetdaq.readout.datapath.batch import Batch
    from agetdaq.readout.datapath.processing.pipeline import Processor
    from agetdaq.readout.datapath.processing.waveforms import StripLayout


class PipelineError(ValueError):
    """A pipeline that cannot be built: unknown stage, bad option, a need nobody fills."""


class Ring(Protocol):
    """What the stages may ask the link's ring."""

    n_slots: int

    def fill(self) -> int: ...


class MonitorSink(Protocol):
    """What the publish stage needs of the monitor feed (analysis/monitor.py MonitorFeed)."""

    def begin_run(self, run_number: int, run_type: str = "") -> None: ...
    def wants_event(self) -> bool: ...
    def on_batch(
        self, rows: np.ndarray, hit: np.ndarray | None, waveforms: np.ndarray | None, t0_ns: int
    ) -> None: ...
    def tick(self) -> None: ...
    def end_run(self) -> None: ...


class TrendSink(Protocol):
    """What the calibration stage needs of the 55Fe trend (analysis/calibfeed.py CalibFeed)."""

    active: bool
    published: int
    errors: int

    def begin_run(self, run_number: int, run_type: str) -> None: ...
    def on_rows(self, rows: np.ndarray) -> None: ...
    def tick(self) -> None: ...
    def close_run(self) -> None: ...


@dataclass
class PathContext:
    """What the stages of one data path share: the detector layout and the services the
    acquisition hands in (each may be None: a stage that needs one checks it)."""

    layout: StripLayout
    ring: Ring | None = None  # the link's ring (fill level)
    batch: int = 1024  # datagrams taken from the ring per step (at most)
    wall_offset_ns: int = 0  # time.time_ns() - time.monotonic_ns() (ring times are monotonic)
    processor: Processor | None = None  # the online processing (pedestals, baselines, trigger)
    feed: MonitorSink | None = None  # the monitor feed (publish)
    calib: TrendSink | None = None  # the 55Fe gain trend (calibration)
    _wants: dict[str, list[Callable[[], bool]]] = field(default_factory=dict)

    def want(self, what: str, when: Callable[[], bool]) -> None:
        """A later stage asks an earlier one for an optional product (e.g. "waveforms")."""
        self._wants.setdefault(what, []).append(when)

    def wanted(self, what: str) -> bool:
        """Whether any stage wants ``what`` for the batch at hand."""
        return any(when() for when in self._wants.get(what, ()))


@dataclass
class RunState:
    """One run as the stages see it (shared by the stages of the run, replaced at each run)."""

    number: int = 0
    type: str = ""
    writer: Any = None  # agetdaq.readout.store.writer.RunWriter, or None: nothing recorded
    open: bool = False
    failure: str | None = None  # the first writer failure: nothing more is recorded
    keep_all: bool = False  # a stage needs every event processed (no shedding), e.g. pedestals
    seq_window: int = 128  # the board's sequence window (frames in flight): decode refuses others
    max_events: int | None = None  # the run's event limit: record keeps exactly this many
    outputs: dict[str, Any] = field(default_factory=dict)  # results for the acquisition
    notices: list[str] = field(default_factory=list)  # for the operator: log, status, run file

    def fail(self, message: str) -> bool:
        """Record a failure; True if it is the first of the run."""
        if self.failure is not None:
            return False
        self.failure = message
        return True


@dataclass
class PathCounters:
    """The data path's totals: the driver's own figures plus each stage's share."""

    datagrams: int = 0
    bytes: int = 0
    events: int = 0
    events_processed: int = 0
    events_shed: int = 0
    outside_run: int = 0  # datagrams that arrived while no run was open (discarded)
    last_signals: int = 0
    last_data_ns: int = 0  # monotonic time of the last datagram
    writer_errors: int = 0
    restarts: int = 0  # board restarts the build saw (event counter and clock back to 0)
    decode_errors: dict[str, int] = field(default_factory=dict)


class NoOptions:
    """Options of a stage that has none."""


class Stage:
    """Base of the data path's stages (see the module docstring)."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # Batch fields read ("raw": the ring views)
    adds: ClassVar[tuple[str, ...]] = ()  # Batch fields filled
    Options: ClassVar[type] = NoOptions

    def __init__(self, context: PathContext, options: Any = None) -> None:
        self.context = context
        self.options = options if options is not None else self.Options()
        self.run = RunState()
        self.emit: Callable[[Batch], None] = discard

    def begin_run(self, run: RunState) -> None:
        """A run starts (``self.run`` is already ``run``): reset what is per run."""

    def process(self, batch: Batch) -> None:
        self.emit(batch)

    def flush(self) -> None:
        """The run's last batch has passed: pass on anything held back."""

    def end_run(self) -> None:
        """After the flush: leave the run's results in ``self.run.outputs``."""

    def tick(self) -> None:
        """Periodic work with or without data (called about every 50 ms at least)."""

    def warm_up(self, batch: Batch) -> None:
        """Compile the kernels on a synthetic batch; fill its fields as :meth:`process` would."""

    def counters(self) -> dict[str, Any]:
        """What this stage counted in the current run."""
        return {}

    def add_totals(self, totals: PathCounters) -> None:
        """Add this stage's share to the path totals."""


def discard(batch: Batch) -> None:
    """The last stage passes its batches here."""
