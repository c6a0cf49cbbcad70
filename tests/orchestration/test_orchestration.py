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


def test_a_failed_night_skips_its_publish_and_not_the_next_night(airflow_env, airflow_db_template, monkeypatch):
    """`gov-warehouse run`'s nights in one Airflow process (airflow_local.dags_test_nights): a night whose ingest
    fails gets no publish run, and the next night is still run, in its own run and log file."""
    tmp_path, sink = airflow_env
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")  # every bootstrap fails
    monkeypatch.setenv("GOV_TASK_RETRIES", "0")
    env = airflow_local.airflow_env(sink.port)
    seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
    airflow_local.migrate(env)
    days = [date(2023, 11, 6), date(2023, 11, 7)]
    started = []

    results = airflow_local.dags_test_nights(days, env, tmp_path / "logs", lambda dag, day: started.append((dag, day)))

    assert started == [("gov_ingest", days[0]), ("gov_ingest", days[1])]
    assert set(results) == set(days)
    assert all(list(r) == ["gov_ingest"] and r["gov_ingest"] != 0 for r in results.values()), results
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as db:
        runs = db.execute("select dag_id, run_id, state from dag_run order by run_id").fetchall()
        failed = db.execute("select run_id from task_instance where task_id = 'bootstrap' and state = 'failed' "
                            "order by run_id").fetchall()
    assert runs == [("gov_ingest", f"local__{day}", "failed") for day in days]
    assert failed == [(f"local__{day}",) for day in days]
    for day in days:  # each night's output in its own file, with its own DAG run's task logs
        text = airflow_local.nightly_log_path(tmp_path / "logs", day).read_text()
        assert f"=== gov_ingest for service day {day} " in text and "gov_publish for service day" not in text
        other = next(d for d in days if d != day)
        assert f"local__{day}" in text and f"local__{other}" not in text


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
