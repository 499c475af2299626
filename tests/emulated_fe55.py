"""Calibration data from the BEC emulator's physics, in process and without sockets (test helper).

The chain is the real one, step by step: PhysicsModel.generate -> the card's discriminators,
pedestal equalisation and zero suppression (agetdaq.readout.simulation.emulator.cardproc, configured
by the shipped board scripts startup.txt, pedestal.txt and run.txt sent to the emulated board's
command interpreter) -> SOE/EOE words and DFRAMEs (agetdaq.protocol.encode) ->
agetdaq.protocol.decode.StreamDecoder -> EventBuilder -> agetdaq.readout.datapath.processing
Processor -> event-table rows (agetdaq.readout.datapath.rows), with the pedestal table of a DAQ
pedestal run made through the same chain. Each event keeps its truth. Also used by
tools/calibration_accuracy.py.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from agetdaq.protocol.commands import parse_reply
from agetdaq.protocol.decode import StreamDecoder, pack_datagrams
from agetdaq.protocol.encode import DataFramer, datagram, max_frame_bytes_for_mtu
from agetdaq.protocol.mapping import StripMapping
from agetdaq.protocol.script import parse_script
from agetdaq.protocol.words import eoe_words, soe_words
from agetdaq.readout import schema as S
from agetdaq.readout.acquisition.scripts import SCRIPTS_DIR
from agetdaq.readout.datapath.build import BuiltBatch, EventBuilder
from agetdaq.readout.datapath.pedestals import table_rows, upload_commands
from agetdaq.readout.datapath.processing.pedestal import PedestalAccumulator
from agetdaq.readout.datapath.processing.pipeline import Processor, ProcessorConfig
from agetdaq.readout.datapath.processing.trigger import TriggerConfig
from agetdaq.readout.datapath.processing.waveforms import FlatBatch, StripLayout, scatter
from agetdaq.readout.datapath.rows import event_rows
from agetdaq.readout.schema import EVENT_DTYPE
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.server import Card
from agetdaq.readout.store.writer import RunWriter, WriterConfig

TICKS_PER_S = 50_000_000
E_FC = 1.602176634e-4  # electron charge, fC
CHUNK = 32  # events per processing batch, as the data path
PED_HISTO_EVENTS = 60  # generator events per pedestal-histogram pass of pedestal.txt
PED_RUN_EVENTS = 120  # events of the DAQ pedestal run


def adc_per_kev(scenario: Scenario, rel_gain: float = 1.0) -> float:
    """The emulator's energy scale: ADC of the X+Y strip-amplitude sum per keV deposited.

    (1000 / W) electrons per keV x gas gain x rel_gain x e x ADC per fC: the sum of the strip
    peaks equals the avalanche charge times adc_per_fc when all strips pulse together.
    """
    d = scenario.detector
    return 1000.0 / d.w_value_ev * d.gain * rel_gain * E_FC * d.adc_per_fc


def drift_time_for_gain(scenario: Scenario, rel_gain: float) -> float:
    """Time (s) at which an exponential gain curve passes ``rel_gain``."""
    g = scenario.gain
    return g.delay_s + g.duration_s * math.log(rel_gain / g.start) / math.log(g.end / g.start)


class EmulatedDaq:
    """One emulated card + the DAQ's decoding and processing; reproducible from ``seed``.
    ``script``: the shipped run script sent last (``run``, ``calibration``: every channel
    read whole, no zero suppression, or ``calibration-zs``: every channel through the card's
    zero suppression, with ``pedestals="upload"``)."""

    def __init__(
        self,
        scenario: Scenario | str,
        seed: int = 1,
        energy_min_adc: float = 0.0,
        script: str = "run",
        pedestals: str = "card",
        processing: ProcessorConfig | None = None,
    ):
        self.scenario = Scenario.load(scenario) if isinstance(scenario, str) else scenario
        self.card = Card(self.scenario, seed=seed, bank_events=0)
        self.physics = self.card.physics
        self.board = self.card.board
        self.rng = np.random.default_rng([seed, 99])
        self.layout = StripLayout.default()
        trigger = TriggerConfig(energy_min=energy_min_adc)
        config = replace(processing or ProcessorConfig(), trigger=trigger)
        self.processor = Processor(self.layout, config)
        self.evcnt = 0
        self.data_bytes = 0  # datagram bytes of the events made by rows() (not pedestal runs)
        self.data_events = 0
        self._seq = 0
        self._builder = EventBuilder()
        self._decoder = StreamDecoder()
        self.run_script("startup")
        if pedestals == "card":  # the card's own equalisation and ZS thresholds (hped)
            self.run_script("pedestal")
            self.run_script("pedestal_data", ["subtract_ped 1"])
        elif pedestals == "upload":  # agetdaq pedestal --upload: raw pass, upload, equalised pass
            self.run_script("pedestal_data")
            self.processor.set_pedestals(self._pedestal_table())
            for line in upload_commands(table_rows(self.processor.table, StripMapping.default())):
                self.command(line)
            self.run_script("pedestal_equalised")
        else:
            raise ValueError(f"pedestals must be 'card' or 'upload', not {pedestals!r}")
        self.processor.set_pedestals(self._pedestal_table())
        self.run_script(script)

    # ---- board ---------------------------------------------------------------------------

    def command(self, line: str) -> str:
        reply = parse_reply(self.board.handle(line))
        if reply.error < 0:
            raise RuntimeError(f"board refused {line!r}: {reply.text}")
        return reply.text

    def run_script(self, name: str, before_start: list[str] | tuple = ()) -> None:
        """The board steps of a shipped script; a histogram pass (serve_target 2) is run on
        generator events where the script sleeps with the SCA enabled."""
        for step in parse_script(SCRIPTS_DIR / f"{name}.txt"):
            if step.kind != "board":
                continue
            if step.text == "sca enable 1":
                for line in before_start:
                    self.command(line)
            self.command(step.text)
            if step.text == "sca enable 1" and self.board.flags["serve_target"] == 2:
                proc, phys = self.card.processor, self.physics
                for _ in range(PED_HISTO_EVENTS):
                    raw = phys.generate("pedestal", 0.0).raw
                    proc.discriminate(
                        raw, phys.pedestal, self.card.frontend.disc_levels, self.card.frontend.up
                    )
                    proc.fill_histos(raw, self.board.hped.offset, self.board.hped.counts)

    def _pedestal_table(self):
        acc = PedestalAccumulator(
            self.processor.chip, per_cell=False, cm_method=self.processor.config.cm_method
        )
        for a in range(0, PED_RUN_EVENTS, CHUNK):
            kinds = ["pedestal"] * min(CHUNK, PED_RUN_EVENTS - a)
            built, _ = self._built(kinds, np.zeros(len(kinds)))
            fill, fpn_fill = self.processor.fill_values()
            dense = scatter(FlatBatch.from_decoded(built.decoded), self.layout, fill, fpn_fill)
            acc.add(dense.strips, dense.present, dense.fpn, dense.fpn_present)
        return acc.result()

    # ---- events --------------------------------------------------------------------------

    def _datagrams(
        self, kinds: list[str], times: np.ndarray, clock_zero_s: float = 0.0
    ) -> tuple[list[bytes], list[dict]]:
        framer = DataFramer(0, max_frame_bytes_for_mtu(1500), eof_on_eoe=True)
        proc, phys = self.card.processor, self.physics
        out, truths = [], []
        for kind, t in zip(kinds, times):
            ev = phys.generate(kind, float(t))
            fe = self.card.frontend
            proc.discriminate(ev.raw, phys.pedestal, fe.disc_levels, fe.up)
            body = proc.body(ev.raw, self.rng.integers(0, 512, size=4).astype(np.int64))
            ticks = round((t - clock_zero_s) * TICKS_PER_S)
            head = soe_words(0 if kind == "pedestal" else 1, ticks, self.evcnt)
            words = np.concatenate(
                [
                    np.array(head, np.uint16),
                    body,
                    np.array(eoe_words(2 * (body.size + 8)), np.uint16),
                ]
            )
            truths.append({**ev.truth, "event_count": self.evcnt})
            self.evcnt += 1
            for frame in framer.add(words):
                out.append(datagram(frame, self._seq & 0xFF, self._seq == 0))
                self._seq += 1
        if kinds and kinds[0] != "pedestal":
            self.data_bytes += sum(len(d) for d in out)
            self.data_events += len(kinds)
        return out, truths

    def _built(
        self, kinds: list[str], times: np.ndarray, clock_zero_s: float = 0.0
    ) -> tuple[BuiltBatch, list[dict]]:
        dgrams, truths = self._datagrams(kinds, times, clock_zero_s)
        buf, lengths = pack_datagrams(dgrams)
        decoded = self._decoder.decode(buf, lengths)
        return self._builder.build(decoded), truths

    def _process(self, built: BuiltBatch):
        """As the data path's process stage: a zero-suppressed batch on the sparse path, else
        dense (the common mode on complete rows, and on zero-suppressed ones when their chip's
        FPN channels were sent whole)."""
        p = self.processor
        flat = FlatBatch.from_decoded(built.decoded)
        if p.wants_sparse(flat):
            return p.process_sparse(flat, built.event_id)[0]
        fill, fpn_fill = p.fill_values()
        dense = scatter(flat, self.layout, fill, fpn_fill)
        return p.process_dense(dense, built.event_id)

    def rows(
        self,
        kinds: list[str],
        times: np.ndarray,
        clock_zero_s: float = 0.0,
        run_start_unix: float = 1.7e9,
    ) -> tuple[np.ndarray, list[dict]]:
        """Event-table rows and truth of events of the given kinds at scenario ``times`` (s);
        the card clock reads 0 and the host clock ``run_start_unix`` at ``clock_zero_s``."""
        times = np.asarray(times, dtype=np.float64)
        out, truths = [], []
        for a in range(0, len(kinds), CHUNK):
            built, tr = self._built(kinds[a : a + CHUNK], times[a : a + CHUNK], clock_zero_s)
            truths += tr
            n = len(built)
            proc = self._process(built)
            rows = event_rows(built, proc.features, 0)
            ticks = rows["timestamp"].astype(np.float64) / TICKS_PER_S
            rows["time_ns"] = ((run_start_unix + ticks + 0.01) * 1e9).astype(np.uint64)
            out.append(rows[:n])
        return np.concatenate(out) if out else np.zeros(0, EVENT_DTYPE), truths

    def calibration_run(
        self, n_xrays: int, time_s: float, duration_s: float = 10.0, run_start_unix: float = 1.7e9
    ) -> tuple[np.ndarray, list[dict]]:
        """A short calibration run starting at ``time_s`` of the scenario (its gain curve):
        ``n_xrays`` X-rays plus the muons expected at the scenario rates, in time order."""
        rates = self.scenario.fe55.rate_hz, self.scenario.muon.rate_hz
        n_mu = int(self.rng.poisson(n_xrays * rates[1] / rates[0])) if rates[0] > 0 else 0
        kinds = ["xray"] * n_xrays + ["muon"] * n_mu
        self.rng.shuffle(kinds)
        times = time_s + np.sort(self.rng.uniform(0.0, duration_s, len(kinds)))
        return self.rows(kinds, times, time_s, run_start_unix)


def write_run(
    path: str | Path,
    rows: np.ndarray,
    run_number: int = 1,
    run_type: str = "calibration",
    energy_min_adc: float = 0.0,
    pedestals: np.ndarray | None = None,
) -> Path:
    """A real run file holding ``rows`` (events table and metadata, no waveforms) and, when
    given, the per-channel pedestal table (``pedestal_rows``)."""
    meta = {
        "run_number": str(run_number),
        "run_type": run_type,
        "comment": "emulated",
        "config": f"[processing.trigger]\nenergy_min = {float(energy_min_adc)}\n",
    }
    with RunWriter(path, EVENT_DTYPE, meta, WriterConfig(raw=False), pedestals) as w:
        empty = np.zeros(0, S.CHANNEL_DTYPE)
        w.append_events(rows, empty, np.zeros(0, np.uint16), np.zeros(0, np.uint16))
    return Path(path)


def pedestal_rows(daq: EmulatedDaq) -> np.ndarray:
    """The DAQ's pedestal table as a run file stores it (dead and noisy strips flagged)."""
    from agetdaq.protocol.mapping import StripMapping
    from agetdaq.readout.datapath.pedestals import table_rows

    return table_rows(daq.processor.table, StripMapping.default())


