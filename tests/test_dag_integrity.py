"""Every DAG file imports without errors, quickly, and without touching a database or dbt."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ingest import config


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
    assert "gov_nightly" in dagbag.dag_ids


def test_nightly_dag_shape(dagbag):
    dag = dagbag.dags["gov_nightly"]
    assert {"load_streets", "load_canteens", "load_assistance", "validate_raw", "build_marts",
            "send_summary"} <= set(dag.task_ids)
    assert str(dag.timezone) in ("Asia/Shanghai", "Timezone('Asia/Shanghai')")
    # the summary goes out only after the marts are built
    assert "build_marts" in dag.get_task("send_summary").upstream_task_ids
    for task in dag.tasks:
        assert task.owner == "gov-data"
        assert task.execution_timeout is not None


def test_dag_files_parse_without_database_or_dbt():
    """Importing a DAG file must not connect anywhere: run it with an unreachable warehouse."""
    for path in config.DAGS_DIR.glob("*.py"):
        env = {**os.environ, "WAREHOUSE_URL": "postgresql://nobody@127.0.0.1:1/none", "PATH": ""}
        proc = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
