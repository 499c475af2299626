"""The README's calibration workflow, run as written: every `agetdaq` command of its usage block
from `agetdaq emulate` to `agetdaq calibrate`, in order, each a real process in a fresh directory,
against the emulator; then the X-ray efficiency and the gain against the emulator's truth.

The commands are read from README.md, not copied here. What the test changes: --json (results to
compare), the UDP port (a free one), the scenario (the noisy-detector and gain-step cases), and
three emulator-only options (`--seed`, `--truth FILE` for the truth side file, `--bank 0` in the
gain-step case so that no pre-generated event with a frozen gain is replayed). The truth is matched
to the calibration run's events by the card's event counter (the last run of the truth file: `clr
evcnt` restarts it at every run). Efficiency = K-alpha photons converting inside the fiducial
square that the DAQ processed (events shed under load are counted apart) and `agetdaq calibrate`'s
selection keeps."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_udp_port
from workflow_truth import RunEvents, run_truth, trend_rows

from agetdaq.readout.analysis.calibration.badstrips import bad_strips_from_run
from agetdaq.readout.simulation.emulator.scenario import Scenario
from agetdaq.readout.simulation.emulator.truth import read_truth
from agetdaq.readout.store import open_run

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(900)]  # ~2 min a case

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
AGETDAQ = [sys.executable, "-m", "agetdaq"]
README_PORT = "1122"
STEPS = ("emulate", "pedestal", "run", "run", "calibrate")  # the calibration part of the block
MIN_EFFICIENCY = 0.98  # issue 15: >= 98 % of the 5.9 keV X-rays
GAIN_TOLERANCE = 0.015  # fitted ADC/keV vs the emulator's scale at the X-rays' true gain
# the noisy detector's hit thresholds (5 x ~6.7 ADC) leave more cluster-edge charge out of the
# energy sum: its absolute scale measured 0.3-1.7 % low (a constant, it cancels in gain_rel)
NOISY_GAIN_TOLERANCE = 0.03
EDGE = 0.1  # a step with fewer X-rays than this share on one side of it is an edge step


def readme_workflow() -> list[list[str]]:
    """The README usage block's commands from `agetdaq emulate` to `agetdaq calibrate`."""
    text = (ROOT / "README.md").read_text()
    usage = text.split("\n## Usage", 1)[1].split("\n## ", 1)[0]
    lines = [ln.strip() for ln in usage.splitlines() if ln.startswith("    agetdaq ")]
    cmds = [shlex.split(ln, comments=True) for ln in lines]
    names = [c[1] for c in cmds]
    first, last = names.index("emulate"), names.index("calibrate")
    return cmds[first : last + 1]


