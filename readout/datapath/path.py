"""The data path of one board: ring -> raw record -> decode -> build -> process -> file, stream.

One thread. Each step takes up to ``batch`` datagrams from the receiver ring, appends them to the
run file as received, decodes them (the decoder copies what it needs, so the ring slots are
released at once), builds events, processes them in sub-batches of at most ``chunk_events`` dense
events, and writes event rows and the selected channel waveforms. When the ring fills past
``shed_fill`` the processing (not the recording) is shed: those events get the NOT_PROCESSED
flag, their raw data is still written; when the run file keeps the raw datagrams (and the store
mode is not ``all``) their samples are not stored a second time, decoded (flag SAMPLES_IN_RAW:
readers decode them from the raw record). Every loss is counted where it happens.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from agetdaq.protocol.decode import StreamDecoder
from agetdaq.readout.analysis.monitor import MonitorFeed
from agetdaq.readout.datapath.build import BuiltBatch, EventBuilder, select_events
from agetdaq.readout.datapath.processing.pedestal import PedestalAccumulator
from agetdaq.readout.datapath.processing.pipeline import Processor
from agetdaq.readout.datapath.processing.waveforms import FlatBatch, scatter
from agetdaq.readout.datapath.rows import aux_rows, event_rows, stored_channels
from agetdaq.readout.link.receiver import Receiver
from agetdaq.readout.schema import CHANNEL_DTYPE, SAMPLES_IN_RAW
from agetdaq.readout.store.writer import RunWriter, WriterError

log = logging.getLogger(__name__)


@dataclass
class PathCounters:
    datagrams: int = 0
    bytes: int = 0
    events: int = 0
    events_processed: int = 0
    events_shed: int = 0
    outside_run: int = 0  # datagrams that arrived while no run was open (discarded)
    last_signals: int = 0
    last_data_ns: int = 0  # monotonic time of the last datagram
    writer_errors: int = 0
    decode_errors: dict[str, int] = field(default_factory=dict)


@dataclass
class SequenceCounters:
    """What the lead-word sequence of the data datagrams in the ring says about the link."""

    missing: int = 0  # sequence numbers that never arrived (network, malformed, ring full)
    late: int = 0  # arrived after a later one (reordered); no longer counted missing
    duplicates: int = 0  # a sequence number received twice
    resyncs: int = 0  # first-reply flags (0x0100): the board restarted its sequence
    stray: int = 0  # behind the sequence but neither missing nor seen (e.g. before a resync)


_UNKNOWN, _RECEIVED, _MISSING = 0, 1, 2
_NO_CHANNELS = np.zeros(0, CHANNEL_DTYPE)
_NO_SAMPLES = np.zeros(0, np.uint16)


class SequenceTracker:
    """Classifies every data datagram by its 8-bit sequence number (lead bits 7..0; bit 8 =
    first reply). A number up to 127 ahead of the expected one counts the skipped numbers
    missing; one behind it is late (if it was missing) or a duplicate (if it was seen)."""

    def __init__(self) -> None:
        self.counters = SequenceCounters()
        self._state = np.zeros(256, dtype=np.int8)
        self._expect = -1

    def feed(self, leads: np.ndarray) -> None:
        leads = np.asarray(leads, dtype=np.int64) & 0x1FF
        if not len(leads):
            return
        if self._expect >= 0 and not (leads & 0x100).any():
            want = (self._expect + np.arange(len(leads))) & 0xFF
            if np.array_equal(leads, want):  # the usual case: all in order
                self._state[want] = _RECEIVED
                self._expect = (int(leads[-1]) + 1) & 0xFF
                return
        for lead in leads.tolist():
            self._one(lead)

    def _one(self, lead: int) -> None:
        c, st = self.counters, self._state
        seq = lead & 0xFF
        if lead & 0x100 or self._expect < 0:
            c.resyncs += bool(lead & 0x100)
            st[:] = _UNKNOWN
        else:
            ahead = (seq - self._expect) & 0xFF
            if ahead >= 128:
                if st[seq] == _MISSING:
                    c.late += 1
                    c.missing -= 1
                    st[seq] = _RECEIVED
                elif st[seq] == _RECEIVED:
                    c.duplicates += 1
                else:
                    c.stray += 1
                return
            if ahead:
                st[(self._expect + np.arange(ahead)) & 0xFF] = _MISSING
                c.missing += ahead
        st[seq] = _RECEIVED
        self._expect = (seq + 1) & 0xFF


class DataPath:
    def __init__(
        self,
        receiver: Receiver,
        processor: Processor,
        feed: MonitorFeed,
        *,
        batch: int = 256,
        chunk_events: int = 32,
        shed_fill: float = 0.2,  # below the credit loop's low-water mark (0.25): see _events
        store_waveforms: str = "hits",
    ) -> None:
        self.receiver = receiver
        self.processor = processor
        self.feed = feed
        self.batch = batch
        self.chunk_events = chunk_events
        self.shed_fill = shed_fill
        self._shedding = False
        self.store_waveforms = store_waveforms
        self.lut = processor.layout.lut
        self.decoder = StreamDecoder()
        self.builder = EventBuilder()
        self.counters = PathCounters()
        self.sequence = SequenceTracker()
        self.writer: RunWriter | None = None
        self.pedestals: PedestalAccumulator | None = None
        self.failure: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.warm = threading.Event()  # set once the numba kernels are compiled
        self._thread: threading.Thread | None = None
        self._wall_offset = time.time_ns() - time.monotonic_ns()

    # ---- run boundaries (called from the control thread) ------------------------------------

    def begin_run(self, writer: RunWriter | None, run_number: int, run_type: str = "") -> None:
        with self._lock:
            self.decoder = StreamDecoder()
            self.builder = EventBuilder()
            self.counters = PathCounters()
            self.sequence = SequenceTracker()
            self.failure = None
            self.processor.reset()
            self.feed.begin_run(run_number, run_type)
            self.pedestals = (
                PedestalAccumulator(self.processor.chip, per_cell=False)
                if run_type == "pedestal"
                else None
            )
            self.writer = writer

    def end_run(self) -> None:
        """Decode what is left, close the open event, detach the writer (caller closes it)."""
        with self._lock:
            self._drain_ring()
            if self.writer is not None:
                tail = self.decoder.flush()
                if len(tail):
                    self._events(tail)
                self._note_decode_errors()
            self.feed.end_run()
            self.writer = None

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
        decoded = StreamDecoder().decode(buf, lengths)
        built = EventBuilder().build(decoded)
        dense = scatter(FlatBatch.from_decoded(built.decoded), self.processor.layout, 250.0, 250.0)
        PedestalAccumulator(self.processor.chip).add_dense(dense)
        self.processor.process(dense.strips, dense.fpn, dense.fpn_complete, dense.complete)
        self.processor.reset()

    def _loop(self) -> None:
        try:
            self.warm_up()
        except Exception:  # a failed warm-up only costs the compile time later
            log.exception("warm-up failed")
        self.warm.set()
        while not self._stop.is_set():
            with self._lock:
                n = self._step(timeout=0.0)
                if self.writer is not None and self.failure is None:
                    try:
                        self.writer.tick()
                    except WriterError as exc:
                        self._fail(str(exc))
                self.feed.tick()
            if n == 0:
                self.receiver.get_batch(1, timeout=0.05)  # wait for data without holding the lock

    def _drain_ring(self) -> None:
        while self._step(timeout=0.0):
            pass

    def _step(self, timeout: float) -> int:
        b = self.receiver.get_batch(self.batch, timeout=timeout)
        n = len(b.lengths)
        if n == 0:
            return 0
        c = self.counters
        c.datagrams += n
        c.bytes += int(b.lengths.sum())
        c.last_data_ns = int(b.arrival_ns[-1])
        if self.writer is None or self.failure is not None:
            c.outside_run += n
            self.receiver.release(n)
            return n
        self.sequence.feed(b.buf[:, 0].astype(np.int64) | b.buf[:, 1].astype(np.int64) << 8)
        try:
            self.writer.append_raw(b.buf, b.lengths, b.arrival_ns + self._wall_offset)
        except WriterError as exc:
            self._fail(str(exc))
        decoded = self.decoder.decode(b.buf, b.lengths)
        self.receiver.release(n)
        self._note_decode_errors()
        if len(decoded):
            self._events(decoded)
        return n

    def _note_decode_errors(self) -> None:
        self.counters.decode_errors = {k: v for k, v in self.decoder.error_counts().items() if v}

    def _events(self, decoded) -> None:
        built = self.builder.build(decoded)
        n = len(built)
        if n == 0:
            return
        c = self.counters
        c.events += n
        c.last_signals = int(built.decoded.n_channels[-1])
        now_ns = time.time_ns()
        if self._shed_now() and self.pedestals is None:  # recorded as a whole: no per-chunk work
            self._record_shed(built, now_ns)
            return
        flat = FlatBatch.from_decoded(built.decoded)
        for a in range(0, n, self.chunk_events):
            z = min(n, a + self.chunk_events)
            if a and self.pedestals is None and self._shed_now():
                # the ring filled while the chunks before were processed: the rest is shed
                rest = select_events(built.decoded, _mask(n, a, n))
                self._record_shed(_sub_built(built, rest, a, n), now_ns)
                return
            part = select_events(built.decoded, _mask(n, a, z)) if (a, z) != (0, n) else None
            sub = built if part is None else _sub_built(built, part, a, z)
            chunk = _slice_flat(flat, a, z)
            fill, fpn_fill = self.processor.fill_values()
            dense = scatter(chunk, self.processor.layout, fill, fpn_fill)
            if self.pedestals is not None:
                self.pedestals.add_dense(dense)
            proc = self.processor.process(
                dense.strips,
                dense.fpn,
                dense.fpn_complete,
                dense.complete,
                events=sub.event_id,
                keep_waveforms=self.feed.wants_event(),
            )
            c.events_processed += z - a
            feats = proc.features
            rows = event_rows(sub, feats, now_ns)
            ch, bins, adc, aux = stored_channels(
                sub, self.lut, self.store_waveforms, feats["trig"], proc.hit
            )
            self._write(rows, ch, bins, adc, aux)
            self.feed.on_batch(rows, proc.hit, proc.waveforms, now_ns)

    def _shed_now(self) -> bool:
        """Whether to shed the processing now, from the ring fill. The credit loop holds grants
        at half a ring and resumes at a quarter: shed while the ring drains from one to the
        other, or the board never gets the processing time back; once shedding, go on until
        the ring is almost empty (no flip-flop under overload). Asked again before every chunk
        of a processed batch (a batch of 256 ZS events takes ~50 ms to process)."""
        fill = self.receiver.fill()
        if fill > self.shed_fill * self.receiver.n_slots:
            self._shedding = True
        elif fill <= self.batch:
            self._shedding = False
        return self._shedding

    def _record_shed(self, built: BuiltBatch, now_ns: int) -> None:
        """Record events without processing them (NOT_PROCESSED)."""
        rows = event_rows(built, None, now_ns)
        if self._samples_in_raw():
            # the raw record holds every sample: no second, decoded copy (readers decode it)
            rows["build_flags"] |= SAMPLES_IN_RAW
            ch, bins, adc, aux = _NO_CHANNELS, _NO_SAMPLES, _NO_SAMPLES, aux_rows(built)
        else:
            ch, bins, adc, aux = stored_channels(built, self.lut, "all", None, None)
        self.counters.events_shed += len(built)
        self._write(rows, ch, bins, adc, aux)
        self.feed.on_batch(rows, None, None, now_ns)

    def _samples_in_raw(self) -> bool:
        """Whether shed events leave their samples to the raw record: the writer keeps every
        datagram and the store mode is not ``all`` (which asks for the decoded copy too)."""
        w = self.writer
        return w is not None and w.config.raw and self.store_waveforms != "all"

    def _write(self, rows, ch, bins, adc, aux) -> None:
        if self.writer is None or self.failure is not None:
            return
        try:
            self.writer.append_events(rows, ch, bins, adc, aux)
        except WriterError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> None:
        self.counters.writer_errors += 1
        if self.failure is None:
            self.failure = message
            log.error("writer failed: %s", message)


def _mask(n: int, a: int, z: int) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[a:z] = True
    return m


def _sub_built(built: BuiltBatch, part, a: int, z: int) -> BuiltBatch:
    return BuiltBatch(part, built.event_id[a:z], built.build_flags[a:z])


def _slice_flat(flat: FlatBatch, a: int, z: int) -> FlatBatch:
    return FlatBatch(
        flat.chan_start[a:z],
        flat.n_chan[a:z],
        flat.card,
        flat.chip,
        flat.channel,
        flat.sample_start,
        flat.n_samples,
        flat.bins,
        flat.adc,
    )
