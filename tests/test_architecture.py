"""The layering of the code, checked on the source (docs/ARCHITECTURE.md).

A module may import only from its own layer and the layers below it; the GUI sees only the
protocol, the schema, the transport, the store and the analysis. No import cycles between
modules at import time. The installed package is one: ``agetdaq``.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agetdaq": ROOT / "agetdaq", "agetdaq.protocol": ROOT / "protocol",
           "agetdaq.readout": ROOT / "readout", "agetdaq.gui": ROOT / "gui"}  # fmt: skip

# layer -> the layers it may import (besides itself); a layer is a package prefix
R = "agetdaq.readout"
ALLOWED: dict[str, set[str]] = {
    "agetdaq.protocol": set(),
    f"{R}.config": {"agetdaq.protocol"},
    f"{R}.schema": {"agetdaq.protocol"},
    f"{R}.transport": {f"{R}.schema", f"{R}.config"},
    f"{R}.store": {"agetdaq.protocol", f"{R}.schema", f"{R}.config"},
    f"{R}.link": {"agetdaq.protocol", f"{R}.schema", f"{R}.config"},
    f"{R}.analysis": {"agetdaq.protocol", f"{R}.schema", f"{R}.config", f"{R}.store",
                      f"{R}.transport"},
    f"{R}.datapath": {"agetdaq.protocol", f"{R}.schema", f"{R}.config", f"{R}.link",
                      f"{R}.store", f"{R}.transport", f"{R}.analysis"},
    f"{R}.simulation": {"agetdaq.protocol", f"{R}.schema", f"{R}.config", f"{R}.store"},
    f"{R}.acquisition": {"agetdaq.protocol", f"{R}.schema", f"{R}.config", f"{R}.link",
                         f"{R}.datapath", f"{R}.store", f"{R}.transport", f"{R}.analysis"},
    f"{R}.cli": {"agetdaq.protocol", f"{R}", "agetdaq.gui", "agetdaq"},
    "agetdaq.gui": {"agetdaq.protocol", f"{R}.schema", f"{R}.config", f"{R}.transport",
                    f"{R}.store", f"{R}.analysis"},
    "agetdaq": {"agetdaq.readout.cli"},  # __main__
}  # fmt: skip


def modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "agetdaq" and parts[:1] in (["protocol"], ["readout"], ["gui"]):
                continue
            out[".".join([pkg, *parts])] = path
    return out


MODULES = modules()


def layer_of(name: str) -> str:
    best = ""
    for layer in ALLOWED:
        if (name == layer or name.startswith(layer + ".")) and len(layer) > len(best):
            best = layer
    return best


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) of every import of ours in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg.split(".")
                    base = base[: len(base) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                for a in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{mod}.{a.name}"
                    found.append((sub if sub in MODULES else mod, child.lineno, top))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                visit(child, False)  # for the type checker only: layered, but no runtime cycle
            else:
                visit(child, top)

    visit(tree, True)
    return [(m, ln, top) for m, ln, top in found if m == "agetdaq" or m.startswith("agetdaq.")]


def test_every_module_has_a_layer():
    orphans = [m for m in MODULES if not layer_of(m)]
    assert not orphans, f"modules outside every layer (add them to ALLOWED): {orphans}"


def test_no_import_crosses_a_layer_upward():
    bad = []
    for name, path in MODULES.items():
        mine = layer_of(name)
        allowed = ALLOWED[mine] | {mine}
        for target, line, _ in imports(name, path):
            theirs = layer_of(target)
            if target == "agetdaq":  # the root package holds the version only
                continue
            if not any(theirs == a or theirs.startswith(a + ".") for a in allowed):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {mine} imports {target}")
    assert not bad, "imports against the layering (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_no_import_cycles_at_module_level():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _, top in imports(name, path):
            if top and target in graph and target != name:
                graph[name].add(target)
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node)
    # a package importing its own submodules (re-exports) is not a cycle of responsibilities
    cycles = [c for c in cycles if not _package_self_cycle(c)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _package_self_cycle(cycle: str) -> bool:
    parts = cycle.split(" -> ")
    return any(b.startswith(a + ".") or a.startswith(b + ".") for a, b in itertools.pairwise(parts))


@pytest.mark.parametrize("bare", ["protocol", "readout", "gui"])
def test_no_bare_top_level_imports(bare):
    bad = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            bad += [f"{name}:{node.lineno}" for n in names if n == bare or n.startswith(bare + ".")]
    assert not bad, f"bare `{bare}` imports (use agetdaq.{bare}): {bad}"


def test_readout_top_holds_a_handful_of_modules():
    loose = sorted(p.name for p in (ROOT / "readout").glob("*.py"))
    assert len(loose) <= 5, f"modules loose at the top of readout/: {loose}"


def test_every_readout_subpackage_says_what_enters_and_leaves():
    for init in sorted((ROOT / "readout").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc) > 80, f"{init.relative_to(ROOT)} needs a docstring: what enters, leaves"


@pytest.mark.slow
def test_the_wheel_installs_one_package(tmp_path):
    """A built wheel holds the one import package ``agetdaq`` (its data files included)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("agetdaq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"agetdaq"}
    for data in ("agetdaq/protocol/data/babyiaxo.csv", "agetdaq/readout/scripts/run.txt",
                 "agetdaq/gui/data/alarms.toml",
                 "agetdaq/readout/simulation/emulator/scenarios/default.toml"):  # fmt: skip
        assert data in names
