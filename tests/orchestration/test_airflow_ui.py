"""What a data engineer sees in `make airflow` after `make run`, read through Airflow's REST API (v2) of the
processes `gov-warehouse airflow` starts on the Airflow home of the session's `make run` of two nights
(tests/support/airflow_night.py): the project's DAGs without import errors, local runs that lasted as long as
they really ran, name their service day and have their tasks' logs, the DAGs paused as the README says (and
the printed command unpauses them), and the UI page setting Asia/Shanghai as the browser's default zone."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestration import airflow_local
from tests.conftest import create_database, drop_database
from tests.support.airflow_night import DAYS

pytestmark = pytest.mark.e2e

GOV_DAGS = {"gov_ingest", "gov_publish", "gov_publish_watchdog"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def get(self, path: str, raw: bool = False):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        with urllib.request.urlopen(urllib.request.Request(self.base + path, headers=headers), timeout=10) as r:
            body = r.read()
        return body.decode() if raw else json.loads(body)

    def login(self, password: str) -> None:
        request = urllib.request.Request(f"{self.base}/auth/token", headers={"Content-Type": "application/json"},
                                         data=json.dumps({"username": "admin", "password": password}).encode())
        with urllib.request.urlopen(request, timeout=10) as r:
            self.token = json.loads(r.read())["access_token"]


def _wait_for(api: Api, proc: subprocess.Popen, log: Path, deadline: float) -> None:
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            api.get("/api/v2/version")
            return
        except OSError:
            assert time.monotonic() < deadline, "api-server did not come up"
            time.sleep(2)


@pytest.fixture(scope="module")
def local_airflow(airflow_night, server_url, tmp_path_factory):
    """`gov-warehouse airflow` (what `make airflow` runs) on the Airflow home of the session's `make run`,
    logged in as the printed admin; the run's clock readings."""
    tmp = tmp_path_factory.mktemp("airflow_ui")
    # the DAGs are unpaused here (as the README tells the engineer): whatever the scheduler then runs goes to a
    # warehouse, landing zone, outbox and local dir of this module's own, never to the run the others read
    wh = create_database(server_url, "gov_ui")
    mp = pytest.MonkeyPatch()
    port = _free_port()
    for name, value in {"GOV_LOCAL_DIR": str(tmp / "local"), "LANDING_DIR": str(tmp / "landing"),
                        "OUTBOX_DIR": str(tmp / "outbox"), "WAREHOUSE_URL": wh.sqlalchemy_url(),
                        "AIRFLOW_HOME": str(airflow_night.airflow_home), "AIRFLOW__API__PORT": str(port),
                        # not the default 8793/8794 of the scheduler's and triggerer's log servers: other
                        # Airflows may run at the same time (parallel tests, a `make airflow`)
                        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port())}.items():
        mp.setenv(name, value)
    mp.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    env = airflow_local.airflow_env(None)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(str(airflow_night.airflow_home / "airflow.db"))

    log = tmp / "airflow.log"
    proc = subprocess.Popen([str(Path(airflow_local.airflow_bin()).with_name("python")), "-m", "commands", "airflow"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    api = Api(f"http://127.0.0.1:{port}")
    try:
        _wait_for(api, proc, log, time.monotonic() + 300)
        passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
        api.login(json.loads(passwords.read_text())["admin"])
        yield api, airflow_night.window, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        mp.undo()
        drop_database(wh)


def _dags(api: Api, deadline: float) -> dict[str, dict]:
    dags: dict[str, dict] = {}
    while time.monotonic() < deadline and set(dags) != GOV_DAGS:
        dags = {d["dag_id"]: d for d in api.get("/api/v2/dags")["dags"]}
        time.sleep(1)
    return dags


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_make_airflow_lists_the_dags_without_import_errors(local_airflow):
    api, _, _ = local_airflow
    assert set(_dags(api, time.monotonic() + 120)) == GOV_DAGS
    assert api.get("/api/v2/importErrors")["total_entries"] == 0
    for dag_id in GOV_DAGS:  # each DAG's page shows its file's docstring (doc_md)
        source = (airflow_local.settings.DAGS_DIR / f"{dag_id}.py").read_text(encoding="utf-8")
        assert api.get(f"/api/v2/dags/{dag_id}/details")["doc_md"].strip() == ast.get_docstring(ast.parse(source))


def test_a_local_run_lasts_as_long_as_it_ran_and_names_its_service_day(local_airflow):
    api, (before, after), _ = local_airflow
    by_dag = {}
    for dag_id in (airflow_local.INGEST_DAG, airflow_local.PUBLISH_DAG):
        runs = by_dag[dag_id] = sorted(api.get(f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"],
                                       key=lambda r: r["logical_date"])
        assert [r["dag_run_id"] for r in runs] == [f"local__{day}" for day in DAYS]
        for day, run in zip(DAYS, runs, strict=True):
            start, end = _when(run["start_date"]), _when(run["end_date"])
            # made between the run's two clock readings, not at its logical date three years earlier
            assert before - timedelta(seconds=1) <= start <= end <= after + timedelta(seconds=1)
            assert end - start < timedelta(hours=1)
            assert run["state"] == "success"
            # shaped like the scheduled run of that night: logical date and run_after at 02:00 the next morning
            slot = datetime(day.year, day.month, day.day, 18, 0, tzinfo=UTC)  # 02:00 Asia/Shanghai, by hand
            assert _when(run["logical_date"]) == _when(run["run_after"]) == slot
            assert run["conf"] == {"service_date": day.isoformat()}
            assert f"Service day {day.isoformat()}" in run["note"]
    # the publish of a night ran after its ingest, and the next night after both (one process, in order)
    nights = zip(by_dag[airflow_local.INGEST_DAG], by_dag[airflow_local.PUBLISH_DAG], strict=True)
    times = [_when(r[k]) for pair in nights for r in pair for k in ("start_date", "end_date")]
    assert times == sorted(times)


def test_a_local_run_s_task_logs_are_in_the_ui(local_airflow):
    api, _, _ = local_airflow
    for day in DAYS:
        logs = api.get(f"/api/v2/dags/{airflow_local.INGEST_DAG}/dagRuns/local__{day}/taskInstances/service_day/"
                       "logs/1")
        events = [line.get("event", "") if isinstance(line, dict) else line for line in logs["content"]]
        # the task returns the service day it worked out from the run (steps.service_day)
        assert any(f"Returned value was: {day}" in e for e in events), events[-20:]


def test_dags_start_paused_and_the_printed_command_unpauses_them(local_airflow):
    api, _, log = local_airflow
    dags = _dags(api, time.monotonic() + 120)
    assert {d: v["is_paused"] for d, v in dags.items()} == dict.fromkeys(GOV_DAGS, True)
    printed = re.search(r"^  (AIRFLOW_HOME=\S+ \S+ dags unpause .*)$", log.read_text(), re.M)
    assert printed, log.read_text()[-2000:]
    subprocess.run(printed.group(1), shell=True, check=True, capture_output=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")})
    assert {d["dag_id"]: d["is_paused"] for d in api.get("/api/v2/dags")["dags"]} == dict.fromkeys(GOV_DAGS, False)


def test_the_ui_page_defaults_the_browser_zone_to_asia_shanghai(local_airflow):
    api, _, _ = local_airflow
    page = api.get("/dags", raw=True)
    # the UI reads its zone from local storage key "timezone" (a JSON string), falling back to the browser's
    assert '<script>try{if(!localStorage.getItem("timezone"))localStorage.setItem("timezone","\\"Asia/Shanghai\\"")' \
        in page
    assert page.index("localStorage.setItem") < page.index('<script type="module"')
