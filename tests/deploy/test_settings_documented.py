"""Every environment variable the project's code reads is in README's Configuration table (a setting nobody
can find is a setting nobody sets right). Read from the code's own syntax: `os.environ.get("X")`,
`os.getenv("X")`, `os.environ["X"]` read, a module's `…_VAR = "X"` constant, the roles' password variables."""

from __future__ import annotations

import ast
import re

import pytest

from warehouse.connections import ROLE_PASSWORD_ENV
from warehouse.settings import REPO_ROOT

pytestmark = pytest.mark.unit

PACKAGES = ("warehouse", "ingest", "scenario", "expectations", "reports", "orchestration", "commands", "dags")
# set by the project for the libraries it runs (not settings of ours)
FOR_LIBRARIES = {"GX_ANALYTICS_ENABLED", "XDG_RUNTIME_DIR", "DBT_SEND_ANONYMOUS_USAGE_STATS"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def variables_read() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = None
                if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                    f = node.func
                    if (isinstance(f, ast.Attribute) and f.attr == "get" and _is_environ(f.value)) or \
                            (isinstance(f, ast.Attribute) and f.attr == "getenv") or \
                            (isinstance(f, ast.Name) and f.id == "_setting"):
                        name = node.args[0].value
                elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load) \
                        and isinstance(node.slice, ast.Constant):
                    name = node.slice.value
                elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and \
                        any(isinstance(t, ast.Name) and t.id.endswith("_VAR") for t in node.targets):
                    name = node.value.value
                if isinstance(name, str) and re.fullmatch(r"[A-Z][A-Z0-9_]+", name):
                    found.setdefault(name, str(path.relative_to(REPO_ROOT)))
    return found


def configuration_table() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Configuration")
    return readme[start:readme.index("\n## ", start + 1)]


def test_the_scan_finds_the_variables_it_should():
    found = variables_read()
    # one of each form the scan reads: .get, a _VAR constant, the publish settings' helper
    assert {"WAREHOUSE_URL", "PII_HASH_KEY", "GOV_PUBLISH_ATTEMPTS", "LANDING_DIR"} <= set(found)


def test_every_variable_read_is_documented():
    table = configuration_table()
    wanted = (set(variables_read()) | set(ROLE_PASSWORD_ENV.values())) - FOR_LIBRARIES
    missing = sorted(f"{name} ({variables_read().get(name, 'connections.py')})" for name in wanted
                     if f"`{name}`" not in table)
    assert missing == []
