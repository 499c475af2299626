"""The data path thread: takes batches from the link's ring and drives them through the pipeline.

One thread. Each step takes up to ``batch`` datagrams from the receiver ring as views, counts
them, and hands them to the pipeline as a :class:`~agetdaq.readout.datapath.batch.Batch`: the
stages decide what happens to them (the default ones: ../registry.py). Outside a run, or once the
run's writer has failed, the datagrams are counted (``outside_run``) and released unread. At the
end of a run the ring is drained and every stage flushed, so the run keeps what the card sent
before the stop. The numba kernels are compiled on a synthetic event when the thread starts
(``warm`` is set then), before the first run needs them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from agetdaq.readout.datapath.batch import Batch
from agetdaq.readout.datapath.chain import Pipeline
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.registry import DEFAULT_STAGES
from agetdaq.readout.datapath.stage import PathContext, PathCounters, RunState
from agetdaq.readout.link.receiver import Batch as RingBatch
from agetdaq.readout.link.receiver import Receiver

log = logging.getLogger(__name__)


class DataPath:
    """The data path of one board: the thread and the pipeline it drives (module docstring).

    ``stages`` (names, in order) and ``options`` (per stage name) come from the settings'
    ``[pipeline]``; ``chunk_events``, ``shed_fill`` and ``store_waveforms`` are the shed and
    record stages' options unless ``options`` sets them. ``processor``, ``feed`` and ``calib`` are
    the services the process, publish and calibration stages use.
    """

    def __init__(
        self,
        receiver: Receiver,
        processor: Processor,
        feed: Any = None,
        *,
        batch: int = 1024,
        chunk_events: int = 32,
        shed_fill: float = 0.6,  # above the credit loop's hold (0.5 + a window): stages/shed.py
        store_waveforms: str = "hits",
        calib: Any = None,
        stages: Sequence[str] = DEFAULT_STAGES,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.receiver = receiver
        self.batch = batch
        self.context = PathContext(
            layout=processor.layout,
            ring=receiver,
            batch=batch,
            wall_offset_ns=time.time_ns() - time.monotonic_ns(),
            processor=processor,
            feed=feed,
            calib=calib,
        )
        opts: dict[str, dict[str, Any]] = {
            "shed": {"fill": shed_fill, "chunk_events": chunk_events},
            "record": {"store": store_waveforms},
        }
        for name, values in (options or {}).items():
            opts[name] = {**opts.get(name, {}), **values}
        self.pipeline = Pipeline.from_settings(stages, self.context, opts)
        self.run = RunState()
        self._ring = PathCounters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.warm = threading.Event()  # set once the numba kernels are compiled
        self._thread: threading.Thread | None = None

    # ---- what it counted --------------------------------------------------------------------

    @property
    def counters(self) -> PathCounters:
        """The run's totals: the ring's figures and each stage's share."""
        r = self._ring
        totals = PathCounters(
            datagrams=r.datagrams,
            bytes=r.bytes,
            outside_run=r.outside_run,
            last_data_ns=r.last_data_ns,
        )
        self.pipeline.add_totals(totals)
        return totals

    def stage_counters(self) -> dict[str, dict[str, Any]]:
        """What each stage counted this run, by stage name."""
        return self.pipeline.counters()

    def stage(self, name: str) -> Any:
        """The stage listed under ``name`` (KeyError if there is none)."""
        return self.pipeline.stage(name)

    @property
    def failure(self) -> str | None:
        """The current (or last) run's writer failure, if any."""
        return self.run.failure

    @property
    def notices(self) -> list[str]:
        """What the stages told the operator during the current (or last) run, in order."""
        return self.run.notices

    @property
    def outputs(self) -> dict[str, Any]:
        """What the stages left for the acquisition at the end of the last run."""
        return self.run.outputs

    # ---- run boundaries (called from the control thread) ------------------------------------

    def begin_run(
        self,
        writer: Any,
        run_number: int,
        run_type: str = "",
        *,
        seq_window: int = 128,
        max_events: int | None = None,
    ) -> None:
        """Open a run: ``writer`` (a RunWriter, or None: nothing is recorded) takes its data;
        ``seq_window``: the board's sequence window; ``max_events``: the run's event limit."""
        with self._lock:
            self._ring = PathCounters()
            self.run = RunState(
                run_number,
                run_type,
                writer,
                open=True,
                seq_window=seq_window,
                max_events=max_events,
            )
            self.pipeline.begin_run(self.run)

    def end_run(self) -> None:
        """Take what is left in the ring, flush every stage, close the run (the caller closes
        the writer)."""
        with self._lock:
            self._drain_ring()
            if self.run.open:
                self.pipeline.end_run()
                self.run.open = False
            self.run.writer = None  # the caller closes it; nothing here may keep it open

    # ---- thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="datapath", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def warm_up(self) -> None:
        """Compile the numba kernels on a tiny synthetic event before real data needs them."""
        from agetdaq.protocol.decode import pack_datagrams
        from agetdaq.protocol.encode import encode_events
        from agetdaq.protocol.event import Channel, Event

        bins = np.arange(512, dtype=np.uint16)
        ev = Event(channels=[Channel(0, 0, 3, bins, np.full(512, 250, np.uint16))])
        buf, lengths = pack_datagrams(encode_events([ev]))
        raw = RingBatch(buf, lengths, np.zeros(len(lengths), np.int64))
        self.pipeline.warm_up(Batch(time.time_ns(), raw=raw))

    def _loop(self) -> None:
        try:
            self.warm_up()
        except Exception:  # a failed warm-up only costs the compile time later
            log.exception("warm-up failed")
        self.warm.set()
        while not self._stop.is_set():
            with self._lock:
                n = self._step()
                self.pipeline.tick()
            if n == 0:
                self.receiver.get_batch(1, timeout=0.05)  # wait for data without holding the lock

    def _drain_ring(self) -> None:
        while self._step():
            pass

    def _step(self) -> int:
        rx = self.receiver
        b = rx.get_batch(self.batch, timeout=0.0)
        n = len(b.lengths)
        if n == 0:
            return 0
        c = self._ring
        c.datagrams += n
        c.bytes += int(b.lengths.sum())
        c.last_data_ns = int(b.arrival_ns[-1])
        run = self.run
        if not run.open or run.failure is not None:
            c.outside_run += n
            rx.release(n)
            return n
        batch = Batch(time.time_ns(), raw=b, release=rx.release)
        self.pipeline.process(batch)
        batch.release_raw()  # if no stage passed it on that far
        return n
