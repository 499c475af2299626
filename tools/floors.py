"""Honest floors (``make floors``): every dependency at its declared lower bound, on the oldest
Python that ``requires-python`` admits, runs a smoke run.

``python tools/floors.py pins [EXTRA ...]`` prints the requirements pinned at the lower bounds of
pyproject.toml (``name==floor``, markers kept), the given extras' too; ``python tools/floors.py
smoke [EXTRA ...]`` (in the venv that has them) checks that the installed versions are those
floors, then runs an emulator, a short run with the Prometheus endpoint scraped, ``agetdaq
inspect`` of its run file and, with the ``gui`` extra, the monitor replaying that run file
offscreen into a screenshot.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "agetdaq"]
# PyQt6 X needs the Qt libraries of release X: it declares only PyQt6-Qt6 >= X, and PyQt6 6.6.0
# on PyQt6-Qt6 6.6.3 or 6.11 fails to load (a private Qt symbol), so the floor pins both.
COMPANIONS = {"PyQt6": "PyQt6-Qt6"}
_REQ = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)\s*(;.*)?$")


def _pyproject() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(extras: tuple[str, ...] = ()) -> list[str]:
    """``name==floor[; marker]`` of every dependency (and of the given extras)."""
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    out = []
    for req in reqs:
        m = _REQ.match(req)
        if not m:
            raise SystemExit(f"pyproject.toml: {req!r} has no '>=' lower bound")
        name, floor, marker = m.groups()
        out.append(f"{name}=={floor}{marker or ''}")
        if name in COMPANIONS:
            out.append(f"{COMPANIONS[name]}=={floor}")
    return out


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_board(port: int, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        while time.monotonic() < end:
            s.sendto(b"version", ("127.0.0.1", port))
            try:
                s.recv(4096)
                return
            except OSError:
                time.sleep(0.2)
    raise SystemExit("the emulator did not answer")


def check_versions(extras: tuple[str, ...] = ()) -> None:
    """The installed versions are the pinned floors."""
    wrong = []
    for pin in pins(extras):
        name, _, rest = pin.partition("==")
        floor, _, marker = rest.partition(";")
        if marker and not _marker_true(marker):
            continue
        have = metadata.version(name)
        if _norm(have) != _norm(floor):
            wrong.append(f"{name} {have} (floor {floor})")
        print(f"  {name}=={have}")
    if wrong:
        raise SystemExit("not at the floors: " + ", ".join(wrong))


def _norm(v: str) -> tuple[int, ...]:
    parts = [int(x) for x in re.findall(r"\d+", v)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def _marker_true(marker: str) -> bool:
    m = re.match(r"\s*python_version\s*<\s*'(\d+)\.(\d+)'", marker)
    if not m:
        raise SystemExit(f"unsupported marker {marker!r}")
    return sys.version_info[:2] < (int(m.group(1)), int(m.group(2)))


def smoke(extras: tuple[str, ...] = ()) -> None:
    print(f"Python {sys.version.split()[0]}; dependencies at their floors:")
    check_versions(extras)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bec, metrics = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
        settings = work / "daq.toml"
        settings.write_text(
            f'[daq]\nbec = "127.0.0.1:{bec}"\ndata_dir = "{work / "data"}"\n'
            f"metrics_port = {metrics}\n"
        )
        log = (work / "emulator.log").open("w")
        emu = subprocess.Popen(
            [*PY, "emulate", "--board", "127.0.0.1:" + str(bec)], stdout=log, stderr=log
        )
        try:
            _wait_board(bec)
            run = subprocess.Popen(
                [*PY, "run", "--config", str(settings), "--seconds", "8"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            scraped = ""
            end = time.monotonic() + 120
            while (
                run.poll() is None
                and time.monotonic() < end
                and "agetdaq_events_total" not in scraped
            ):
                try:
                    url = f"http://127.0.0.1:{metrics}/metrics"
                    scraped = urllib.request.urlopen(url, timeout=2).read().decode()
                except OSError:
                    time.sleep(0.5)
            out = run.communicate(timeout=180)[0]
            if run.returncode != 0:
                raise SystemExit(f"agetdaq run failed ({run.returncode}):\n{out[-3000:]}")
            if "agetdaq_events_total" not in scraped:
                raise SystemExit("the Prometheus endpoint was never scraped")
        finally:
            emu.terminate()
            emu.wait(30)
            log.close()
        (run_file,) = (work / "data").rglob("*.h5")
        done = subprocess.run(
            [*PY, "inspect", str(run_file), "--json"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise SystemExit(f"agetdaq inspect failed:\n{done.stdout}{done.stderr}")
        info = json.loads(done.stdout)
        print(f"smoke run: {run_file.name}, inspect ok ({len(done.stdout)} bytes of JSON)")
        del info
        if "gui" in extras:
            _gui_smoke(run_file, work / "monitor.png")


def _gui_smoke(run_file: Path, shot: Path) -> None:
    """The monitor (PyQt6, pyqtgraph at their floors) replays the run offscreen and saves itself."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    cmd = [*PY, "gui", "--replay", str(run_file), "--speed", "0", "--screenshot", str(shot)]
    done = subprocess.run(
        [*cmd, "--after", "2"], env=env, capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0 or not shot.is_file() or shot.stat().st_size < 10_000:
        out = (done.stdout + done.stderr)[-3000:]
        raise SystemExit(f"agetdaq gui failed ({done.returncode}):\n{out}")
    print(f"monitor: replayed {run_file.name} offscreen, screenshot {shot.stat().st_size} bytes")


def main(argv: list[str]) -> int:
    if argv[:1] == ["pins"]:
        print("\n".join(pins(tuple(argv[1:]))))
    elif argv[:1] == ["smoke"]:
        smoke(tuple(argv[1:]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
