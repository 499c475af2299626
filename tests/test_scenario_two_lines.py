"""Scenario 4, two detector lines side by side with one monitor, real processes only: two
``agetdaq emulate --truth`` (card ids 3 and 5, different seeds), two ``agetdaq serve`` (each its
data directory, mapping file, detector name, ports) and ONE monitor watching both lines
(``agetdaq gui --connect A --control CA --connect B --control CB``). The crew starts and stops a
run on each line from the monitor's line selector. Each file holds its own card's events only,
exactly the events its own emulator read out (truth), and the monitor counted each line apart.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from daq_procs import DaqProcesses
from scenario_crew import Monitor, opens, truth_of, wait_for, xray_efficiency
from test_multi_detector import _mapping_for

from agetdaq.readout.store.reader import RunFile

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(400)]
LINES = {"line-a": (3, 40.0), "line-b": (5, 20.0)}  # card id, 55Fe rate (Hz)
N = 150


def _scenario(rate: float) -> str:
    return f'base = "calibration"\n[source.fe55]\nrate_hz = {rate}\n'


@pytest.fixture(scope="module")
def lines(tmp_path_factory, qapp) -> dict:
    tmp = tmp_path_factory.mktemp("lines")
    procs: dict[str, DaqProcesses] = {}
    for name, (card, rate) in LINES.items():
        work = tmp / name
        work.mkdir()
        (work / "scenario.toml").write_text(_scenario(rate))
        mapping = _mapping_for(card, work / "mapping.csv")
        settings = f'[daq]\nheartbeat_s = 0.5\ndetector = "{name}"\nmapping = "{mapping}"\n'
        procs[name] = DaqProcesses(work, str(work / "scenario.toml"), settings,
                                   emulate_args=("--truth", str(work / "truth.jsonl"), "--bank",
                                                 "0", "--card-id", str(card), "--seed",
                                                 str(card)))  # fmt: skip
    monitor = None
    out: dict = {"tmp": tmp, "seen": {}}
    t0 = time.monotonic()
    try:
        for p in procs.values():
            p.start()
        for p in procs.values():
            p.wait_ready()
        monitor = Monitor([(p.stream, p.control) for p in procs.values()]).start()
        out["selector"] = [monitor.window.selector.itemText(i) for i in range(len(procs))]
        for slot in range(len(procs)):
            monitor.select(slot)
            monitor.start_run("background", "run")
        for slot, name in enumerate(procs):
            monitor.select(slot)
            wait_for(lambda: (monitor.model.status.get("events") or 0) >= N, 90,
                     f"{N} events on {name}")  # fmt: skip
        for slot in range(len(procs)):
            monitor.select(slot)
            monitor.stop_run()
        for slot, name in enumerate(procs):
            monitor.select(slot)
            wait_for(lambda: (monitor.model.status.get("last_run") or {}).get("events"), 30,
                     f"the end of the run on {name}")  # fmt: skip
            monitor.refresh()
            m = monitor.model
            out["seen"][name] = {
                "events": m.status.get("events"),
                "classes": m.class_totals.tolist(),
                "board": m.status.get("board"),
                "name": m.name,
                "gaps": m.link.gaps,
            }
        monitor.close()
        monitor = None
        for p in procs.values():
            p.stop_server()
            out.setdefault("serve_rc", []).append(p.server.returncode)
    finally:
        if monitor is not None:
            monitor.close()
        for p in procs.values():
            p.close()
        print(f"the two lines took {time.monotonic() - t0:.0f} s")
    out["truth"] = {n: p.truth_runs(p.workdir / "truth.jsonl") for n, p in procs.items()}
    out["board"] = {n: p.board for n, p in procs.items()}
    return out


def _run_file(lines: dict, name: str):
    (path,) = (lines["tmp"] / name / "data").glob("R*_background.h5")
    return path


def test_one_monitor_tells_the_lines_apart(lines):
    assert lines["serve_rc"] == [0, 0]
    seen = lines["seen"]
    assert len(set(lines["selector"])) == 2
    for name in LINES:
        assert seen[name]["board"] == lines["board"][name]
        assert seen[name]["gaps"] == 0
    assert seen["line-a"]["events"] != seen["line-b"]["events"]  # different rates, own counts


def test_each_file_holds_its_own_lines_events_only(lines):
    for name, (card, _) in LINES.items():
        path = _run_file(lines, name)
        assert opens(path)["closed"]
        with RunFile(path) as f:
            ev, ch = f.events(), f.channels()
            assert f.metadata()["detector"] == name
        assert set(np.unique(ch["card"]).tolist()) == {card}
        assert (ch["strip"] >= 0).all()  # the line's own mapping finds every strip
        seen = lines["seen"][name]
        assert len(ev) == seen["events"] >= N  # the monitor counted this line's file
        assert seen["classes"] == np.bincount(ev["cls"], minlength=4).tolist()
        truth = truth_of(ev, lines["truth"][name])  # its own emulator's events ...
        other = next(n for n in LINES if n != name)
        with pytest.raises(AssertionError):
            truth_of(ev, lines["truth"][other])  # ... not the other line's
        eff, n_xrays, _ = xray_efficiency(ev, truth)
        assert eff > 0.95 and n_xrays > 0.6 * len(ev)
        print(f"{name}: card {card}, {len(ev)} events, X-ray efficiency {eff:.3f} of {n_xrays}")
