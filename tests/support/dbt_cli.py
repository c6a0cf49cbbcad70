"""dbt as the tests run it: the project's own executable and profile, logged in as gov_transformer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from orchestration.dbt_run import dbt_env
from warehouse import conninfo, settings

UNIT_TEST_EXCLUSION = "DBT_EXCLUDE_RESOURCE_TYPES"  # set by tests/conftest.py for every other build


def dbt(wh: conninfo.ConnInfo, target: Path, *args: str, day=None, strict: bool = True,
        unit_tests: bool = False) -> dict:
    """Run dbt; returns its run_results.json. `unit_tests` runs the project's unit tests in this build."""
    variables = {"reconciliation_severity": "error" if strict else "warn"}
    if day:
        variables["service_date"] = day.isoformat()
    cmd = [str(Path(sys.executable).with_name("dbt")), *args, "--project-dir", str(settings.DBT_PROJECT_DIR),
           "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target),
           "--log-path", str(target / "logs"), "--vars", json.dumps(variables)]
    env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    if unit_tests:
        env.pop(UNIT_TEST_EXCLUSION, None)
    proc = subprocess.run(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads((target / "run_results.json").read_text())


def declared_marts() -> set[str]:
    """The marts the project declares: one model file each under models/marts."""
    return {p.stem for p in (settings.DBT_PROJECT_DIR / "models" / "marts").rglob("*.sql")}


def declared_unit_tests() -> set[str]:
    """The unit tests the project declares, read from its YAML files (not from dbt)."""
    import yaml

    names = set()
    for path in (settings.DBT_PROJECT_DIR / "models").rglob("*.yml"):
        for test in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("unit_tests") or []:
            names.add(f"{test['model']}.{test['name']}")
    return names
