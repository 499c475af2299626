"""Maps the repository's top-level folders onto the one import package ``agetdaq``.

``protocol/``, ``readout/`` and ``gui/`` install as ``agetdaq.protocol``, ``agetdaq.readout`` and
``agetdaq.gui``; everything else (metadata, dependencies, scripts) is in pyproject.toml.
"""

from setuptools import find_packages, setup

ROOTS = ("protocol", "readout", "gui")

setup(
    packages=["agetdaq"]
    + [f"agetdaq.{p}" for p in find_packages(include=[f"{r}*" for r in ROOTS])],
    package_dir={"agetdaq": "agetdaq", **{f"agetdaq.{r}": r for r in ROOTS}},
)
