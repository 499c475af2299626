"""Emulator scenarios: shipped files, inheritance, validation errors, gain and noise curves."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from agetdaq.readout.config import ConfigError
from agetdaq.readout.simulation.emulator.board_config import BoardConfig
from agetdaq.readout.simulation.emulator.faults import FaultConfig
from agetdaq.readout.simulation.emulator.params import (
    DetectorParams,
    Fe55Params,
    GainMapParams,
    GainParams,
    GainRegion,
    MuonParams,
    NoiseParams,
    ResolutionParams,
)
from agetdaq.readout.simulation.emulator.scenario import (
    SCENARIO_DIR,
    Scenario,
    available,
)

SHIPPED = (
    "default",
    "calibration",
    "gain-drift",
    "gain-drop-20",
    "gain-map",
    "pedestal",
    "background",
    "noisy",
)
ASSIGNMENT = re.compile(r"^\s*[A-Za-z_][\w-]*\s*=")


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_all_named_scenarios_are_shipped() -> None:
    assert set(SHIPPED) <= set(available())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_loads_and_serialises(name: str) -> None:
    s = Scenario.load(name)
    assert s.name == name
    assert s.description
    assert isinstance(s.faults, FaultConfig) and isinstance(s.board, BoardConfig)
    assert json.loads(json.dumps(s.as_dict()))["detector"]["gain"] == s.detector.gain


@pytest.mark.parametrize("path", sorted(SCENARIO_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_field_in_shipped_files_is_commented(path: Path) -> None:
    lines = path.read_text().splitlines()
    bare = [ln for ln in lines if ASSIGNMENT.match(ln) and "#" not in ln]
    bare = [ln for ln in bare if not ln.startswith(("base", "description"))]
    assert bare == []


def test_default_file_spells_out_the_dataclass_defaults() -> None:
    s = Scenario.load("default")
    assert s.detector == DetectorParams()
    assert s.noise == NoiseParams()
    assert s.fe55 == Fe55Params()
    assert s.muon == MuonParams()
    assert s.gain == GainParams()
    assert s.resolution == ResolutionParams()


def test_named_scenarios_set_what_their_names_say() -> None:
    assert (
        Scenario.load("pedestal").fe55.rate_hz == 0 and Scenario.load("pedestal").muon.rate_hz == 0
    )
    bg = Scenario.load("background")
    assert bg.fe55.rate_hz == 0 and bg.muon.rate_hz == pytest.approx(0.6)
    cal = Scenario.load("calibration")
    assert cal.fe55.area == "full" and cal.fe55.rate_hz > Scenario.load("default").fe55.rate_hz
    drift = Scenario.load("gain-drift")
    assert drift.gain.at(0.0) == 1.0 and drift.gain.at(1e9) == pytest.approx(0.2)
    assert drift.resolution.follow_gain
    drop = Scenario.load("gain-drop-20")
    assert drop.gain.at(0.0) == 1.0 and drop.gain.at(1e9) == pytest.approx(0.8)
    gmap = Scenario.load("gain-map").gain.map
    assert (gmap.nx, gmap.ny) == (6, 6)
    assert sorted(gmap.grid.ravel().tolist()) == [0.9] + [1.0] * 35
    noisy = Scenario.load("noisy").noise
    assert noisy.sigma_mean > NoiseParams().sigma_mean and noisy.dead_strips and noisy.noisy_strips


def test_load_by_path_and_base_inheritance(tmp_path: Path) -> None:
    path = write(tmp_path, 'base = "gain-drift"\n[gain]\nduration_s = 120.0\n[board]\nmtu = 9000\n')
    s = Scenario.load(path)
    assert s.name == "s"
    assert s.gain.duration_s == 120.0
    assert s.gain.end == pytest.approx(0.2) and s.gain.kind == "exponential"
    assert s.fe55.area == "full"  # from gain-drift
    assert s.detector == DetectorParams()  # from default
    assert s.board == BoardConfig(mtu=9000)


def test_base_by_relative_path(tmp_path: Path) -> None:
    write(tmp_path, "[source.fe55]\nrate_hz = 7.0\n", "parent.toml")
    child = write(tmp_path, 'base = "parent.toml"\n[source.muon]\nrate_hz = 0.0\n', "child.toml")
    s = Scenario.load(child)
    assert (s.fe55.rate_hz, s.muon.rate_hz) == (7.0, 0.0)


def test_faults_and_board_are_checked_tables(tmp_path: Path) -> None:
    text = "[faults]\ndrop = 0.01\nsilence_at = [20.0, 5.0]\n[board]\ncard_id = 3\n"
    s = Scenario.load(write(tmp_path, text))
    assert s.faults == FaultConfig(drop=0.01, silence_at=(5.0, 20.0))
    assert s.board == BoardConfig(card_id=3)
    assert s.as_dict()["faults"]["silence_at"] == [5.0, 20.0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[detector]\ngian = 3000.0\n", "detector.gian"),
        ("colour = 1\n", "colour"),
        ('[detector]\ngain = "high"\n', "detector.gain"),
        ("[detector]\nwckdiv = 4.5\n", "detector.wckdiv"),
        ("[detector]\npeaking_time_code = 16\n", "detector.peaking_time_code"),
        ("[detector]\npolarity = 2\n", "detector.polarity"),
        ("[detector]\nresolution_fwhm = 0.05\n", "detector.resolution_fwhm"),
        ("[detector]\ntrigger_bin = 500\n", "detector.trigger_bin"),
        ("[detector]\npolarity = 0\n", "detector.polarity"),
        ("[source.fe55]\nrate_hz = -1.0\n", "source.fe55.rate_hz"),
        ('[source.fe55]\narea = "ring"\n', "source.fe55.area"),
        ("[source.fe55]\ncentre_mm = [1.0]\n", "source.fe55.centre_mm"),
        ("[source.fe55]\ncentre_mm = [40.0, 0.0]\n", "source.fe55.centre_mm"),
        ("[source.co57]\nrate_hz = 1.0\n", "source.co57"),
        ("source = 3\n", "source"),
        ('[source.muon]\nrate_hz = "fast"\n', "source.muon.rate_hz"),
        ('[gain]\nkind = "sinus"\n', "gain.kind"),
        ("[gain]\nsteps = [[10.0, 0.9], [5.0, 0.8]]\n", "gain.steps"),
        ("[gain]\nsteps = [[10.0, 0.9, 1.0]]\n", "gain.steps[0]"),
        ("[gain.map]\nregions = [{ ix = 6, iy = 0, gain = 0.9 }]\n", "gain.map.regions[0]"),
        ("[gain.map]\nregions = [{ ix = 1, iy = 0, gian = 0.9 }]\n", "gain.map.regions[0].gian"),
        ("[noise]\ndead_strips = [240]\n", "noise.dead_strips"),
        ("[noise]\nsigma_mean = nan\n", "noise.sigma_mean"),
        ("[noise]\ntime_multiplier = [[5.0, 1.0], [5.0, 2.0]]\n", "noise.time_multiplier"),
        ("[resolution]\nfollow_gain = 1\n", "resolution.follow_gain"),
        ("faults = 3\n", "faults"),
        ("description = 5\n", "description"),
        ("base = 5\n", "base"),
        ("[faults]\ndrop_every = 100\n", "faults.drop_every"),
        ("[faults]\ndrop = 1.5\n", "faults.drop"),
        ("[faults]\nburst = 1\n", "faults.burst"),
        ("[faults]\nreboot_at = [-1.0]\n", "faults.reboot_at[0]"),
        ("[board]\ncard_idx = 3\n", "board.card_idx"),
        ("[board]\nmtu = 1400\n", "board.mtu"),
        ("[board]\nring_bytes = 1099511627776\n", "board.ring_bytes"),
        ("[board]\nline_rate_bytes_s = inf\n", "board.line_rate_bytes_s"),
        ("[gain]\ndelay_s = -5.0\n", "gain.delay_s"),
        ("[gain]\nduration_s = nan\n", "gain.duration_s"),
        ("[noise]\nnoise_bank_samples = 1099511627776\n", "noise.noise_bank_samples"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Scenario.load(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_invalid_toml_and_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"s\.toml: not valid TOML"):
        Scenario.load(write(tmp_path, "[detector\n"))
    with pytest.raises(ConfigError, match="no scenario 'nonesuch'"):
        Scenario.load("nonesuch")
    with pytest.raises(ConfigError, match="default"):  # the message lists the shipped names
        Scenario.load(tmp_path / "missing.toml")


def test_base_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, 'base = "b.toml"\n', "a.toml")
    write(tmp_path, 'base = "a.toml"\n', "b.toml")
    with pytest.raises(ConfigError) as info:
        Scenario.load(tmp_path / "a.toml")
    assert info.value.key == "base"


def test_from_dict_without_files() -> None:
    s = Scenario.from_dict({"source": {"fe55": {"rate_hz": 3}}})
    assert s.fe55.rate_hz == 3.0 and isinstance(s.fe55.rate_hz, float)


# -- curves ----------------------------------------------------------------------------------


def test_linear_gain_curve() -> None:
    g = GainParams(kind="linear", start=1.0, end=0.2, delay_s=10.0, duration_s=100.0)
    assert [g.at(t) for t in (0.0, 10.0, 60.0, 110.0, 1e6)] == pytest.approx([1, 1, 0.6, 0.2, 0.2])


def test_exponential_gain_curve_is_geometric() -> None:
    g = GainParams(kind="exponential", start=1.0, end=0.2, delay_s=0.0, duration_s=100.0)
    assert g.at(50.0) == pytest.approx(math.sqrt(0.2))
    assert g.at(25.0) / g.at(0.0) == pytest.approx(g.at(100.0) / g.at(75.0))
    assert g.at(-5.0) == 1.0 and g.at(500.0) == pytest.approx(0.2)


def test_step_and_constant_gain_curves() -> None:
    g = GainParams(kind="steps", start=1.0, steps=((60.0, 0.8), (120.0, 0.5)))
    assert [g.at(t) for t in (0.0, 59.99, 60.0, 119.0, 120.0, 1e9)] == [1, 1, 0.8, 0.8, 0.5, 0.5]
    assert GainParams(kind="constant", start=0.7, end=0.1).at(1e9) == 0.7


def test_gain_map_cells() -> None:
    gm = GainMapParams(nx=6, ny=6, regions=(GainRegion(ix=4, iy=1, gain=0.9),))
    # cell ix 4 = x 10..20 mm, iy 1 = y -20..-10 mm
    assert gm.at(15.0, -15.0) == pytest.approx(0.9)
    assert gm.at(9.9, -15.0) == 1.0 and gm.at(15.0, -9.9) == 1.0
    assert gm.at(-40.0, 40.0) == 1.0  # outside: nearest cell


def test_resolution_follows_gain_as_in_cast() -> None:
    r = ResolutionParams(follow_gain=True)
    assert r.fwhm_at(0.18, 1.0) == pytest.approx(0.18)
    assert r.fwhm_at(0.18, 0.2) == pytest.approx(0.50, rel=0.01)
    assert ResolutionParams().fwhm_at(0.18, 0.2) == 0.18


def test_noise_multiplier_curve() -> None:
    n = NoiseParams(time_multiplier=((0.0, 1.0), (10.0, 3.0)))
    assert [n.multiplier_at(t) for t in (-1.0, 5.0, 10.0, 99.0)] == [1.0, 2.0, 3.0, 3.0]
    assert NoiseParams().multiplier_at(123.0) == 1.0


def test_fluctuation_gives_the_configured_resolution() -> None:
    det = DetectorParams()
    n = 5900.0 / det.w_value_ev
    b = det.fluctuation_b(0.18)
    assert 2.3548 * math.sqrt((det.fano + b) / n) == pytest.approx(0.18, rel=1e-3)