def with_rates(scenario: Scenario, fe55_hz: float, muon_hz: float) -> Scenario:
    return replace(
        scenario,
        fe55=replace(scenario.fe55, rate_hz=fe55_hz),
        muon=replace(scenario.muon, rate_hz=muon_hz),
    )


# ---- accuracy measurements against the truth (tests and tools/calibration_accuracy.py) ----------


def _by_count(truths: list[dict]) -> dict[int, dict]:
    return {t["event_count"]: t for t in truths}


def gain_sweep(
    gains: tuple[float, ...],
    n_xrays: int = 1000,
    seed: int = 1,
    threshold_adc: float = 200.0,
    daq: EmulatedDaq | None = None,
    script: str = "calibration",
) -> list[dict]:
    """One calibration run per relative gain of the ``gain-drift`` scenario (the first is the
    reference), each cut to exactly ``n_xrays`` selected X-rays and fitted as one trend slice;
    the card runs ``script`` (unless ``daq`` is given). Returns per point the fitted and true
    values (truth: mean gain of the slice's X-rays)."""
    from agetdaq.readout.analysis.calibration import GainTrend, TrendConfig, select_xrays
    from agetdaq.readout.analysis.calibration.runs import EventFilter, calibration_events

    daq = daq or EmulatedDaq("gain-drift", seed, energy_min_adc=threshold_adc, script=script)
    sc = daq.scenario
    cfg = TrendConfig(slice_xrays=n_xrays, threshold_adc=threshold_adc)
    trend = GainTrend(cfg)
    out, ref_truth = [], None
    for k, g in enumerate(gains):
        t0 = drift_time_for_gain(sc, g)
        rows, truths = daq.calibration_run(int(n_xrays * 1.25) + 50, t0, duration_s=0.5)
        events = calibration_events(rows, rows["timestamp"] * 20e-9 + 1000.0 * k)
        mask = np.isfinite(events["energy_adc"]) & select_xrays(events, cfg.selection)
        last = int(np.flatnonzero(mask)[n_xrays - 1]) + 1
        points = trend.feed({c: v[:last] for c, v in events.items()})
        assert len(points) == 1, "the slice closes on its last X-ray"
        p = points[0]
        truth = _by_count(truths)
        tr = [truth[int(c)] for c in rows["event_count"][:last]]
        inner = 30.0 - EventFilter().edge_margin_mm  # photons converting inside the fiducial area
        ka = np.array(
            [
                t["kind"] == "xray"
                and t["line"] == "Ka"
                and max(abs(t["x_mm"]), abs(t["y_mm"])) <= inner
                for t in tr
            ]
        )
        true_gain = float(np.mean([t["gain"] for t, m in zip(tr, mask[:last]) if m and t["gain"]]))
        sel_ka = mask[:last] & np.array([t["kind"] == "xray" and t["line"] == "Ka" for t in tr])
        charge = np.array([t["charge_fc"] for t in tr]) * sc.detector.adc_per_fc
        # measured energy sum over true charge of the slice's selected K-alpha X-rays
        sum_scale = float(np.mean(events["energy_adc"][:last][sel_ka]) / np.mean(charge[sel_ka]))
        ref_truth = ref_truth or true_gain
        fwhm = sc.resolution.fwhm_at(sc.detector.resolution_fwhm, true_gain)
        out.append(
            {
                "gain_true": true_gain / ref_truth,
                "gain_fit": p.gain_rel,
                "gain_err": p.gain_rel_err,
                "gain_err_stat": p.gain_rel_err_stat,
                "status": p.status,
                "fwhm_true": fwhm,
                "fwhm_fit": p.resolution,
                "thr_true_kev": threshold_adc / adc_per_kev(sc, true_gain),
                "thr_adc_kev": p.threshold_kev_adc,
                "thr_spectrum_kev": p.threshold_kev_spectrum,
                "scale": p.gain / adc_per_kev(sc, true_gain),
                "ka_kept": float(mask[:last][ka].mean()),
                "sum_scale": sum_scale,
                "ok": p.ok,
                "reason": p.reason,
            }
        )
    return out


