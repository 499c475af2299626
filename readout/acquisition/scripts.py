"""The command scripts the engine runs: shipped ones by name, files, and where a script named
over run control may come from (it and every file it execs stay inside that directory)."""

from __future__ import annotations

import re
from pathlib import Path

from agetdaq.protocol.script import ScriptError
from agetdaq.readout.acquisition.runlog import confine
from agetdaq.readout.transport.control import RUN_TYPE_SCRIPT

SCRIPTS_DIR = Path(__file__).parents[1] / "scripts"
# RUN_TYPE_SCRIPT (run control's, so the monitor offers the same): calibration runs keep the
# card's zero suppression with the FPN channels sent whole (calibration-zs.txt, ~17 kB per event:
# the DAQ removes their common mode from the zero-suppressed rows; as accurate as reading every
# channel whole, docs/CALIBRATION.md); calibration.txt reads every channel whole (~280 kB).
# the shipped scripts that belong to a run type (a pedestal run replaces any of them)
RUN_TYPE_SCRIPTS = frozenset(RUN_TYPE_SCRIPT.values()) | {"calibration"}


def script_path(name: str) -> Path:
    """A shipped script by name (run, pedestal, pedestal_data, startup) or a file path."""
    shipped = SCRIPTS_DIR / f"{name}.txt"
    if shipped.exists():
        return shipped
    p = Path(name)
    if not p.exists():
        raise ScriptError(name, 0, "no such command script")
    return p


def confined_script(data_dir: Path, name: str) -> tuple[str, Path]:
    """A script named in a control message and the directory it and every file it execs must
    stay in: a shipped one by plain name, else a file inside the data directory (ValueError
    otherwise: a remote client must not make the DAQ read any file, nor echo one)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name) and (SCRIPTS_DIR / f"{name}.txt").exists():
        return name, SCRIPTS_DIR
    return str(confine(data_dir, name)), data_dir
