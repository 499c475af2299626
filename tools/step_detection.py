"""Step detection of the slice judge (judge.py) on synthetic 55Fe slices with gain steps at
controlled positions, and its false flags on clean slices.

    .venv/bin/python tools/step_detection.py [--repeats 40] [--seed 900] [--n 2500]

Each slice holds ``--n`` X-rays (a 30 s calibration run at ~85 selected X-rays/s, what
`agetdaq calibrate` judges as one point; ``--n 1000``: the trend's default slice) drawn by
tests/test_calibration_fit.fe55_adc (gamma lines, escape, K-beta, background, threshold) at a
piecewise constant gain. Per layout: the share of slices whose good points (slice or parts) all
stay on one side of every step (``clean``), the good points that hold X-rays from both sides of
a step (``over a step``) with their largest minority share, and the worst gain error of a good
point against the mean true gain of its own X-rays (what tests/test_calibration_workflow.py
checks: 1.5 %). Clean slices (no step, or a slow drift) give the false-flag rate: not plain ok.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_calibration_fit import fe55_adc  # noqa: E402

from agetdaq.readout.analysis.calibration import SliceJudge, SliceXrays  # noqa: E402

GAIN0 = 250.0
RES = 0.18
THRESHOLD = 200.0
TOLERANCE = 0.015


@dataclass
class Layout:
    name: str
    steps: tuple[float, ...]  # positions (share of the slice's X-rays) where the gain toggles
    low: float = 0.8  # the other gain (relative)
    drift: float = 0.0  # linear drift over the slice (relative), no step


def layouts() -> list[Layout]:
    out = [Layout("clean", ()), Layout("drift 0.5 %", (), drift=0.005)]
    out += [Layout(f"one step at {f:.2f}", (f,)) for f in
            (0.01, 0.02, 0.03, 0.05, 0.08, 0.5, 0.92, 0.95, 0.97, 0.98, 0.99)]  # fmt: skip
    out += [Layout(f"one -5 % step at {f:.2f}", (f,), low=0.95) for f in (0.03, 0.5, 0.97)]
    out += [
        Layout("two steps 0.45 / 0.50", (0.45, 0.50)),
        Layout("two steps 0.90 / 0.95", (0.90, 0.95)),
        Layout("two steps 0.02 / 0.97", (0.02, 0.97)),
        Layout("30 s run, 12 s period", ()),  # steps every 0.4 at a random phase
    ]
    return out


def truth_gains(layout: Layout, n: int, rng: np.random.Generator) -> np.ndarray:
    steps = layout.steps
    if layout.name.startswith("30 s run"):
        phase = rng.uniform(0.0, 0.4)
        steps = tuple(s for s in (phase, phase + 0.4, phase + 0.8) if s < 1.0)
    pos = np.arange(n) / n
    toggles = np.searchsorted(np.asarray(steps), pos, side="right")
    start_low = rng.random() < 0.5
    low = (toggles % 2 == 1) != start_low
    g = np.where(low, layout.low, 1.0)
    return g * (1.0 + layout.drift * (pos - 0.5))


def one_slice(gains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Energies at the given true gains (a drift: blocks of 50 X-rays at their mean gain)."""
    out = np.empty(gains.size)
    values = np.unique(gains)
    if values.size <= 4:
        for g in values:
            at = gains == g
            out[at] = fe55_adc(rng, int(at.sum()), GAIN0 * g, RES, threshold_adc=THRESHOLD)
        return out
    for a in range(0, gains.size, 50):
        g = float(gains[a : a + 50].mean())
        out[a : a + 50] = fe55_adc(rng, gains[a : a + 50].size, GAIN0 * g, RES, THRESHOLD)
    return out


def judge_slice(judge: SliceJudge, energy: np.ndarray):
    n = energy.size
    ordinal = np.arange(n)
    xr = SliceXrays(energy, ordinal, ordinal * 0.01, n, (0.0, n * 0.01))
    return judge.judge(xr, 0)


def assess(point, gains: np.ndarray) -> tuple[list[tuple[float, float]], str]:
    """(minority share, gain error) of each good leaf; the slice's status."""
    leaves = point.parts if point.status == "split" else [point]
    out, a = [], 0
    for leaf in leaves:
        b = a + leaf.n_xrays
        if leaf.good:
            g = gains[a:b]
            big = np.ptp(g) > 0.02 * g.min()
            mid = 0.5 * (g.max() + g.min())
            minority = float(min(np.mean(g > mid), np.mean(g < mid))) if big else 0.0
            out.append((minority, leaf.gain / (GAIN0 * g.mean()) - 1.0))
        a = b
    assert a == gains.size, (a, gains.size)
    return out, point.status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--seed", type=int, default=900)
    ap.add_argument("--n", type=int, default=2500)
    ap.add_argument("--only", default="", help="layout names containing this")
    args = ap.parse_args()
    judge = SliceJudge(threshold_adc=THRESHOLD)
    t0 = time.time()
    print(
        f"| layout | slices | status ok/flagged/split/failed | clean | good points over a step "
        f"(largest minority) | worst gain error | beyond {100 * TOLERANCE:.1f} % |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, lay in enumerate(layouts()):
        if args.only and args.only not in lay.name:
            continue
        rng = np.random.default_rng([args.seed, k])
        status, over, worst, beyond, clean = [], [], 0.0, 0, 0
        for _ in range(args.repeats):
            gains = truth_gains(lay, args.n, rng)
            leaves, st = assess(judge_slice(judge, one_slice(gains, rng)), gains)
            status.append(st)
            mins = [m for m, _ in leaves if m > 0]
            over += mins
            clean += not mins
            for _, e in leaves:
                worst = e if abs(e) > abs(worst) else worst
                beyond += abs(e) > TOLERANCE
        counts = "/".join(str(status.count(s)) for s in ("ok", "flagged", "split", "failed"))
        print(f"| {lay.name} | {args.repeats} | {counts} | {clean}/{args.repeats} | "
              f"{len(over)} ({100 * max(over, default=0):.1f} %) | {100 * worst:+.2f} % | "
              f"{beyond} |", flush=True)  # fmt: skip
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
