"""DAG policy: every DAG file imports without errors and without touching a database or dbt, and
every DAG follows the house rules (owner, tags, retries with back-off, timeouts, Shanghai time)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ingest import config

EXPECTED_DAGS = {"gov_ingest", "gov_publish", "gov_publish_watchdog"}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(config.DAGS_DIR)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(config.DAGS_DIR))
    yield bag
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES"):
        os.environ.pop(key, None)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED_DAGS


@pytest.mark.parametrize("dag_id", sorted(EXPECTED_DAGS))
def test_dag_policy(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    assert dag.tags and "governance" in dag.tags
    assert str(dag.timezone).endswith("Asia/Shanghai")
    assert dag.max_active_runs == 1 and not dag.catchup
    for task in dag.tasks:
        assert task.owner == "gov-data", task.task_id
        assert task.execution_timeout is not None, task.task_id
        assert task.on_failure_callback, task.task_id
        # a blocked publish is a verdict, not a glitch: it alone is not retried
        if dag_id != "gov_publish_watchdog" and task.task_id != "publish":
            assert task.retries >= 1 and task.retry_exponential_backoff, task.task_id


def test_ingest_produces_feed_assets_that_schedule_publish(dagbag):
    ingest, publish = dagbag.dags["gov_ingest"], dagbag.dags["gov_publish"]
    outlets = {o.uri for t in ingest.tasks for o in t.outlets}
    assert {"gov://warehouse/raw/streets_compounds", "gov://warehouse/raw/canteens_meals",
            "gov://warehouse/raw/assistance_case_events", "gov://warehouse/raw/night"} <= outlets
    # data-aware scheduling: publish runs when the night's raw data is in
    assert "gov://warehouse/raw/night" in str(publish.timetable.asset_condition)
    assert "send_summary" in publish.task_ids and "publish" in publish.get_task("send_summary").upstream_task_ids
    # database work shares one bounded pool
    assert {t.pool for t in ingest.tasks if t.task_id.startswith("load_")} == {"warehouse"}


def test_dag_files_parse_without_database_or_dbt():
    """Importing a DAG file must not connect anywhere: run it with an unreachable warehouse and no PATH."""
    for path in config.DAGS_DIR.glob("gov_*.py"):
        env = {**os.environ, "WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": ""}
        proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
