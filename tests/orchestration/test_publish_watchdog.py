"""The 07:00 watchdog, run through Airflow (`airflow dags test gov_publish_watchdog`) against a real
warehouse and a real SMTP server: it alerts on-call when the night is not published (a blocked publish
is not a publish) and stays quiet when it is. Both runs leave their OpenLineage events in the local runs' file
transport (airflow_local.airflow_env): the failed night's task FAIL, the good night's COMPLETE."""

from __future__ import annotations

import email
import json
import time
from datetime import date
from email import policy
from pathlib import Path

import psycopg
import pytest

from orchestration import airflow_local
from reports import smtp_sink
from tests.support.airflow_home import seed_home
from warehouse import connections

pytestmark = pytest.mark.e2e

BLOCKED, PUBLISHED = date(2023, 11, 6), date(2023, 11, 7)
ONCALL = "oncall@taiyuan.example"


def _log_publish(wh, day: date, status: str) -> None:
    # what the publish step records (orchestration.steps._log_publish), as gov_publisher
    with connections.connect_as(connections.PUBLISHER, wh) as conn:
        conn.execute("insert into audit.publish_log (service_date, run_id, status, checks, failed, warnings, detail) "
                     "values (%s, %s, %s, 0, 0, 0, '{}')", (day, f"test-{status}", status))


def _alerts(outbox: Path) -> list[str]:
    messages = [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]
    return [m["Subject"] for m in messages if m["To"] == ONCALL]


def test_watchdog_alerts_when_the_night_is_not_published_and_is_quiet_when_it_is(
        fresh_warehouse, airflow_db_template, tmp_path, monkeypatch):
    wh = fresh_warehouse
    _log_publish(wh, BLOCKED, "blocked")
    _log_publish(wh, PUBLISHED, "published")
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("GOV_ONCALL_EMAIL", ONCALL)
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    sink = smtp_sink.start(tmp_path / "outbox")
    try:
        env = airflow_local.airflow_env(sink.port, wh.sqlalchemy_url())
        seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
        airflow_local.migrate(env)

        rc = airflow_local.dags_test("gov_publish_watchdog", BLOCKED, env, tmp_path / "blocked.log")
        assert rc != 0, (tmp_path / "blocked.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while not _alerts(tmp_path / "outbox") and time.monotonic() < deadline:
            time.sleep(1)
        assert _alerts(tmp_path / "outbox") == [
            f"[gov-data] gov_publish_watchdog.check_published failed for {BLOCKED.isoformat()}"]
        log = (tmp_path / "blocked.log").read_text()
        assert f"service day {BLOCKED.isoformat()} has not been published" in log

        rc = airflow_local.dags_test("gov_publish_watchdog", PUBLISHED, env, tmp_path / "published.log")
        assert rc == 0, (tmp_path / "published.log").read_text()[-3000:]
        time.sleep(2)  # what an alert would have taken to reach the sink
        assert len(_alerts(tmp_path / "outbox")) == 1  # still only the first night's
    finally:
        sink.stop()
    # lineage through the OpenLineage provider to the local file transport, one event a line
    events = [json.loads(line) for line in
              airflow_local.openlineage_events_file(tmp_path / "local").read_text().splitlines()]
    task = [e["eventType"] for e in events if e["job"]["name"] == "gov_publish_watchdog.check_published"]
    assert task == ["START", "FAIL", "START", "COMPLETE"]
    assert {e["job"]["namespace"] for e in events} == {"gov-warehouse"}
    with psycopg.connect(wh.conninfo()) as conn:  # the watchdog only reads
        assert conn.execute("select count(*) from audit.publish_log").fetchone() == (2,)
