"""Full accuracy study of the 55Fe calibration against the BEC emulator's truth.

    .venv/bin/python tools/calibration_accuracy.py [--sweep] [--cases all|NAME,...]
                                                   [--repeats 5] [--seed 300] [--write-docs]

``--sweep``: gain 100 % -> 20 % (gain-drift scenario, resolution following the gain), 1 000
selected X-rays per point, ``--repeats`` independent emulators: with the shipped calibration run
script (readout/scripts/calibration.txt: every channel read whole), with calibration-zs.txt (the
card's zero suppression on every channel, thresholds uploaded at 4 sigma), and with the physics
run script (run.txt: hit channels only, zero suppression); muon rejection; the 6 x 6 gain map
over the full area.

``--cases``: the cases of issue 15 streamed through the trend as a DAQ would feed it (slices of
1 000 X-rays; tools/calibration_cases.py): gain steps inside slices at 100 % and at 30 % gain, a
day/night oscillation, a fast fall to 30 %, the CAST-like drift, constant gain at 12 % and 25 %
FWHM, a noisy detector with dead and noisy strips, a gain-map gradient, muons at 40 Hz beside the
source. Per case: slices by status, the step detection rate and the false-flag rate, the gain
and FWHM/E errors of the good points, the pulls of gain_rel, and for the maps the bias next to
dead strips with and without the bad-strip list. Seeds from ``--seed`` on, not used elsewhere.

``--pulls N``: the pulls of gain_rel over N independent emulators (a reference slice and one at
50 % gain each), with and without the reference's error.

``--workflow N``: the README's workflow (pedestal run with upload, 30 s calibration run,
``agetdaq calibrate``) on N emulators of each of the scenarios calibration, calibration-noisy and
calibration-steps (tools/calibration_workflow.py): K-alpha efficiency, gain of the good points
against the truth, steps in the run never a good point. Seeds from ``--seed`` + 2000.

``--write-docs`` replaces the generated blocks of docs/CALIBRATION.md. The in-process chain is
tests/emulated_fe55.py (the CI tests are tests/test_calibration_emulator*.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from emulated_fe55 import (  # noqa: E402
    EmulatedDaq,
    gain_map_check,
    gain_sweep,
    muon_rejection,
)

GAINS = (1.0, 0.8, 0.6, 0.4, 0.3, 0.2)
THRESHOLD_ADC = 200.0
DOC = ROOT / "docs" / "CALIBRATION.md"
BEGIN, END = "<!-- emulator-figures:begin -->", "<!-- emulator-figures:end -->"
CASES_BEGIN, CASES_END = "<!-- emulator-cases:begin -->", "<!-- emulator-cases:end -->"
PULLS_BEGIN, PULLS_END = "<!-- emulator-pulls:begin -->", "<!-- emulator-pulls:end -->"
FLOW_BEGIN, FLOW_END = "<!-- emulator-workflow:begin -->", "<!-- emulator-workflow:end -->"


def sweep(
    repeats: int, script: str, extra: tuple[str, ...] = (), pedestals: str = "card"
) -> dict[float, list[dict]]:
    """The gain sweep on ``repeats`` emulators running ``script`` then the board commands
    ``extra``; ``pedestals``: the card's own (pedestal.txt) or uploaded by the DAQ."""
    out: dict[float, list[dict]] = {g: [] for g in GAINS}
    for r in range(repeats):
        daq = EmulatedDaq("gain-drift", 100 + r, THRESHOLD_ADC, script=script, pedestals=pedestals)
        for line in extra:
            daq.command(line)
        for p in gain_sweep(GAINS, 1000, threshold_adc=THRESHOLD_ADC, daq=daq):
            out[min(GAINS, key=lambda g, t=p["gain_true"]: abs(g - t))].append(p)
    return out


