"""On-call alerts name the task that failed, every time: two failures of one night give two alerts, each with
its own task (one notifier shared by a DAG's tasks renders its subject once and named the first task in all)."""

from __future__ import annotations

import email
import json
import time
from email import policy
from types import SimpleNamespace

import pytest

from reports import smtp_sink

pytestmark = pytest.mark.integration


def use_sink(monkeypatch, sink) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": sink.port,
        "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "gov-data@taiyuan.example"}}))


def subjects_in(folder, count: int) -> list[str]:
    for _ in range(50):
        if len(list(folder.glob("*.eml"))) >= count:
            break
        time.sleep(0.1)
    return sorted(email.message_from_bytes(p.read_bytes(), policy=policy.default)["Subject"]
                  for p in folder.glob("*.eml"))


def test_each_failure_alert_names_its_own_task(tmp_path, monkeypatch):
    from airflow.sdk import DAG

    from orchestration.dag_settings import alert_on_call, default_args

    sink = smtp_sink.start(tmp_path)
    use_sink(monkeypatch, sink)
    assert default_args()["on_failure_callback"] is alert_on_call  # what every task of the DAGs is given
    dag = DAG("gov_publish", schedule=None)
    try:
        for task_id in ("publish", "night_failed"):
            ti = SimpleNamespace(task_id=task_id, try_number=1, log_url="http://localhost:8080/log")
            alert_on_call({"dag": dag, "ti": ti, "params": {"service_date": "2023-11-07"}, "ds": "2023-11-08",
                           "run_id": "local__2023-11-07"})
        subjects = subjects_in(tmp_path, 2)
    finally:
        sink.stop()
    assert subjects == ["[gov-data] gov_publish.night_failed failed for 2023-11-07",
                        "[gov-data] gov_publish.publish failed for 2023-11-07"]


def test_a_failure_in_an_asset_triggered_run_is_alerted(tmp_path, monkeypatch):
    """gov_publish's nightly runs are asset-triggered: no logical date, so no `ds` in the context. The subject's
    `ds` made the callback itself fail ("'ds' is undefined", seen in bench/night.py's backfill), and on-call heard
    nothing of a failed dbt build."""
    from airflow.sdk import DAG

    from orchestration.dag_settings import alert_on_call

    sink = smtp_sink.start(tmp_path)
    use_sink(monkeypatch, sink)
    run_id = "asset_triggered__2026-12-01T23:06:11.287523+00:00_P82Ypbyx"
    try:
        ti = SimpleNamespace(task_id="dbt.dbt_producer_watcher", try_number=1, log_url="http://localhost:8080/log")
        alert_on_call({"dag": DAG("gov_publish", schedule=None), "ti": ti, "params": {"service_date": None},
                       "run_id": run_id})
        subjects = subjects_in(tmp_path, 1)
    finally:
        sink.stop()
    assert subjects == [f"[gov-data] gov_publish.dbt.dbt_producer_watcher failed for {run_id}"]
