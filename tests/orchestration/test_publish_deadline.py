"""gov_publish's 07:00 as an Airflow Deadline Alert (orchestration/deadlines.py).

The integration test drives Airflow's own deadline machinery (tests/orchestration/deadline_night.py): a run
triggered by the asset gets its deadline from the scheduler's create_dagrun; once that moment has really passed,
the scheduler's miss handling queues the callback, which run as an executor runs it mails on-call. The deadline
is set a few seconds ahead (GOV_PUBLISH_DEADLINE, by deadline_night.py) instead of waiting for 07:00."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from datetime import UTC, datetime, time
from email import policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestration import airflow_local, deadlines
from reports import smtp_sink
from tests.support.airflow_home import seed_home

SHANGHAI = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


@pytest.mark.unit
@pytest.mark.parametrize(("run_after", "now", "expected"), [
    # the nightly run, triggered when the night's files are loaded: that same morning's 07:00
    ("2023-11-08T02:35", "2023-11-08T02:35", "2023-11-08T07:00"),
    # triggered before midnight (a file loaded late in the evening): the next morning
    ("2023-11-07T23:10", "2023-11-07T23:10", "2023-11-08T07:00"),
    # triggered at or after 07:00 (a re-publish after a late file): the next morning
    ("2023-11-08T07:00", "2023-11-08T07:00", "2023-11-09T07:00"),
    ("2023-11-08T09:30", "2023-11-08T09:31", "2023-11-09T07:00"),
    # a run made for an old slot (a backfill, `gov-warehouse run`): that morning is over, no deadline
    ("2023-11-08T02:00", "2026-12-01T14:00", None),
])
def test_the_morning_deadline_is_the_next_0700_in_shanghai(run_after, now, expected):
    got = deadlines.morning_deadline(_at(run_after).astimezone(UTC), _at(now).astimezone(UTC), time(7, 0))
    assert got == (None if expected is None else _at(expected))


@pytest.mark.unit
def test_the_deadline_time_comes_from_gov_publish_deadline(monkeypatch):
    monkeypatch.delenv(deadlines.DEADLINE_VAR, raising=False)
    assert deadlines.deadline_time_of_day() == time(7, 0)
    monkeypatch.setenv(deadlines.DEADLINE_VAR, "06:30")
    assert deadlines.deadline_time_of_day() == time(6, 30)
    monkeypatch.setenv(deadlines.DEADLINE_VAR, "7am")
    with pytest.raises(ValueError, match="GOV_PUBLISH_DEADLINE='7am'"):
        deadlines.deadline_time_of_day()


@pytest.mark.integration
def test_a_run_not_done_by_its_deadline_alerts_on_call(airflow_db_template, server_url, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_HOME", raising=False)
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
    sink = smtp_sink.start(tmp_path / "outbox")
    try:
        env = airflow_local.airflow_env(sink.port, server_url)
        seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
        # what migrate() adds to a seeded home, less the dbt manifest the deadline needs not
        airflow_local.install_plugins(Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"]))
        env["GOV_ONCALL_EMAIL"] = "oncall@taiyuan.example"
        done = subprocess.run([sys.executable, "-m", "tests.orchestration.deadline_night"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        mails = [email.message_from_bytes(p.read_bytes(), policy=policy.default)
                 for p in sorted((tmp_path / "outbox").glob("*.eml"))]
    finally:
        sink.stop()
    # the scheduler made the run's deadline at GOV_PUBLISH_DEADLINE, and handled its miss with our callback
    due = datetime.fromisoformat(result["due"])
    assert [datetime.fromisoformat(t) for t in result["deadline_times"]] == [due]
    assert result["callbacks"] == ["orchestration.deadlines.deadline_missed"]
    assert result["outcomes"] == [[True, None]]
    assert [(m["To"], m["Subject"]) for m in mails] == [(
        "oncall@taiyuan.example",
        f"[gov-data] gov_publish has not published by {due:%Y-%m-%d %H:%M} Asia/Shanghai (run {result['run_id']})")]
