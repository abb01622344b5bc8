"""The packages of reluscope form a stack whose imports point only down, with no cycles.

Imports are read from the source with ``ast`` (module-level and function-level alike), so a
lazy import inside a function counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import reluscope

PACKAGE_ROOT = Path(reluscope.__file__).parent

#: The layers, bottom first. A unit (a subpackage or a top-level module of reluscope) may import
#: units of its own layer or of a layer below; the graph between units must have no cycle.
#: The root ``reluscope/__init__.py`` is the public surface on top of everything and is not a unit.
LAYERS: list[set[str]] = [
    {
        "errors",
        "io",
        "validation",
        "linalg",
        "losses",
        "figures",
        "values",
        "outputs",
        "records",
        "rundir",
        "devices",
        "memory",
    },  # shared, no domain logic
    {"nets", "data"},  # traced networks; data sets
    {"regions", "measures", "bounds", "dynamics", "lowrank", "attacks"},  # analysis of a net
    {"train"},  # Trainer and probes
    {"experiments"},  # the papers' experiments: configs, registry, runner
    {"report", "sweep"},  # reading run directories; running grids of experiments
    {"reproduce"},  # every experiment, then the report
    {"cli"},  # the command line
]

#: Upward imports being removed by other work in progress; each entry must still occur.
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def _units() -> set[str]:
    return {info.name for info in pkgutil.iter_modules([str(PACKAGE_ROOT)])}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE_ROOT / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imported_modules(path: Path) -> set[str]:
    """Every reluscope module that the file at ``path`` imports, anywhere in it."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            # ``from reluscope import measures`` imports the subpackage reluscope.measures
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    return {name for name in found if name.startswith("reluscope.")}


def _unit(module: str) -> str:
    return module.split(".")[1]


def unit_imports() -> dict[tuple[str, str], set[str]]:
    """(importing unit, imported unit) -> the module-level imports behind that edge."""
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        module = _module_name(path)
        if module == "reluscope":
            continue
        for target in _imported_modules(path):
            if _unit(module) != _unit(target):
                edges[_unit(module), _unit(target)].add(f"{module} -> {target}")
    return edges


def _layer_of() -> dict[str, int]:
    return {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def test_every_unit_has_a_layer():
    missing = _units() - set(_layer_of())
    assert not missing, f"place these in LAYERS: {sorted(missing)}"


def test_every_module_imports():
    names = [info.name for info in pkgutil.walk_packages(reluscope.__path__, "reluscope.")]
    assert len(names) > 50
    for name in names:
        importlib.import_module(name)


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path: Path):
    assert "reluscope.sweep.local" in _imported_modules(PACKAGE_ROOT / "reproduce.py")
    assert "reluscope.measures" in _imported_modules(PACKAGE_ROOT / "train" / "probes.py")
    edges = unit_imports()
    assert ("cli", "reproduce") in edges and ("train", "measures") in edges


def test_imports_point_only_down():
    layer = _layer_of()
    upward = {
        edge: sorted(why)
        for edge, why in unit_imports().items()
        if layer[edge[0]] < layer[edge[1]] and edge not in KNOWN_EXCEPTIONS
    }
    assert not upward, "imports pointing up the stack:\n" + "\n".join(
        f"{a} -> {b}: {why}" for (a, b), why in upward.items()
    )


def test_known_exceptions_still_exist():
    stale = KNOWN_EXCEPTIONS - set(unit_imports())
    assert not stale, f"remove these fixed edges from KNOWN_EXCEPTIONS: {sorted(stale)}"


def test_no_cycles_between_units():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in unit_imports():
        if (a, b) not in KNOWN_EXCEPTIONS:
            graph[a].add(b)
    state: dict[str, str] = {}

    def visit(unit: str, path: list[str]) -> None:
        state[unit] = "open"
        for nxt in sorted(graph[unit]):
            if state.get(nxt) == "open":
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])


def test_cycle_finder_fails_on_a_cycle(monkeypatch: pytest.MonkeyPatch):
    fake = {("measures", "bounds"): {"x"}, ("bounds", "measures"): {"y"}}
    monkeypatch.setattr(f"{__name__}.unit_imports", lambda: fake)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_cycles_between_units()
