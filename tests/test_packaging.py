"""The source distribution is complete (the test suite runs from it), the licence is shipped and
declared as an SPDX expression, and the metadata carry the classifiers and the Python floor."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(*patterns: str) -> set[str]:
    return {str(p.relative_to(ROOT)) for pat in patterns for p in ROOT.glob(pat) if p.is_file()}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> tuple[set[str], str, str]:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the `build` package is not installed (pip install 'agetdaq[test]')")
    out = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "-o", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (archive,) = out.glob("agetdaq-*.tar.gz")
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        names = {n.partition("/")[2] for n in tar.getnames()}
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()
    return names, pkg_info, done.stdout + done.stderr


def test_sdist_holds_the_package_its_tests_and_their_helpers(sdist) -> None:
    names, _, _ = sdist
    want = _tracked(
        "tests/*.py", "docs/*.md", "deploy/**/*", "protocol/**/*.py", "readout/**/*.py",
        "gui/**/*.py", "agetdaq/*.py", "protocol/data/*", "gui/data/*", "readout/scripts/*",
        "readout/simulation/emulator/scenarios/*", "tools/*.py",
    )  # fmt: skip
    want |= {"LICENSE", "README.md", "pyproject.toml", "setup.py", "Makefile", "MANIFEST.in"}
    want = {w for w in want if "__pycache__" not in w}
    assert {"tests/conftest.py", "tests/fake_board.py", "tests/emulated_fe55.py"} <= names
    assert want - names == set()


def test_metadata_licence_classifiers_and_python_floor(sdist) -> None:
    _, pkg_info, log = sdist
    assert "License-Expression: MIT" in pkg_info and "License-File: LICENSE" in pkg_info
    assert "Requires-Python: >=3.10" in pkg_info
    assert "Classifier: Programming Language :: Python :: 3.10" in pkg_info
    assert "Classifier: Intended Audience :: Science/Research" in pkg_info
    assert "tomli>=2.0; python_version < " in pkg_info  # tomllib is 3.11+
    assert "License :: " not in pkg_info  # no licence classifier beside the SPDX expression
    assert "project.license` as a TOML table is deprecated" not in log
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_every_floor_is_pinned_for_make_floors() -> None:
    """`make floors` installs `tools/floors.py pins gui`: each dependency and gui requirement at
    exactly its declared lower bound (PyQt6's Qt libraries at the same release), markers kept."""
    import re

    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "floors.py"), "pins", "gui"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    pinned = dict(line.split("==", 1) for line in done.stdout.splitlines())
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["gui"]]
    for req in declared:
        name, floor = re.match(r"([\w.\-]+)>=([\w.]+)", req).groups()
        assert pinned[name].split(";")[0] == floor, req
    assert pinned["tomli"].endswith("; python_version < '3.11'")
    assert pinned["PyQt6-Qt6"] == pinned["PyQt6"]
    assert len(pinned) == len(declared) + 1
