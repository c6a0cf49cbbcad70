"""Airflow behaviour a data engineer relies on, run through Airflow itself: a failing task is
retried with back-off and then notifies on-call by email (a real SMTP server). What `make airflow` serves
over Airflow's REST API is in test_airflow_ui.py."""

from __future__ import annotations

import email
import sqlite3
import time
from datetime import date
from email import policy
from pathlib import Path

import pytest

from orchestration import airflow_local
from reports import smtp_sink
from tests.support.airflow_home import seed_home

pytestmark = pytest.mark.e2e


@pytest.fixture
def airflow_env(tmp_path, monkeypatch):
    """An isolated Airflow home (SQLite metadata) whose smtp_default is a real aiosmtpd server."""
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    sink = smtp_sink.start(tmp_path / "outbox")
    yield tmp_path, sink
    sink.stop()


def _messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def test_failing_task_is_retried_then_notifies_on_call(airflow_env, airflow_db_template, monkeypatch):
    tmp_path, sink = airflow_env
    # an unreachable warehouse makes the first database task fail on every try
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("GOV_TASK_RETRIES", "1")
    monkeypatch.setenv("GOV_RETRY_DELAY_SECONDS", "1")
    monkeypatch.setenv("GOV_ONCALL_EMAIL", "oncall@taiyuan.example")
    env = airflow_local.airflow_env(sink.port)
    seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))  # the session's migrated metadata schema
    airflow_local.migrate(env)

    rc = airflow_local.dags_test("gov_ingest", date(2023, 11, 7), env, tmp_path / "run.log")

    assert rc != 0
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        state, tries = db.execute(
            "select state, try_number from task_instance where dag_id = 'gov_ingest' and task_id = 'bootstrap'"
        ).fetchone()
    assert (state, tries) == ("failed", 2)  # the first try and one retry
    time.sleep(1)
    alerts = [m for m in _messages(tmp_path / "outbox") if m["To"] == "oncall@taiyuan.example"]
    # one alert per failed task, each naming its own: the bootstrap, and the reporters' notices, which run
    # whatever happened to the loads (all_done) and cannot reach the warehouse either
    assert sorted(m["Subject"] for m in alerts) == ["[gov-data] gov_ingest.bootstrap failed for 2023-11-07",
                                                    "[gov-data] gov_ingest.notify_reporters failed for 2023-11-07"]


def test_airflow_env_starts_no_embedded_server_when_given_a_warehouse(tmp_path, monkeypatch):
    """A caller that names its warehouse (the distributed test's cluster) gets it in the environment,
    and no embedded PostgreSQL is started for a default nobody uses (one used to outlive the test run)."""
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    url = "postgresql+psycopg://gov@db.example:5432/gov_warehouse"
    env = airflow_local.airflow_env(None, url)
    assert env["WAREHOUSE_URL"] == url
    assert not (tmp_path / "local" / "pgdata").exists()
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://other@elsewhere/x")
    assert airflow_local.airflow_env(None)["WAREHOUSE_URL"] == "postgresql://other@elsewhere/x"
