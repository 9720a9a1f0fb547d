"""Clean edges: imports only point down (no cycles, nothing below the CLI imports the package root),
one hashing module, the version from package metadata, plug-ins that fail to load reported by name."""

from __future__ import annotations

import ast
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import genies

SRC = Path(genies.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import outside ``if TYPE_CHECKING:`` blocks, lazy ones included."""
    found: list[tuple[str, list[str], int]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            t = node.test
            if getattr(t, "id", None) == "TYPE_CHECKING" or getattr(t, "attr", None) == "TYPE_CHECKING":
                for n in node.orelse:
                    self.visit(n)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.extend((a.name, [], node.lineno) for a in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if not node.level:
                found.append((node.module or "", [a.name for a in node.names], node.lineno))

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for mod, names, _ in _imports(path):
            targets = [f"{mod}.{n}" if f"{mod}.{n}" in MODULES else mod for n in names] or [mod]
            deps.update(t for t in targets if t in MODULES and t != name)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_lazy_imports_included():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_cli_imports_the_package_root():
    offenders = []
    for name, path in MODULES.items():
        if name == "genies" or name.startswith("genies.cli"):
            continue
        for mod, names, line in _imports(path):
            if mod == "genies" and (not names or any(f"genies.{n}" not in MODULES for n in names)):
                offenders.append(f"{path.relative_to(SRC)}:{line}")
    assert offenders == []


def test_models_registry_does_not_import_loading():
    deps = _graph()["genies.models.registry"]
    assert "genies.models.loading" not in deps


def test_one_hashing_module():
    # data/schema.py's split fingerprint (hardening's) is the one other user of hashlib
    users = sorted(
        str(p.relative_to(SRC))
        for name, p in MODULES.items()
        if any(mod == "hashlib" for mod, _, _ in _imports(p))
    )
    assert users == ["data/schema.py", "hashing.py"]


def test_version_comes_from_package_metadata():
    assert genies.__version__ == version("genies")
    from genies._meta import software_versions

    assert software_versions()["genies"] == version("genies")


class _EntryPoint:
    def __init__(self, name, value, target=None, error=None):
        self.name, self.value, self._target, self._error = name, value, target, error

    def load(self):
        if self._error:
            raise self._error
        return self._target


def test_a_plugin_that_fails_to_load_is_reported_by_name_and_the_others_load(monkeypatch):
    from genies.api.intervention import Intervention, InterventionState, ScoredPairs
    from genies.errors import GeniesError
    from genies.interventions import registry

    class Good(Intervention):
        def fit(self, ctx, train, config):
            return InterventionState()

        def score_pairs(self, ctx, state, pairs, config):
            return ScoredPairs([], [])

    eps = [
        _EntryPoint(
            "broken_probe", "broken_pkg.probe:Probe", error=ImportError("No module named 'broken_pkg'")
        ),
        _EntryPoint("good_probe", "good_pkg:Good", target=Good),
        _EntryPoint("not_a_class", "x:y", target=42),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_FAILED", {})
    names = registry.list_interventions()
    assert "good_probe" in names and "zero_shot" in names and "broken_probe" not in names
    errors = registry.plugin_errors()
    assert set(errors) == {"broken_probe", "not_a_class"} and "broken_pkg" in errors["broken_probe"]
    with pytest.raises(GeniesError, match="intervention plug-in 'broken_probe' failed to load"):
        registry.get_intervention("broken_probe")
    assert registry.get_intervention("good_probe").name == "good_probe"
    assert registry.list_interventions() == names  # later calls see the same, complete registry