def _stats(values: list[float]) -> tuple[float, float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size:
        return np.nan, np.nan, np.nan
    return float(v.mean()), float(v.std()), float(np.sqrt(np.mean(v**2)))


def sweep_table(res: dict[float, list[dict]], title: str) -> list[str]:
    lines = [
        f"**{title}**",
        "",
        "| gain | fits ok | FWHM/E (cfg) | gain bias | gain RMS | FWHM/E bias | FWHM/E RMS | "
        "threshold (truth) | thr bias (DAQ thr / gain) | spectral turn-on | Kα kept | "
        "energy scale |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_gain, all_fwhm, all_thr = [], [], []
    for g in GAINS[1:]:
        pts = res[g]
        dg = [p["gain_fit"] / p["gain_true"] - 1 for p in pts]
        df = [p["fwhm_fit"] / p["fwhm_true"] - 1 for p in pts]
        dt = [p["thr_adc_kev"] - p["thr_true_kev"] for p in pts]
        spec = [p["thr_spectrum_kev"] for p in pts]
        all_gain += dg
        all_fwhm += df
        all_thr += dt
        gb, _, gr = _stats(dg)
        fb, _, fr = _stats(df)
        tb, _, tr = _stats(dt)
        sm, ss, _ = _stats(spec)
        lines.append(
            f"| {100 * g:.0f} % | {sum(p['ok'] for p in pts)}/{len(pts)} | "
            f"{100 * pts[0]['fwhm_true']:.1f} % | {100 * gb:+.2f} % | "
            f"{100 * gr:.2f} % | {100 * fb:+.1f} % | {100 * fr:.1f} % | "
            f"{np.mean([p['thr_true_kev'] for p in pts]):.2f} keV | {tb:+.3f} keV "
            f"(RMS {tr:.3f}) | {sm:.2f} +- {ss:.2f} keV | "
            f"{100 * np.mean([p['ka_kept'] for p in pts]):.1f} % | "
            f"{np.mean([p['scale'] for p in pts]):.4f} |"
        )
    g_rms, f_rms, t_rms = (_stats(v)[2] for v in (all_gain, all_fwhm, all_thr))
    lines.append(
        f"| all | | | | **{100 * g_rms:.2f} %** | | **{100 * f_rms:.1f} %** "
        f"| | RMS **{t_rms:.3f} keV** | | | |"
    )
    return lines


def sweep_block(args: argparse.Namespace) -> list[str]:
    t0 = time.time()
    calib = sweep(args.repeats, "calibration")
    calib_zs = sweep(args.repeats, "calibration-zs", pedestals="upload")
    physics = sweep(args.repeats, "run")
    rejection = muon_rejection((1.0, 0.5, 0.2), args.muons // 3, seed=7)
    fitted, truth = gain_map_check(args.map_xrays, seed=8)
    seen = np.isfinite(fitted)
    dev = fitted[seen] - truth[seen]
    return [
        BEGIN,
        f"Generated by `tools/calibration_accuracy.py --sweep --repeats {args.repeats}` "
        f"({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s). Bias = mean of fit / truth - 1 "
        "over the repeats, RMS = root mean square of fit / truth - 1 (the target's measure); "
        "the 100 % point is the reference (gain_rel = 1 by definition) and is left out.",
        "",
        *sweep_table(calib, "Calibration run script (calibration.txt: every channel read whole)"),
        "",
        *sweep_table(
            calib_zs,
            "calibration-zs.txt (every channel through the card's zero suppression, "
            "thresholds uploaded at 4 sigma)",
        ),
        "",
        *sweep_table(physics, "Physics run script (run.txt: hit channels only, aget mode 0)"),
        "",
        f"Muons rejected by the calibration selection: **{100 * rejection:.1f} %** "
        f"({args.muons // 3 * 3} muons at 100 %, 50 % and 20 % gain).",
        "",
        f"Gain map ({args.map_xrays} X-rays over the full area, 6 x 6 regions, cell (4, 1) at "
        f"90 %): that cell **{fitted[1, 4]:.3f}**; all {int(seen.sum())} fitted regions within "
        f"{np.max(np.abs(dev)):.3f} of the truth (RMS {np.sqrt(np.mean(dev**2)):.3f}).",
        END,
    ]


def _pct(v: float, digits: int = 2, sign: bool = False) -> str:
    return "-" if not np.isfinite(v) else f"{100 * v:{'+' if sign else ''}.{digits}f} %"


def _ratio(pair: tuple[int, int]) -> str:
    return f"{pair[0]}/{pair[1]}" if pair[1] else "-"


def cases_block(args: argparse.Namespace) -> list[str]:
    from calibration_cases import Stream, cases, measure

    t0 = time.time()
    names = args.cases.split(",")
    chosen = [(k, c) for k, c in enumerate(cases()) if args.cases == "all" or c.name in names]
    rows, maps, all_pulls = [], [], []
    for k, case in chosen:  # a case's seed does not depend on which others run
        m = measure(Stream(case, args.seed + k).run())
        print(case.name, m, flush=True)
        all_pulls.append((m["pull_mean"], m["pull_std"], m["good_points"]))
        muons = m["muons"]
        mu = f"{100 * (1 - muons[1] / muons[0]):.1f} %" if muons[0] > 100 else "-"
        rows.append(
            f"| {case.name} | {args.seed + k} | {m['slices']} | {m['ok']}/{m['flagged']}/"
            f"{m['split']}/{m['failed']} | {_ratio(m['det_1_5'])} | {_ratio(m['det_5_10'])} | "
            f"{_ratio(m['det_10'])} | {_ratio(m['det_edge'])} | {_ratio(m['drift'])} | "
            f"{m['clean']} | {_pct(m['false_flag'], 1)} | "
            f"{m['good_points']} | {_pct(m['gain_bias'], 2, True)} | {_pct(m['gain_rms'])} | "
            f"{m['pull_mean']:+.2f} / {m['pull_std']:.2f} ({m['pull_within']:.2f}) | "
            f"{_pct(m['fwhm_fitted_bias'], 1, True)} | {_pct(m['fwhm_bias'], 1, True)} "
            f"(RMS {_pct(m['fwhm_rms'], 1)}) | {mu} |"
        )
        if case.gain_map:
            maps.append(
                f"| {case.name} | {m['bad_strips'] or 'none'} | {m['map_crossed_cells']} | "
                f"{_pct(m['map_without_crossed_mean'], 2, True)} "
                f"(worst {_pct(m['map_without_crossed_worst'], 1, True)}) | "
                f"{_pct(m['map_with_crossed_mean'], 2, True)} "
                f"(worst {_pct(m['map_with_crossed_worst'], 1, True)}) | "
                f"{m['map_without_cells']} / {m['map_with_cells']} | "
                f"{_pct(m['map_with_clean_rms'])} | {_pct(m['map_with_rms'])} | "
                f"{_pct(m['map_scale_shift'], 1, True)} |"
            )
    n = sum(p[2] for p in all_pulls)
    mean = sum(p[0] * p[2] for p in all_pulls if p[2]) / max(n, 1)
    lines = [
        CASES_BEGIN,
        f"Generated by `tools/calibration_accuracy.py --cases {args.cases} --seed {args.seed}` "
        f"({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s; seeds not used by any test or "
        "earlier study). Slices of 1 000 X-rays fed in time order (calibration.txt, DAQ "
        f"threshold {THRESHOLD_ADC:.0f} ADC). Status = ok/flagged/split/failed slices. Steps "
        "caught = slices whose true gain jumped by 1-5 %, 5-10 %, > 10 % with at least 10 % of "
        "their X-rays on each side, split or refused; edge steps: a jump > 5 % with fewer than "
        "10 % of the X-rays on one side; drifts: the true gain moved by > 1 % without a jump, "
        "split or refused; clean = slices whose true gain changed by < 0.2 %; false flags = "
        "clean slices not plain ok. Gain error and pulls over the good points (slices and parts, "
        "the reference left out) against the mean true gain of their own X-rays; FWHM/E: the "
        "bias of the fitted and of the intrinsic resolution (in-slice drift and, where the map "
        "is measured, its spread removed) against the emulator's configured one.",
        "",
        "| case | seed | slices | status | steps 1-5 % caught | 5-10 % | > 10 % | "
        "edge steps > 5 % | drifts > 1 % | clean | "
        "false flags | good points | gain bias | gain RMS | pull mean / width (expected) | "
        "FWHM/E fitted | FWHM/E intrinsic | "
        "muons rejected |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Pulls of gain_rel: the points of a case share its reference slice, whose own error "
        "moves them together: the mean pull of a case is that one draw, and the width inside a "
        "case is expected at the slices' share of the error (in brackets). Mean of the case "
        f"means: {mean:+.2f} ({len(all_pulls)} cases, {n} good points); the pulls over "
        "independent references are in the next block.",
    ]
    if maps:
        lines += [
            "",
            "Gain maps (6 x 6, all the case's X-rays): error of the cells crossed by bad strips "
            "(relative to the clean cells) without and with the bad-strip list (X-rays within "
            "1 mm left out), cells fitted without / with, RMS of the clean cells and of all "
            "cells against the truth (with the list), and how far the map's scale (median "
            "reference) drops without the list.",
            "",
            "| case | bad strips | crossed cells | crossed, without list | crossed, with list | "
            "cells fitted | clean RMS | all RMS | scale without list |",
            "|---|---|---|---|---|---|---|---|---|",
            *maps,
        ]
    return [*lines, CASES_END]


def pulls_block(args: argparse.Namespace) -> list[str]:
    """Pulls of gain_rel over independent emulators: a reference slice at 100 % and a slice
    at 50 % gain each (1 000 X-rays), the reference's error included or not."""
    t0 = time.time()
    pulls, pulls_stat, statuses = [], [], []
    for r in range(args.pulls):
        daq = EmulatedDaq("gain-drift", seed=args.seed + 1000 + r, energy_min_adc=THRESHOLD_ADC,
                          script="calibration")  # fmt: skip
        ref, p = gain_sweep((1.0, 0.5), 1000, threshold_adc=THRESHOLD_ADC, daq=daq)
        statuses += [ref["status"], p["status"]]
        if p["ok"]:
            pulls.append((p["gain_fit"] - p["gain_true"]) / p["gain_err"])
            pulls_stat.append((p["gain_fit"] - p["gain_true"]) / p["gain_err_stat"])
    pulls, pulls_stat = np.array(pulls), np.array(pulls_stat)
    return [
        PULLS_BEGIN,
        f"Generated by `tools/calibration_accuracy.py --pulls {args.pulls} --seed {args.seed}` "
        f"({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s): {args.pulls} independent "
        "emulators (seeds from "
        f"{args.seed + 1000}), each a reference slice at 100 % gain and a slice at 50 % "
        "(1 000 X-rays each, calibration.txt), pull = (gain_rel - truth) / error: with the "
        f"reference's error **mean {pulls.mean():+.2f}, width {pulls.std():.2f}**; without it "
        f"(the slice's own error only, as before) mean {pulls_stat.mean():+.2f}, width "
        f"{pulls_stat.std():.2f}. Slices not plain ok: "
        f"{sum(s != 'ok' for s in statuses)} of {len(statuses)}.",
        PULLS_END,
    ]


def workflow_block(args: argparse.Namespace) -> list[str]:
    from calibration_workflow import EDGE, SCRIPT, STEP, study, table

    t0 = time.time()
    first = args.seed + 2000
    results = study(list(range(first, first + args.workflow)))
    return [
        FLOW_BEGIN,
        f"Generated by `tools/calibration_accuracy.py --workflow {args.workflow} --seed "
        f"{args.seed}` ({time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s; seeds not used by "
        "any test or earlier study: the scenario's k-th at seed + 2000 + 100 k). Per emulator: "
        "pedestal run with the upload (raw pass, ped/thr upload, pass with the card's "
        f"equalisation on: the table the run uses), a 30 s calibration run ({SCRIPT}.txt) at a "
        "random time of the scenario, `agetdaq calibrate` on its run file (one point per run). "
        "Kα efficiency: K-alpha photons converting inside the fiducial square that calibrate's "
        "selection keeps. A run with a step: the true gain of its X-rays spans more than "
        f"{100 * STEP:.0f} %; counted when no good point has a step inside with at least "
        f"{100 * EDGE:.0f} % of its X-rays on each side (a part that still holds a step is split "
        "again or refused; the X-rays around each cut are left out). Gain error: fitted ADC/keV "
        "of each good point (the run's slice or its parts) over the emulator's scale at the mean "
        "true gain of its own X-rays.",
        "",
        *table(results),
        FLOW_END,
    ]


def _replace_block(doc: str, text: str, begin: str, end: str) -> str:
    if begin in doc and end in doc:
        head, rest = doc.split(begin, 1)
        return head + text + rest.split(end, 1)[1]
    return doc.rstrip("\n") + "\n\n" + text + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="the gain sweep (three run scripts)")
    ap.add_argument("--cases", default="", help="'all' or case names, comma-separated")
    ap.add_argument("--seed", type=int, default=300, help="first seed of the cases")
    ap.add_argument("--pulls", type=int, default=0, help="independent emulators for the pulls")
    ap.add_argument("--workflow", type=int, default=0, help="emulators per workflow scenario")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--map-xrays", type=int, default=40_000)
    ap.add_argument("--muons", type=int, default=1000)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if not (args.sweep or args.cases or args.pulls or args.workflow):
        ap.error("give --sweep, --cases, --pulls and/or --workflow")
    blocks = []
    if args.sweep:
        blocks.append(("\n".join(sweep_block(args)), BEGIN, END))
    if args.cases:
        blocks.append(("\n".join(cases_block(args)), CASES_BEGIN, CASES_END))
    if args.pulls:
        blocks.append(("\n".join(pulls_block(args)), PULLS_BEGIN, PULLS_END))
    if args.workflow:
        blocks.append(("\n".join(workflow_block(args)), FLOW_BEGIN, FLOW_END))
    for text, _, _ in blocks:
        print(text)
    if args.write_docs:
        doc = DOC.read_text()
        for text, begin, end in blocks:
            doc = _replace_block(doc, text, begin, end)
        DOC.write_text(doc)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
