"""Every kind of settings file goes through the one loader: a bad value gives one ConfigError
``file: key: reason``, and the commands print it on stderr and exit 2 without a traceback.

Kinds: DAQ settings (agetdaq run/serve --config), the software trigger ([processing.trigger]),
the monitor settings (agetdaq gui --config), the alarm rules (agetdaq gui --alarms) and the
emulator scenarios (agetdaq emulate --scenario, with [faults] and [board]).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agetdaq.gui.alarms import load_rules
from agetdaq.gui.config import MonitorConfig
from agetdaq.readout.acquisition import settings as settings_module
from agetdaq.readout.acquisition.settings import Settings
from agetdaq.readout.config import ConfigError
from agetdaq.readout.datapath.processing.trigger import TriggerConfig
from agetdaq.readout.simulation.emulator.scenario import Scenario

RULE = "[[rule]]\nname = 'r'\nmetric = 'data_age_s'\n"
LOADERS: dict[str, Callable[[Path], object]] = {
    "daq": Settings.load,
    "trigger": TriggerConfig.from_toml,
    "gui": MonitorConfig.load,
    "alarms": load_rules,
    "scenario": Scenario.load,
}
CASES = [
    # kind, file text, key, start of the reason
    ("daq", "[daq]\nheartbeat_s = -1.0\n", "daq.heartbeat_s", "must be > 0.0 s"),
    ("daq", "[daq]\nboard_timeout_s = inf\n", "daq.board_timeout_s", "expected a finite number"),
    ("daq", "[daq]\nstatus_interval_s = nan\n", "daq.status_interval_s", "expected a finite"),
    ("daq", "[writer]\nchunk_bytes = 17179869184\n", "writer.chunk_bytes", "17179869184 is above"),
    ("daq", "[stream]\nevent_rate_hz = -5.0\n", "stream.event_rate_hz", "-5.0 is below"),
    ("daq", "[credit]\nlow_water = nan\n", "credit.low_water", "expected a finite number"),
    ("daq", "[daq]\nheartbeat = 1.0\n", "daq.heartbeat", "unknown key"),
    ("trigger", "[processing.trigger]\nenergy_min = nan\n", "processing.trigger.energy_min",
     "expected a finite number"),
    ("trigger", "[processing.trigger]\nenergy_min = -inf\n", "processing.trigger.energy_min",
     "expected a finite number"),
    ("trigger", "[processing.trigger]\nmin_hits = -2\n", "processing.trigger.min_hits",
     "-2 is below"),
    ("trigger", "[processing.trigger]\nclasses = [1, 5]\n", "processing.trigger.classes[1]",
     "5 is not one of"),
    ("trigger", "[processing.trigger]\nmin_hit = 2\n", "processing.trigger.min_hit", "unknown key"),
    ("gui", "[monitor]\nstale_after_s = -3.0\n", "monitor.stale_after_s", "must be > 0.0 s"),
    ("gui", "[monitor]\nredraw_hz = inf\n", "monitor.redraw_hz", "expected a finite number"),
    ("gui", "[monitor]\nspectrum_bins = 1000000000\n", "monitor.spectrum_bins", "1000000000 is"),
    ("gui", "[monitor]\nredraw = 5\n", "monitor.redraw", "unknown key"),
    ("alarms", RULE + "max = nan\n", "rule[0].max", "expected a finite number"),
    ("alarms", RULE + "max = 1.0\ndelay_s = -5.0\n", "rule[0].delay_s", "-5.0 s is below"),
    ("alarms", RULE + "max = 1.0\ncolour = 'red'\n", "rule[0].colour", "unknown key"),
    ("scenario", "[gain]\nduration_s = -60.0\n", "gain.duration_s", "-60.0 s is below"),
    ("scenario", "[source.fe55]\nrate_hz = inf\n", "source.fe55.rate_hz", "expected a finite"),
    ("scenario", "[faults]\nsilence_s = -2.0\n", "faults.silence_s", "-2.0 s is below"),
    ("scenario", "[faults]\ndrop = nan\n", "faults.drop", "expected a finite number"),
    ("scenario", "[board]\nreadout_overhead_us = -1.0\n", "board.readout_overhead_us", "-1.0 us"),
    ("scenario", "[noise]\nsigma_mea = 3.0\n", "noise.sigma_mea", "unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "text", "key", "reason"), CASES)
def test_a_bad_value_names_file_key_and_reason(tmp_path, kind, text, key, reason) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        LOADERS[kind](path)
    exc = info.value
    assert (exc.file, exc.key) == (str(path), key)
    assert exc.reason.startswith(reason), exc.reason
    assert str(exc).startswith(f"{path}: {key}: {reason}")


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_file_that_cannot_be_read_or_parsed(tmp_path, kind) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml(: cannot read|': not a shipped name)"):
        LOADERS[kind](tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[section\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        LOADERS[kind](bad)


def test_the_documented_daq_example_still_loads_with_its_defaults() -> None:
    doc = settings_module.__doc__ or ""
    block = doc.split("::", 1)[1].split("\nLoaded by", 1)[0]
    example = "\n".join(line[4:] for line in block.splitlines())
    s = Settings.from_text(example, "example")
    assert s.daq == Settings().daq and s.credit == Settings().credit
    assert s.stream == Settings().stream and s.processing == Settings().processing


def test_command_line_changes_are_checked_too() -> None:
    with pytest.raises(ConfigError) as info:
        Settings().with_daq(batch=0).check("command line")
    assert str(info.value) == "command line: daq.batch: 0 is below the minimum 1"
    with pytest.raises(ConfigError, match=r"command line: daq\.bec: bad board address"):
        Settings().with_daq(bec="host:99999").check("command line")


# ---- the commands -------------------------------------------------------------------------------


def _agetdaq(*argv: str, timeout: float = 90.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run(
        [sys.executable, "-m", "agetdaq", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _refused(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


@pytest.mark.slow
def test_agetdaq_run_refuses_a_bad_settings_file(tmp_path, udp_port) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[daq]\nheartbeat_s = -1.0\n")
    bec = f"127.0.0.1:{udp_port}"
    proc = _agetdaq("run", "--config", str(bad), "--board", bec, "--data-dir", str(tmp_path))
    _refused(proc, rf"^agetdaq run: {re.escape(str(bad))}: daq\.heartbeat_s: must be > 0\.0 s")


@pytest.mark.slow
def test_agetdaq_emulate_refuses_a_bad_scenario(tmp_path, udp_port) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "default"\n[gain]\ndelay_s = nan\n')
    proc = _agetdaq("emulate", "--scenario", str(bad), "--board", f"127.0.0.1:{udp_port}")
    _refused(proc, rf"^agetdaq emulate: {re.escape(str(bad))}: gain\.delay_s: expected a finite")
    proc = _agetdaq("emulate", "--fault", "drop=2", "--board", f"127.0.0.1:{udp_port}")
    _refused(proc, r"^agetdaq emulate: fault\.drop: 2\.0 is above the maximum 1\.0")


@pytest.mark.slow
def test_agetdaq_gui_refuses_bad_alarms_and_monitor_settings(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(RULE + "min = 1.0\ndelay_s = -1.0\n")
    shot = tmp_path / "shot.png"
    proc = _agetdaq("gui", "--alarms", str(bad), "--screenshot", str(shot))
    _refused(proc, rf"^agetdaq gui: {re.escape(str(bad))}: rule\[0\]\.delay_s: -1\.0 s is below")
    bad.write_text("[monitor]\nhistory_hours = nan\n")
    proc = _agetdaq("gui", "--config", str(bad), "--screenshot", str(shot))
    _refused(proc, rf"^agetdaq gui: {re.escape(str(bad))}: monitor\.history_hours: expected a")
    assert not shot.exists()