def muon_rejection(
    gains: tuple[float, ...], n_muons: int, seed: int = 2, daq: EmulatedDaq | None = None
) -> float:
    """Fraction of muons the calibration selection (EventFilter + XraySelection) rejects."""
    from agetdaq.readout.analysis.calibration import select_xrays
    from agetdaq.readout.analysis.calibration.runs import calibration_events

    daq = daq or EmulatedDaq("gain-drift", seed)
    kept = total = 0
    for g in gains:
        t = np.full(n_muons, drift_time_for_gain(daq.scenario, g))
        rows, _ = daq.rows(["muon"] * n_muons, t, float(t[0]))
        events = calibration_events(rows, np.zeros(len(rows)))
        kept += int((np.isfinite(events["energy_adc"]) & select_xrays(events)).sum())
        total += n_muons
    return 1.0 - kept / total


def kalpha_charge_loss(daq: EmulatedDaq, gain: float, n: int) -> tuple[float, float]:
    """(mean true X+Y charge, mean charge minus measured energy sum) of the K-alpha X-rays the
    calibration selection keeps among ``n`` X-rays at relative gain ``gain``, ADC."""
    from agetdaq.readout.analysis.calibration import select_xrays
    from agetdaq.readout.analysis.calibration.runs import calibration_events

    t = drift_time_for_gain(daq.scenario, gain)
    rows, truths = daq.rows(["xray"] * n, np.full(n, t), t)
    events = calibration_events(rows, np.zeros(len(rows)))
    keep = np.isfinite(events["energy_adc"]) & select_xrays(events)
    truth = _by_count(truths)
    tr = [truth[int(c)] for c in rows["event_count"]]
    ka = keep & np.array([t["line"] == "Ka" for t in tr])
    charge = np.array([t["charge_fc"] for t in tr])[ka] * daq.scenario.detector.adc_per_fc
    return float(charge.mean()), float(np.mean(charge - events["energy_adc"][ka]))


def gain_map_check(
    n_xrays: int, seed: int = 3, spot_mm: tuple[float, float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted and true relative gain maps (6 x 6) of the ``gain-map`` scenario; ``spot_mm`` =
    (x, y, radius) illuminates a disc only (faster: fewer events for the same statistics)."""
    from agetdaq.readout.analysis.calibration import GainMap
    from agetdaq.readout.analysis.calibration.runs import calibration_events

    sc = Scenario.load("gain-map")
    if spot_mm is not None:
        x, y, r = spot_mm
        sc = replace(sc, fe55=replace(sc.fe55, area="spot", centre_mm=(x, y), radius_mm=r))
    daq = EmulatedDaq(with_rates(sc, 100.0, 0.0), seed)
    gmap = GainMap()
    for a in range(0, n_xrays, 2000):
        k = min(2000, n_xrays - a)
        rows, _ = daq.rows(["xray"] * k, np.zeros(k))
        gmap.fill(calibration_events(rows, np.zeros(len(rows))))
    result = gmap.fit()
    return result.rel_gain, sc.gain.map.grid / np.median(sc.gain.map.grid)
