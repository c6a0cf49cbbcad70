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
SETTINGS_READERS = {"text", "number", "switch"}  # warehouse.settings' readers of a variable by name
# the only places that read a variable of ours: the settings module, and the connection/credential modules
# beside it (the warehouse's URL, the roles' passwords, the PII key, the bootstrap's mode)
READERS = {"warehouse/settings.py", "warehouse/connections.py", "warehouse/credentials.py", "warehouse/bootstrap.py"}
# variables of the libraries the project runs, whose presence a command checks (not settings of ours)
LIBRARY_PRESENCE = {"AIRFLOW_CONN_SMTP_DEFAULT"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _is_settings_reader(f: ast.AST) -> bool:
    """warehouse.settings' readers, called there by name or elsewhere as `settings.text/number/switch(...)`."""
    if isinstance(f, ast.Name):
        return f.id in SETTINGS_READERS
    return isinstance(f, ast.Attribute) and f.attr in SETTINGS_READERS and \
        isinstance(f.value, ast.Name) and f.value.id == "settings"


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
                            _is_settings_reader(f):
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
    # one of each form the scan reads: .get, a _VAR constant, settings.number(...) elsewhere, text(...) in settings
    assert {"WAREHOUSE_URL", "PII_HASH_KEY", "GOV_PUBLISH_ATTEMPTS", "LANDING_DIR", "SUMMARY_FROM"} <= set(found)


def test_every_variable_read_is_documented():
    table = configuration_table()
    wanted = (set(variables_read()) | set(ROLE_PASSWORD_ENV.values())) - FOR_LIBRARIES
    missing = sorted(f"{name} ({variables_read().get(name, 'connections.py')})" for name in wanted
                     if f"`{name}`" not in table)
    assert missing == []


def _reads_environ(node: ast.AST) -> str | None:
    """The variable a node reads from os.environ directly (.get, getenv, [...] read, `in os.environ`), if any."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and (
            (node.func.attr == "get" and _is_environ(node.func.value)) or node.func.attr == "getenv"):
        return ast.unparse(node.args[0]) if node.args else "?"
    if isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
        return ast.unparse(node.slice)
    if isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
        return ast.unparse(node.left)
    return None


def test_variables_are_read_in_the_settings_module_only():
    """One settings module: every other module asks warehouse.settings (or the connection/credential modules
    beside it), so a setting's default and parsing live in one place. Passing the whole environment on to a
    child process (`{**os.environ, ...}`) is not a read."""
    elsewhere = []
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            rel = str(path.relative_to(REPO_ROOT))
            if rel in READERS:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                name = _reads_environ(node)
                if name is not None and name.strip("'\"") not in LIBRARY_PRESENCE:
                    elsewhere.append(f"{rel}:{node.lineno} reads {name}")
    assert elsewhere == []
