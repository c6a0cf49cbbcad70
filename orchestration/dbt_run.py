"""dbt invocation: the executable, the environment profiles.yml reads (dbt logs in as gov_transformer), a run."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from warehouse import connections, settings
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)


def dbt_env(wh: ConnInfo) -> dict[str, str]:
    """Environment read by dbt_project/profiles.yml (dbt logs in as gov_transformer) and by libpq under it."""
    dbt = connections.role_conninfo(connections.TRANSFORMER, wh)
    return {
        "WH_HOST": dbt.host,
        "WH_PORT": str(dbt.port),
        "WH_USER": dbt.user,
        "WH_PASSWORD": dbt.password,
        "WH_DBNAME": dbt.dbname,
        # dbt names its connections itself unless the profile says otherwise: the URL's name wins
        "WH_APPLICATION_NAME": dbt.param("application_name") or "dbt",
        "WH_THREADS": str(settings.dbt_threads()),
        # every other parameter of the URL (sslmode, sslrootcert, …) reaches dbt's driver through libpq
        **dbt.libpq_env(),
    }


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else (shutil.which("dbt") or "dbt")


def dbt_vars(day: str | None, first_day: str | None = None) -> dict[str, str]:
    """`--vars` of a nightly build: the range's last day `day` (service_date) and, when the build covers
    several nights, its first day (service_date_from; dbt_project/macros/nightly.sql). Empty: a full build."""
    if not day:
        if first_day:
            raise ValueError(f"a first day ({first_day}) needs a last day")
        return {}
    if first_day and first_day > day:
        raise ValueError(f"the range's first day {first_day} is after its last day {day}")
    variables = {"service_date": day}
    if first_day and first_day != day:
        variables["service_date_from"] = first_day
    return variables


def run_dbt(wh: ConnInfo, args: list[str], day: str | None = None, first_day: str | None = None) -> None:
    """Run a dbt command against the warehouse `wh` (as gov_transformer, see profiles.yml); a nightly
    build of the nights first_day..day (one night without first_day), or a full build without `day`."""
    env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    cmd = [dbt_executable(), *args, "--project-dir", str(settings.DBT_PROJECT_DIR),
           "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(settings.local_dir() / "dbt_target"),
           "--log-path", str(settings.local_dir() / "dbt_logs")]
    variables = dbt_vars(day, first_day)
    if variables:
        cmd += ["--vars", json.dumps(variables)]
    log.info("running %s", " ".join(cmd))
    # dbt's lines are passed on as they come (a long build shows its progress), not all at the end
    with subprocess.Popen(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dbt {args[0]} failed with exit code {proc.returncode}; see the log above")


DOCS_SWITCH = settings.DOCS_NIGHTLY_VAR  # `false`: the nightly dbt_docs task skips (a test suite's many nights)


def docs_dir() -> Path:
    """Where dbt writes its docs site (index.html, manifest.json, catalog.json): the target folder of
    orchestration.dbt_run, which `gov-warehouse docs` and compose's docs service serve at /dbt-docs/."""
    return settings.local_dir() / "dbt_target"


def generate_docs(wh: ConnInfo) -> Path | None:
    """`dbt docs generate` as gov_transformer (the catalog reads what that role sees: the published marts),
    into docs_dir(); None when GOV_DBT_DOCS_NIGHTLY is false."""
    if not settings.switch(DOCS_SWITCH, True):
        return None
    run_dbt(wh, ["docs", "generate"])
    return docs_dir() / "index.html"
