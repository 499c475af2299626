"""Long reliability runs outside CI (``make soak``): memory at line rate and ``kill -9`` trials.

* **Memory**: one acquisition against the emulator in burst mode (events as fast as the DAQ
  takes them) for ``--minutes`` (default 10); the resident size of this process is sampled
  every second and must stay flat after the warm-up (growth below ``--max-growth-mb``).
* **Kill**: ``--kills`` trials (default 10) of ``agetdaq run`` killed with SIGKILL at a random
  moment; each file must open and hold every event that a reader saw flushed before the kill.

Loopback only; every loop is bounded in time. Prints one JSON object with the figures and exits
non-zero when a check fails. The CI tests use the same functions on a short scale.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

AGETDAQ = [sys.executable, "-m", "agetdaq"]


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), in MB, from /proc."""
    with open(f"/proc/{pid or os.getpid()}/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def memory_soak(
    seconds: float, workdir: Path, warmup_s: float = 20.0, dead_subscriber: bool = True
) -> dict:
    """Run at line rate for ``seconds`` (with a monitoring subscriber that never reads, unless
    ``dead_subscriber`` is False); RSS and ring fill samples after ``warmup_s``, run counters."""
    import zmq

    from agetdaq.readout.acquisition.engine import Acquisition
    from agetdaq.readout.acquisition.settings import Settings
    from agetdaq.readout.simulation.emulator.server import Emulator

    emu = Emulator("calibration", port=0, seed=5, faults={"burst": True}).start()
    settings = Settings().with_daq(
        bec=f"127.0.0.1:{emu.address[1]}", data_dir=str(workdir), store_waveforms="hits"
    )
    acq = Acquisition(settings, publish="tcp://127.0.0.1:*")
    samples: list[tuple[float, float, int, int]] = []
    dead = None
    if dead_subscriber:
        dead = zmq.Context.instance().socket(zmq.SUB)
        dead.setsockopt(zmq.RCVHWM, 1)
        dead.setsockopt(zmq.SUBSCRIBE, b"")
        dead.connect(acq.publisher.address)  # connected, subscribed, never read
    try:
        acq.configure("run")  # kept for the calibration run: zero suppression at the full rate
        acq.start_run("calibration", "soak", workdir / "soak.h5", seconds=seconds)
        t0 = time.monotonic()
        next_sample = t0
        while acq.state == "running" and time.monotonic() - t0 < seconds + 30:
            acq.poll()
            time.sleep(0.05)
            now = time.monotonic()
            if now >= next_sample:
                next_sample += 1.0
                fill = acq.link.receiver.fill()
                samples.append((now - t0, rss_mb(), acq.datapath.counters.events, fill))
                if os.environ.get("SOAK_TRACE"):
                    print(
                        f"{samples[-1][0]:6.1f} s {samples[-1][1]:8.1f} MB {samples[-1][2]} ev",
                        file=sys.stderr,
                    )
        counters = acq.counters()
        losses = acq.losses()
    finally:
        if dead is not None:
            dead.close(linger=0)
        acq.close()
        emu.stop()
    after = [s for s in samples if s[0] >= warmup_s] or samples
    t = np.array([a[0] for a in after])
    m = np.array([a[1] for a in after])
    fills = np.array([a[3] for a in after])
    slope = float(np.polyfit(t, m, 1)[0]) if len(t) > 2 else 0.0
    return {
        "seconds": seconds,
        "events": counters["datapath"]["events"],
        "datagrams": counters["datapath"]["datagrams"],
        "bytes": counters["datapath"]["bytes"],
        "rss_start_mb": float(m[0]),
        "rss_end_mb": float(m[-1]),
        "rss_max_mb": float(m.max()),
        "rss_growth_mb": float(m[-1] - m[0]),
        "rss_first_to_last_minute_mb": float(m[t >= t[-1] - 60].mean() - m[t <= t[0] + 60].mean()),
        "rss_slope_mb_per_min": 60 * slope,
        "ring_fill_max": int(fills.max()),
        "ring_fill_mean": float(fills.mean()),
        "ring_capacity": acq.link.receiver.n_slots,
        "events_per_s": counters["datapath"]["events"] / seconds,
        "publisher": counters["publisher"],
        "losses": losses,
    }


def _events_in(path: Path) -> int:
    from agetdaq.readout.store.reader import RunFile

    try:
        with RunFile(path) as f:
            return f.n_events
    except Exception:  # not created yet, or caught between creation and SWMR mode
        return 0


def kill_trial(
    bec: str,
    workdir: Path,
    name: str,
    delay_s: float,
    min_events: int = 20,
    limit_s: float = 120.0,
) -> dict:
    """Start ``agetdaq run``, wait for data in its file, wait ``delay_s``, SIGKILL it, reopen."""
    from agetdaq.readout.store.reader import RunFile

    out = workdir / f"{name}.h5"
    cmd = [*AGETDAQ, "run", "--board", bec, "--data-dir", str(workdir), "--output", str(out)]
    with open(workdir / f"{name}.log", "wb") as err:
        proc = subprocess.Popen([*cmd, "--seconds", "600"], stdout=subprocess.DEVNULL, stderr=err)
        try:
            end = time.monotonic() + limit_s
            while _events_in(out) < min_events:
                if time.monotonic() > end or proc.poll() is not None:
                    raise RuntimeError(f"{name}: no data reached {out} (see {name}.log)")
                time.sleep(0.1)
            time.sleep(delay_s)
            seen = _events_in(out)  # what a reader saw flushed just before the kill
            t_kill = time.time()
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    with RunFile(out) as f:  # must open: SWMR keeps the file valid up to the last flush
        ev = f.events()
        n_read = sum(1 for _ in f.iter_events(max(0, len(ev) - 50)))
        n_raw = f.n_datagrams
    return {
        "name": name,
        "returncode": proc.returncode,
        "events_seen_before_kill": seen,
        "events_in_file": len(ev),
        "datagrams_in_file": int(n_raw),
        "tail_events_readable": n_read,
        "newest_event_age_s": t_kill - int(ev["time_ns"][-1]) / 1e9 if len(ev) else None,
        "ok": len(ev) >= seen and n_read == min(50, len(ev)),
    }


def kill_trials(n: int, workdir: Path, seed: int = 1) -> list[dict]:
    """``n`` kill trials against one emulator, each killed at a random moment (0..2 s)."""
    from agetdaq.readout.simulation.emulator.server import Emulator

    rng = np.random.default_rng(seed)
    with Emulator("calibration", port=0, seed=9) as emu:
        bec = f"127.0.0.1:{emu.address[1]}"
        return [
            kill_trial(bec, workdir, f"kill{i:02d}", float(rng.uniform(0.0, 2.0))) for i in range(n)
        ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="memory soak length")
    p.add_argument("--kills", type=int, default=10, help="kill -9 trials")
    p.add_argument("--max-growth-mb", type=float, default=50.0)
    p.add_argument("--workdir", help="where the run files go (default: a temporary directory)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agetdaq-soak-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        report: dict = {}
        ok = True
        if args.kills:
            trials = kill_trials(args.kills, work)
            report["kills"] = trials
            report["kills_survived"] = sum(t["ok"] for t in trials)
            ok &= report["kills_survived"] == len(trials)
        if args.minutes > 0:
            mem = memory_soak(60 * args.minutes, work, warmup_s=min(60.0, 20 * args.minutes))
            report["memory"] = mem
            ok &= mem["rss_first_to_last_minute_mb"] < args.max_growth_mb
            ok &= mem["losses"]["socket"]["ring_full"] == 0
        report["ok"] = bool(ok)
        print(json.dumps(report, indent=1, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
