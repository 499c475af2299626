"""The README's calibration workflow in process, for tools/calibration_accuracy.py ``--workflow``.

Per emulator (a scenario and a seed): `agetdaq pedestal --upload` as the DAQ does it (a raw
pedestal pass, the upload of ped/thr, a pass with the card's equalisation on whose table the runs
use: tests/emulated_fe55.py ``EmulatedDaq(pedestals="upload")``), a 30 s calibration run
with the calibration run type's script (``SCRIPT``: calibration-zs.txt) at a random time of the
scenario, written as a run file with that table, and `agetdaq calibrate` on it as a user runs it
(a process; one point per run). Against the truth
(tests/workflow_truth.py): the K-alpha efficiency, the gain of every good point against the true
gain of its own X-rays, and whether a run whose gain stepped gave a good point over the step. The
CI test of the same workflow with real processes is tests/test_calibration_workflow.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from emulated_fe55 import EmulatedDaq, _by_count, pedestal_rows, write_run
from workflow_truth import RunEvents, trend_rows

from agetdaq.readout.acquisition.scripts import RUN_TYPE_SCRIPT
from agetdaq.readout.analysis.calibration.badstrips import BadStrips
from agetdaq.readout.simulation.emulator.scenario import Scenario

RUN_S = 30.0  # the README's calibration run
SCRIPT = RUN_TYPE_SCRIPT["calibration"]  # the README's calibration run script
SCENARIOS = ("calibration", "calibration-noisy", "calibration-steps")
STEP = 0.05  # a true gain span beyond this inside a run or a point is a step
EDGE = 0.1  # a good point over a step: at least this share of its X-rays on each side


@dataclass
class RunResult:
    scenario: str
    seed: int
    t0: float
    efficiency: float
    ka: int
    efficiency_clear: float  # of the K-alpha photons away from the bad strips (calibrate's)
    ka_clear: int
    status: str  # of the run's slice
    stepped: bool  # the true gain of the run's X-rays spans a step
    good: list[tuple[float, float]]  # per good point: gain error, minority share over a step
    bad_strips: int


def one_run(scenario: str, seed: int, workdir: Path) -> RunResult:
    sc = Scenario.load(scenario)
    daq = EmulatedDaq(sc, seed, script=SCRIPT, pedestals="upload")
    rng = np.random.default_rng([seed, 15])
    t0 = float(rng.uniform(0.0, 600.0))
    n_x = int(rng.poisson(sc.fe55.rate_hz * RUN_S))
    n_mu = int(rng.poisson(sc.muon.rate_hz * RUN_S))
    kinds = ["xray"] * n_x + ["muon"] * n_mu
    rng.shuffle(kinds)
    times = t0 + np.sort(rng.uniform(0.0, RUN_S, len(kinds)))
    rows, truths = daq.rows(kinds, times, t0)
    table = pedestal_rows(daq)
    run = write_run(workdir / f"{scenario}-{seed}.h5", rows, pedestals=table)
    out = workdir / f"{scenario}-{seed}"
    proc = subprocess.run(
        [sys.executable, "-m", "agetdaq", "calibrate", str(run), "--output", str(out),
         "--no-plots"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    ev = RunEvents.of(rows, _by_count(truths), BadStrips.from_pedestal_rows(table))
    eff, n = ev.efficiency()
    eff_clear, n_clear = ev.efficiency(clear=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"calibrate failed: {proc.stderr[-2000:]}")
    slices = json.loads((out / "trend.json").read_text())["slices"]
    summary = json.loads((out / "summary.json").read_text())
    good = []
    for p in trend_rows(out / "trend.csv"):
        if p["ok"] == "True":
            good.append((ev.gain_error(p, sc), ev.minority(p, STEP)))
    gains = ev.gain[ev.selected & np.isfinite(ev.gain)]
    return RunResult(
        scenario, seed, t0, eff, n, eff_clear, n_clear, slices[0]["status"] if slices else "none",
        bool(np.ptp(gains) / np.min(gains) > STEP), good, len(summary["bad_strips"]["names"]),
    )  # fmt: skip


def study(seeds: list[int], scenarios: tuple[str, ...] = SCENARIOS) -> list[RunResult]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, scenario in enumerate(scenarios):
            for seed in seeds:
                r = one_run(scenario, seed + 100 * k, Path(tmp))
                print(r, flush=True)
                out.append(r)
    return out


def table(results: list[RunResult]) -> list[str]:
    """Markdown rows per scenario: efficiency, runs by status, steps caught, gain errors."""
    lines = [
        "| scenario | runs | seeds | Kα efficiency away from bad strips (min - max) | "
        "Kα efficiency, all | bad strips | run status "
        "ok/flagged/split/failed | runs with a step: not a good point over it | good points | "
        "gain error mean / RMS / worst |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(r.scenario for r in results):
        rs = [r for r in results if r.scenario == name]
        eff = np.array([r.efficiency_clear for r in rs])
        eff_all = np.array([r.efficiency for r in rs])
        status = [r.status for r in rs]
        stepped = [r for r in rs if r.stepped]
        clean = sum(all(share < EDGE for _, share in r.good) for r in stepped)
        dev = np.array([d for r in rs for d, _ in r.good])
        ka = sum(r.ka_clear for r in rs)
        lines.append(
            f"| {name} | {len(rs)} | {rs[0].seed}-{rs[-1].seed} | "
            f"**{100 * eff.mean():.2f} %** ({100 * eff.min():.2f} - {100 * eff.max():.2f} %, "
            f"{ka} Kα) | {100 * eff_all.mean():.2f} % ({sum(r.ka for r in rs)} Kα) | "
            f"{', '.join(sorted({str(r.bad_strips) for r in rs}))} | "
            f"{'/'.join(str(status.count(s)) for s in ('ok', 'flagged', 'split', 'failed'))} | "
            f"{clean}/{len(stepped)} | {dev.size} | "
            + (
                f"{100 * dev.mean():+.2f} % / {100 * np.sqrt(np.mean(dev**2)):.2f} % / "
                f"{100 * dev[np.argmax(np.abs(dev))]:+.2f} % |"
                if dev.size
                else "- |"
            )
        )
    return lines
