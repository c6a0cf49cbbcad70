"""A migrated Airflow metadata database (SQLite), made once per test session and copied into each
Airflow home a test starts Airflow in.

`airflow db migrate` and `airflow pools set` take over a minute on a busy 2-core machine; every local
Airflow home of the suite would pay that again for the same schema. The template is made by the same
two commands `gov-warehouse run` runs (orchestration.airflow_local.migrate); a seeded home carries the
marker that migrate() looks for, so the run goes straight to the DAGs. Were the marker's name to change,
migrate() would simply migrate the copy again (slower, not wrong).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

from orchestration import airflow_local

DB_FILE = "airflow.db"


def sqlite_env(home: Path) -> dict[str, str]:
    """What the marker is computed from: the home and its SQLite metadata URL (as airflow_env sets them)."""
    return {"AIRFLOW_HOME": str(home), "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / DB_FILE}"}


def make_template(home: Path) -> Path:
    """Migrate an empty SQLite metadata database in `home` and create the `warehouse` pool."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **sqlite_env(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    for args in (["db", "migrate"],
                 ["pools", "set", "warehouse", str(airflow_local.WAREHOUSE_POOL_SLOTS),
                  "Concurrent warehouse sessions of the gov DAGs"]):
        subprocess.run([airflow_local.airflow_bin(), *args], env=env, check=True, capture_output=True, timeout=600)
    return home / DB_FILE


def ensure_template(home: Path) -> Path:
    """The template in `home`, made there unless an earlier call (another worker of the run) made it; the
    caller holds a lock (tests/conftest.py). Made beside and renamed, so no copy reads a half-migrated file."""
    if not (home / DB_FILE).exists():
        partial = home.with_name(home.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        made = make_template(partial)
        shutil.rmtree(home, ignore_errors=True)
        partial.rename(home)
        assert made.name == DB_FILE
    return home / DB_FILE


def seed_home(template_db: Path, home: Path) -> None:
    """Put a copy of the migrated metadata database in `home`, marked as migrated for this home."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template_db, home / DB_FILE)
    # airflow_local.migrate() skips a home holding this marker (same Airflow version, same metadata URL)
    marker = f".migrated-{version('apache-airflow')}-{airflow_local._digest(sqlite_env(home))}"
    (home / marker).touch()
