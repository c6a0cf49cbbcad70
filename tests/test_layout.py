"""The layout's promises (README: Layout; docs/architecture.md), read from the code's own imports.

Imports run one way — warehouse <- ingest / scenario / expectations / reports <- orchestration <- commands,
dags — no package imports one on its own level or above, no module imports itself round a circle, and nothing
imports a DAG file. Lazy imports inside functions count: they are imports all the same."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
# the level of each package: a package may import only packages of a lower level
LEVELS = {"warehouse": 0, "ingest": 1, "scenario": 1, "expectations": 1, "reports": 1, "orchestration": 2,
          "commands": 3, "dags": 3}


def modules() -> dict[str, Path]:
    found = {}
    for package in LEVELS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def test_the_graph_is_read_from_every_package(graph):
    # the check above is only as good as what it reads: every package is seen, with its modules' imports
    assert {m.split(".")[0] for m in graph} == set(LEVELS)
    assert "warehouse.connections" in graph["orchestration.steps"]


def test_packages_import_only_lower_levels(graph):
    wrong = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps
                   if m.split(".")[0] != d.split(".")[0] and LEVELS[d.split(".")[0]] >= LEVELS[m.split(".")[0]])
    assert wrong == []


def test_reports_and_expectations_know_only_the_warehouse(graph):
    for package in ("reports", "expectations"):
        deps = {d.split(".")[0] for m, ds in graph.items() if m.split(".")[0] == package for d in ds}
        assert deps <= {package, "warehouse"}, (package, deps)


def test_no_module_imports_itself_round_a_circle(graph):
    def reach(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo.extend(graph.get(m, ()))
        return seen

    circles = sorted(m for m in graph if m in reach(m))
    assert circles == []


def test_nothing_imports_a_dag_file(graph):
    assert sorted(m for m, deps in graph.items() for d in deps if d.startswith("dags")) == []