def _adapt(argv: list[str], port: int, scenario: str, extra_emulate: list[str]) -> list[str]:
    out = [a.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{port}") for a in argv[1:]]
    if argv[1] in ("pedestal", "run", "calibrate"):
        out.append("--json")  # the result as JSON on stdout, to compare with the truth
    if argv[1] == "emulate":
        if "--port" in out:  # the old spelling; --board 127.0.0.1:PORT is replaced above
            out[out.index("--port") + 1] = str(port)
        out[out.index("--scenario") + 1] = scenario
        out += extra_emulate
    return [*AGETDAQ, *out]


@dataclass
class Workflow:
    """What a run of the README workflow left: its directory, the commands' outputs, the truth."""

    path: Path
    scenario: Scenario
    outputs: dict[str, subprocess.CompletedProcess]
    truth: list[dict]

    def json(self, key: str) -> dict:
        return json.loads(self.outputs[key].stdout)


def run_workflow(
    path: Path,
    scenario: str,
    seed: int,
    bank: bool = True,
    after: dict[str, list[str]] | None = None,
    may_refuse: bool = False,
) -> Workflow:
    """Run the README's calibration commands in ``path``, then the commands ``after`` (argument
    lists after `agetdaq`; "BEC" stands for the board's address); the emulator is stopped at the
    end. Every command must succeed (``may_refuse``: calibrate may exit 1, no good point)."""
    cmds = readme_workflow()
    assert [c[1] for c in cmds] == list(STEPS), "README's calibration workflow changed"
    port = free_udp_port()
    extra = ["--seed", str(seed), "--truth", "truth.jsonl", *([] if bank else ["--bank", "0"])]
    emu_out = (path / "emulate.out").open("w")
    emu = subprocess.Popen(
        _adapt(cmds[0], port, scenario, extra), cwd=path, stdout=emu_out,
        stderr=subprocess.STDOUT, env=ENV, start_new_session=True,
    )  # fmt: skip
    outputs: dict[str, subprocess.CompletedProcess] = {}
    try:
        end = time.monotonic() + 60
        while "listening" not in (path / "emulate.out").read_text():
            assert emu.poll() is None and time.monotonic() < end, "the emulator did not start"
            time.sleep(0.2)
        for key, argv in zip(("pedestal", "physics", "calibration", "calibrate"), cmds[1:]):
            proc = subprocess.run(
                _adapt(argv, port, scenario, []), cwd=path, capture_output=True, text=True,
                timeout=300, env=ENV,
            )  # fmt: skip
            outputs[key] = proc
            refused = key == "calibrate" and proc.returncode == 1 and may_refuse
            assert proc.returncode == 0 or refused, (
                f"{shlex.join(argv)}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
            )
        for key, args in (after or {}).items():
            argv = [*AGETDAQ, *(a.replace("BEC", f"127.0.0.1:{port}") for a in args)]
            proc = subprocess.run(argv, cwd=path, capture_output=True, text=True, timeout=300,
                                  env=ENV)  # fmt: skip
            outputs[key] = proc
            assert proc.returncode == 0, f"{shlex.join(argv)}:\n{proc.stderr[-3000:]}"
    finally:
        if emu.poll() is None:
            emu.send_signal(signal.SIGINT)  # flushes the truth file
            try:
                emu.wait(timeout=30)
            except subprocess.TimeoutExpired:
                emu.kill()
                emu.wait()
        emu_out.close()
    return Workflow(path, Scenario.load(scenario), outputs, read_truth(path / "truth.jsonl"))


CARD_RUNS = 4  # raw pedestals, equalised pedestals, physics run, calibration run


def calibration_run_events(wf: Workflow) -> RunEvents:
    with open_run(wf.path / "cal.h5") as run:
        rows = run.rows()
    bad = bad_strips_from_run(wf.path / "cal.h5")
    return RunEvents.of(rows, run_truth(wf.truth, CARD_RUNS - 1), bad)


def good_points(wf: Workflow) -> list[dict]:
    return [r for r in trend_rows(wf.path / "cal" / "trend.csv") if r["ok"] == "True"]


def check_common(wf: Workflow, ev: RunEvents) -> dict:
    """What every case must show; the figures, for the assertion messages."""
    ped = wf.json("pedestal")
    assert ped["upload_check"]["strips_off"] == 0, ped["upload_check"]
    cal = wf.json("calibration")
    assert cal["stop_reason"] == "30 s elapsed"
    pedcheck = cal["counters"]["stages"]["pedcheck"]
    assert pedcheck["strips_judged"] > 200 and pedcheck["strips_off"] == 0, pedcheck
    assert "do not fit" not in wf.outputs["calibration"].stderr
    assert ev.matched > 0.99, f"only {ev.matched:.1%} of the events have a truth line"
    summary = json.loads((wf.path / "cal" / "summary.json").read_text())
    assert summary["xrays"] + summary["xrays_next_to_bad_strips"] == int(ev.selected.sum())
    eff, n = ev.efficiency()
    eff_clear, n_clear = ev.efficiency(clear=True)
    figures = {
        "efficiency": round(eff, 4), "ka": n, "efficiency_clear": round(eff_clear, 4),
        "ka_clear": n_clear, "shed": round(1 - ev.processed.mean(), 3),
    }  # fmt: skip
    print(wf.scenario.name, figures)  # pytest -s: the figures of the case
    assert n_clear > 100, figures  # fewer when the machine is loaded (events shed, slow emulator)
    assert eff_clear >= MIN_EFFICIENCY, figures
    return figures


@pytest.fixture(scope="module")
def default_case(tmp_path_factory) -> tuple[Workflow, RunEvents]:
    # after the README: a run with the raw table of `pedestal --upload`'s first pass (the
    # mistake of issue 15: a table that no longer fits what the card sends)
    stale = ["run", "--board", "BEC", "--pedestals", "data/R00001_pedestal.h5", "--script",
             "calibration", "--run-type", "calibration", "--seconds", "5",
             "-o", "stale.h5", "--json"]  # fmt: skip
    wf = run_workflow(tmp_path_factory.mktemp("readme"), "calibration", seed=41,
                      after={"stale": stale})  # fmt: skip
    return wf, calibration_run_events(wf)


def test_readme_workflow_keeps_the_xrays_and_measures_the_gain(default_case) -> None:
    wf, ev = default_case
    figures = check_common(wf, ev)
    assert figures["efficiency"] == figures["efficiency_clear"], figures  # no bad strip
    points = good_points(wf)
    assert len(points) == 1 and points[0]["status"] == "ok", points
    dev = ev.gain_error(points[0], wf.scenario)
    assert abs(dev) < GAIN_TOLERANCE, (dev, points[0])
    fwhm = float(points[0]["resolution"]) / wf.scenario.detector.resolution_fwhm - 1.0
    assert abs(fwhm) < 0.1, points[0]


def test_pedestals_that_do_not_fit_are_reported_within_seconds(default_case) -> None:
    """The raw table of `agetdaq pedestal --upload`'s first pass, used after the upload: the run
    says so in its log and in the status (the monitor's banner shows its message), which its run
    file keeps, within its 5 s; the README's runs never do."""
    wf, _ = default_case
    assert wf.json("pedestal")["raw_file"] == "data/R00001_pedestal.h5"
    stale = wf.outputs["stale"]
    notice = re.search(r"WARNING .*pedestals do not fit the data: \d+ of \d+ strips", stale.stderr)
    assert notice, stale.stderr[-3000:]
    # status rows are written while the run is running: the notice came within its 5 s
    with open_run(wf.path / "stale.h5") as run:
        status = run.status()
    assert any("do not fit" in s.get("message", "") for s in status), status
    pedcheck = json.loads(stale.stdout)["counters"]["stages"]["pedcheck"]
    assert pedcheck["strips_off"] > 50, pedcheck
    for key in ("physics", "calibration"):
        assert "do not fit" not in wf.outputs[key].stderr


def test_noisy_detector(tmp_path) -> None:
    """6 ADC noise, 4 ADC common mode, 8 dead and 8 noisy strips: the pedestal run flags the
    bad strips, and the X-rays away from them (those calibrate uses) are kept."""
    wf = run_workflow(tmp_path, "calibration-noisy", seed=43)
    ev = calibration_run_events(wf)
    check_common(wf, ev)
    bad = bad_strips_from_run(wf.path / "cal.h5")
    assert bad is not None and len(bad.names) >= 14, bad  # 8 dead + 8 noisy
    points = good_points(wf)
    assert len(points) == 1, points
    assert abs(ev.gain_error(points[0], wf.scenario)) < NOISY_GAIN_TOLERANCE, points[0]


def test_gain_steps_are_split_or_refused(tmp_path) -> None:
    """Gain 100 % <-> 80 % every 12 s: a 30 s run holds at least two steps; no good point has a
    step inside with a tenth of its X-rays on each side (a part that still holds a step is
    split again or refused; the X-rays around each cut are left out), and every good point has
    the gain of its own X-rays."""
    wf = run_workflow(tmp_path, "calibration-steps", seed=47, bank=False, may_refuse=True)
    ev = calibration_run_events(wf)
    check_common(wf, ev)
    trend = json.loads((wf.path / "cal" / "trend.json").read_text())
    slices = trend["slices"]
    assert len(slices) == 1 and slices[0]["status"] in ("split", "failed"), slices
    points = good_points(wf)
    refused = wf.outputs["calibrate"].returncode == 1
    assert refused == (not points), trend  # exit 1 exactly when no good point came out
    for p in points:
        # a step inside a good point: at most an edge (the run's first or last seconds)
        assert ev.minority(p) < EDGE, f"a good point over a step: {p}"
        assert abs(ev.gain_error(p, wf.scenario)) < GAIN_TOLERANCE, p
