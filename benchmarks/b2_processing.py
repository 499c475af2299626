"""B2: online processing throughput (pedestal + common mode + k-sigma hits + features + trigger).

Synthetic events of 240 strips x 512 samples (70 % 5.9 keV X-rays, 15 % muons, 15 % noise),
rounded to whole ADC counts as the card delivers them, go through
:class:`agetdaq.readout.datapath.processing.Processor` with a pedestal table and FPN common mode.
References, same run: a numpy copy of each event (240 x 512 float32) out of the same batch, and
the numpy reference chain (:func:`agetdaq.readout.datapath.processing.reference.process_ref`) on
a subset. The common mode without FPN channels (median of the quiet strips) against the FPN path,
measured alternately (target >= 0.5).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agetdaq.readout.datapath.processing import (
    PedestalAccumulator,
    Processor,
    ProcessorConfig,
    StripLayout,
)
from agetdaq.readout.datapath.processing.reference import process_ref
from agetdaq.readout.datapath.processing.synthetic import SyntheticDetector
from benchmarks.common import best_time, make_row

ID = "B2"
TARGET_COPY_RATIO = 0.5
TARGET_SPEEDUP = 2.0
TARGET_MEDIAN_VS_FPN = 0.5


def make_events(det: SyntheticDetector, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(strips, fpn) of a shuffled X-ray / muon / noise mix."""
    n_mu = n * 15 // 100
    n_noise = n * 15 // 100
    n_x = n - n_mu - n_noise
    parts = [det.xrays(n_x)[:2], det.muons(n_mu)[:2], det.baseline(n_noise)[:2]]
    order = det.rng.permutation(n)
    strips = np.rint(np.concatenate([p[0] for p in parts])[order])  # whole ADC counts
    fpn = np.rint(np.concatenate([p[1] for p in parts])[order])
    return strips, fpn


def _vs_copy(proc: Processor, strips: np.ndarray, fpn: np.ndarray, repeat: int):
    """(processing s, copy s) for the whole batch, measured interleaved so that load from other
    processes hits both; the copy moves each event out of the same batch into one buffer."""
    buf = np.empty(strips.shape[1:], np.float32)

    def copy_all() -> None:
        for i in range(strips.shape[0]):
            np.copyto(buf, strips[i])

    proc.process(strips[:4], fpn[:4])  # compile / cache load
    t_proc = t_copy = float("inf")
    for _ in range(repeat):
        t_proc = min(t_proc, best_time(lambda: proc.process(strips, fpn), 1))
        t_copy = min(t_copy, best_time(copy_all, 1))
    return t_proc, t_copy


def _vs_reference(proc: Processor, strips: np.ndarray, fpn: np.ndarray, repeat: int):
    """(processing s, numpy reference s) on the same events."""
    fpn_present = np.ones(fpn.shape[:3], np.bool_)
    present = np.ones(strips.shape[:2], np.bool_)
    ref_proc = Processor(proc.layout, proc.config, proc.table)
    t_ref = best_time(lambda: process_ref(ref_proc, strips, fpn, fpn_present, present), repeat)
    t_proc = best_time(lambda: proc.process(strips, fpn, fpn_present, present), repeat)
    return t_proc, t_ref


def run(quick: bool) -> list[dict[str, Any]]:
    n_events, n_ref, repeat = (200, 50, 9) if quick else (2000, 300, 9)
    layout = StripLayout.default()
    det = SyntheticDetector(layout, seed=2)
    acc = PedestalAccumulator(layout.chip, cm_method="fpn")
    ped_strips, ped_fpn, _ = det.baseline(100)
    acc.add(np.rint(ped_strips), fpn=np.rint(ped_fpn))
    table = acc.result()
    del ped_strips, ped_fpn
    strips, fpn = make_events(det, n_events)
    rows: list[dict[str, Any]] = []
    for mode, target in (("table", TARGET_COPY_RATIO), ("running", None)):
        proc = Processor(layout, ProcessorConfig(baseline=mode, cm_method="fpn"), table)
        t_proc, t_copy = _vs_copy(proc, strips, fpn, repeat)
        share = float(np.mean(proc.process(strips, fpn).features["cls"] == 1))
        rows.append(
            make_row(ID, f"process {mode}+fpn, {n_events} ev 240x512 ({share:.0%} X-ray-like)",
                     n_events / t_proc, "events/s", reference=n_events / t_copy,
                     ref_unit="events/s (numpy copy)", target=target)
        )  # fmt: skip
    proc = Processor(layout, ProcessorConfig(baseline="table", cm_method="fpn"), table)
    t_proc, t_ref = _vs_reference(proc, strips[:n_ref], fpn[:n_ref], max(1, repeat // 2))
    rows.append(
        make_row(ID, f"process table+fpn vs numpy reference ({n_ref} ev)", n_ref / t_proc,
                 "events/s", reference=n_ref / t_ref, ref_unit="events/s (numpy reference)",
                 target=TARGET_SPEEDUP)
    )  # fmt: skip
    med = Processor(layout, ProcessorConfig(baseline="table", cm_method="median"), table)
    fpn_p = Processor(layout, ProcessorConfig(baseline="table", cm_method="fpn"), table)
    n_med = max(20, n_events // 4)
    med.process(strips[:2], fpn[:2])
    t_med = t_fpn = float("inf")
    for _ in range(max(1, repeat // 2)):  # alternated: a change of load hits both
        t_med = min(t_med, best_time(lambda: med.process(strips[:n_med], fpn[:n_med]), 1))
        t_fpn = min(t_fpn, best_time(lambda: fpn_p.process(strips[:n_med], fpn[:n_med]), 1))
    rows.append(make_row(ID, "process table+median (common mode without FPN) vs table+fpn",
                         n_med / t_med, "events/s", reference=n_med / t_fpn,
                         ref_unit="events/s (FPN path)", target=TARGET_MEDIAN_VS_FPN))  # fmt: skip
    return rows
