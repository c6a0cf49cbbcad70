"""OpenLineage from a real local run: part of gov_publish through Airflow (tests/orchestration/lineage_night.py)
writes, through the provider's file transport of local runs (airflow_local.airflow_env), the events of its Airflow
tasks and, from Cosmos (the night's one `dbt build`, its watcher producer), the dbt model's output dataset in the
warehouse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration import airflow_local
from tests.orchestration import lineage_night
from tests.support.airflow_home import seed_home

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_a_local_run_writes_lineage_of_its_tasks_and_dbt_models(fresh_warehouse, airflow_db_template, tmp_path,
                                                                 monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    env = airflow_local.airflow_env(None, fresh_warehouse.sqlalchemy_url())
    seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
    airflow_local.migrate(env)
    done = subprocess.run([sys.executable, "-m", "tests.orchestration.lineage_night", "2023-11-07"], cwd=ROOT,
                          env={**env, "GOV_TASK_RETRIES": "0"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [json.loads(line) for line in
              airflow_local.openlineage_events_file(tmp_path / "local").read_text().splitlines()]
    by_job: dict[str, list[dict]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(event)
    for task in lineage_night.TASKS:
        assert [e["eventType"] for e in by_job[f"gov_publish.{task}"]] == ["START", "COMPLETE"], task
    # the dbt model's lineage (Cosmos): it read the ledger and wrote its staging view in the warehouse
    outputs = {o["name"] for e in events for o in e.get("outputs", [])}
    inputs = {i["name"] for e in events for i in e.get("inputs", [])}
    assert any(name.endswith("staging.stg_audit__load_ledger") for name in outputs), outputs
    assert any(name.endswith("audit.load_ledger") for name in inputs), inputs
