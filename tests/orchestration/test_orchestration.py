"""Airflow behaviour a data engineer relies on, run through Airflow itself: a failing task is
retried with back-off and then notifies on-call by email (a real SMTP server), and `make airflow`'s
processes serve the project's DAGs over Airflow's REST API."""

from __future__ import annotations

import email
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from datetime import date
from email import policy
from pathlib import Path

import pytest

from orchestration import airflow_local
from reports import smtp_sink

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


def test_failing_task_is_retried_then_notifies_on_call(airflow_env, monkeypatch):
    tmp_path, sink = airflow_env
    # an unreachable warehouse makes the first database task fail on every try
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("GOV_TASK_RETRIES", "1")
    monkeypatch.setenv("GOV_RETRY_DELAY_SECONDS", "1")
    monkeypatch.setenv("GOV_ONCALL_EMAIL", "oncall@taiyuan.example")
    env = airflow_local.airflow_env(sink.port)
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
    assert len(alerts) == 1
    assert "gov_ingest.bootstrap failed" in alerts[0]["Subject"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        return json.loads(r.read())


def test_make_airflow_processes_list_the_dags_over_rest(airflow_env, pipeline_warehouse, monkeypatch):
    """`gov-warehouse airflow` (what `make airflow` runs): api-server, scheduler, dag-processor, triggerer."""
    tmp_path, _ = airflow_env
    port = _free_port()
    monkeypatch.setenv("AIRFLOW__API__PORT", str(port))
    env = airflow_local.airflow_env(None)
    proc = subprocess.Popen([str(Path(airflow_local.airflow_bin()).with_name("python")), "-m", "commands", "airflow"],
                            env=env, stdout=(tmp_path / "airflow.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "airflow.log").read_text()[-3000:]
            try:
                _get(f"{base}/api/v2/version")
                break
            except OSError:
                assert time.monotonic() < deadline, "api-server did not come up"
                time.sleep(2)
        passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        request = urllib.request.Request(f"{base}/auth/token", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"username": "admin", "password": password}).encode())
        with urllib.request.urlopen(request, timeout=10) as r:
            token = json.loads(r.read())["access_token"]
        dag_ids: set[str] = set()
        while time.monotonic() < deadline and len(dag_ids) < 3:
            dag_ids = {d["dag_id"] for d in _get(f"{base}/api/v2/dags", token)["dags"]}
            time.sleep(2)
        assert dag_ids == {"gov_ingest", "gov_publish", "gov_publish_watchdog"}
        errors = _get(f"{base}/api/v2/importErrors", token)
        assert errors["total_entries"] == 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


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
