"""The layout ARCHITECTURE.md promises, checked on the source: imports go one way, no cycles,
SQL stays in storage/, functions stay short, and the settings declare their defaults once."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from exporter.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exporter", "storage")
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _imports(name: str) -> set[str]:
    """Project modules `name` imports (a `from package import module` names the module)."""
    found: set[str] = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert len(GRAPH) > 40  # the walk found the code
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_storage_imports_nothing_of_exporter() -> None:
    bad = {m: sorted(i for i in deps if i.startswith("exporter")) for m, deps in GRAPH.items()}
    assert {m: d for m, d in bad.items() if m.startswith("storage") and d} == {}


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("exporter.settings", ("exporter.",)),  # features parse their own tables
        ("exporter.pollers", ("flask", "exporter.web", "exporter.forwarding")),
        ("exporter.forwarding.targets", ("flask", "exporter.web", "exporter.pollers")),
        ("exporter.metrics", ("requests", "exporter.http", "exporter.pollers")),  # no network
        ("exporter.web", ("exporter.ingest", "exporter.badges", "exporter.forwarding")),
        ("exporter.notify", ("flask", "exporter.web", "storage")),  # a client: HTTP only
    ],
)
def test_features_import_one_way(package: str, forbidden: tuple[str, ...]) -> None:
    allowed_in_settings = {"exporter.errors", "exporter.names"}
    offenders = []
    for name, tree in TREES.items():
        if name != package and not name.startswith(package + "."):
            continue
        for node in ast.walk(tree):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for target in targets:
                if target in allowed_in_settings and package == "exporter.settings":
                    continue
                if any(target == f.rstrip(".") or target.startswith(f) for f in forbidden):
                    offenders.append(f"{name} imports {target}")
    assert offenders == []


def test_no_import_hides_inside_a_function() -> None:
    hidden = [
        f"{name}:{node.lineno} {fn.name}"
        for name, tree in TREES.items()
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert hidden == []


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"{name}.{fn.name}: {fn.end_lineno - fn.lineno + 1} lines"
        for name, tree in TREES.items()
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and fn.end_lineno is not None
        and fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


_SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\b.+\bSET|DELETE\s+FROM)\b", re.S)


def test_sql_is_written_only_in_storage() -> None:
    outside = [
        f"{name}:{node.lineno}"
        for name, tree in TREES.items()
        if not name.startswith("storage")
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and _SQL.search(node.value)
    ]
    assert outside == []
    # ... and the check would see SQL where it is.
    assert any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and _SQL.search(n.value)
        for n in ast.walk(TREES["storage.events"])
    )


def test_settings_fields_are_the_declared_settings_with_their_defaults() -> None:
    fields = [f for f in dataclasses.fields(Settings) if f.name in {s.name for s in SETTINGS}]
    assert [f.name for f in fields] == [s.name for s in SETTINGS]
    defaults = Settings()
    for setting in SETTINGS:
        assert getattr(defaults, setting.name) == setting.default, setting.name
        # The declared default passes its own parser unchanged.
        assert setting.parse(setting.name, setting.default) == setting.default, setting.name
