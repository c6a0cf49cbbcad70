"""gov_publish's dbt step in Cosmos' watcher mode, run for real (`dag.test`, dbt, PostgreSQL): one `dbt build` in
the producer; a model dbt fails to build fails its own task, which retries by building that node alone, while
a model that does not depend on it is built and its task succeeds; a stale source warns and the night goes on."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from orchestration import airflow_local
from tests.orchestration import watcher_night
from tests.support.airflow_home import seed_home

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_failing_model_fails_its_own_task_retried_alone_and_the_rest_is_built(fresh_warehouse, airflow_db_template,
                                                                                tmp_path, monkeypatch):
    # a relation where dbt builds the ledger's staging view that gov_transformer does not own: dbt cannot replace
    # it, so that model fails in the build (and in any rebuild) whatever its SQL
    with psycopg.connect(fresh_warehouse.conninfo(), autocommit=True) as conn:
        conn.execute("create table staging.stg_audit__load_ledger (blocked int)")
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    env = airflow_local.airflow_env(None, fresh_warehouse.sqlalchemy_url())
    seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
    airflow_local.migrate(env)
    done = subprocess.run([sys.executable, "-m", "tests.orchestration.watcher_night", "2023-11-07"], cwd=ROOT,
                          env={**env, "GOV_TASK_RETRIES": "1", "GOV_RETRY_DELAY_SECONDS": "1"},
                          capture_output=True, text=True, timeout=900)
    out = done.stdout + done.stderr
    (tmp_path / "night.log").write_text(out)  # for a failure's post-mortem
    assert done.returncode == 0, out[-3000:]
    states = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("STATES "))[7:])
    assert set(states) == set(watcher_night.TASKS)
    # the build ran once, and failed as dbt did (no producer retry: a second build would be skipped anyway)
    assert states["dbt.dbt_producer_watcher"] == ["failed", 1]
    # the failing model's own task: failed, then failed again on its retry, which built that node alone
    assert states["dbt.stg_audit__load_ledger_model_build"] == ["failed", 2]
    retry = out[out.index("Retry attempt #1 – Running model 'model.gov_warehouse.stg_audit__load_ledger'"):]
    command = ast.literal_eval(retry.split("Trying to run dbtRunner with:\n", 1)[1].splitlines()[0].strip())
    selected = {command[i + 1] for i, flag in enumerate(command) if flag == "--select"}
    assert command[0] == "build" and selected == {"fqn:gov_warehouse.staging.audit.stg_audit__load_ledger",
                                                  "stg_audit__load_ledger"}, command
    # what does not depend on it was built, its task green at the first try; the warehouse has it
    assert states["dbt.stg_streets__compounds_model_build"] == ["success", 1]
    with psycopg.connect(fresh_warehouse.conninfo()) as conn:
        assert conn.execute("select count(*) from staging.stg_streets__compounds").fetchone() == (0,)
    # the empty warehouse's feeds are stale (no load at all): the producer's freshness check said so, and each
    # source task warns and succeeds from its result (no freshness run of its own)
    assert states["dbt.audit_load_ledger_source"] == states["dbt.streets_compounds_source"] == ["success", 1]
    for source in ("audit.load_ledger", "streets.compounds"):
        assert f"source source.gov_warehouse.{source} is stale (ERROR STALE); the night goes on" in out, source
    assert "Running source freshness for" not in out
