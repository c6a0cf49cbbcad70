"""A real multi-process Airflow deployment for tests: api-server, scheduler, dag-processor and a Celery
worker as separate OS processes, PostgreSQL as metadata database and Redis as Celery broker — the
distributed path of docker-compose.yml (DESIGN.md §11) without containers.

Only Airflow's public interfaces are used to drive it: the REST API v2 and the `airflow` CLI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration import airflow_local

TERMINAL_RUN_STATES = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CLAIM_KEY = "gov-test:claimed-by"


def free_redis_db(host: str = "127.0.0.1", port: int = 6379) -> int:
    """An empty Redis database number, so the test's broker queues are shared with nobody."""
    import redis

    # high numbers first: low ones are what people and other tools use by default. An empty database is
    # claimed with a key set only if absent: of two runs (two workers, two sessions) that both saw it empty,
    # one gets it and the other goes on to the next (flush_redis_db drops the claim with the queues)
    for db in range(15, 0, -1):
        client = redis.Redis(host=host, port=port, db=db)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, f"{socket.gethostname()}:{os.getpid()}", nx=True):
                return db
        finally:
            client.close()
    raise RuntimeError("no empty Redis database (1-15) for the test broker")


def flush_redis_db(db: int, host: str = "127.0.0.1", port: int = 6379) -> None:
    import redis

    client = redis.Redis(host=host, port=port, db=db)
    try:
        client.flushdb()
    finally:
        client.close()


class ApiError(RuntimeError):
    pass


@dataclass
class AirflowCluster:
    """Airflow processes sharing one metadata database, broker, AIRFLOW_HOME and DAG folder."""

    home: Path
    metadata_url: str
    broker_url: str
    smtp_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    worker_concurrency: int = 2
    # True: the dbt manifest is made first, for gov_publish's per-node dbt tasks (what `make run` does)
    prepare_dags: bool = True
    # seconds between two parses of a DAG file. Each parse of the three files costs about 3 s of CPU, a
    # third of a core at 10 s; the files do not change while a test runs, so a test can set this high and
    # ask for the one re-parse it waits on (reparse)
    dag_file_process_interval: int = 10
    api_port: int = field(default_factory=free_port)
    # generated once: task tokens are signed by the scheduler and checked by the api-server, and
    # connections are encrypted by one process and read by another, so all must share these
    jwt_secret: str = field(default_factory=lambda: uuid.uuid4().hex)
    fernet_key: str = field(default_factory=lambda: _fernet_key())
    log_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        # the cluster's own warehouse: without it the default would start an embedded server
        env = airflow_local.airflow_env(self.smtp_port, self.extra_env.get("WAREHOUSE_URL"))
        # every process must agree on these; in compose they come from the shared x-airflow-common block
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            # Airflow's async engine would default to asyncpg for a postgresql URL; psycopg 3 (the driver
            # installed) serves both the sync and the async engine
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
            # Celery's database result backend through SQLAlchemy with psycopg 3 (the only driver installed)
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__API__WORKERS": "1",  # 2 shared cores: one uvicorn worker is plenty for a test
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            # not the default 8793/8794: other Airflow instances may run on this machine
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_ports[0]),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_ports[1]),
            # pick up runs and parse results quickly: the defaults are tuned for long-lived deployments
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(self.dag_file_process_interval),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        })
        env.update(self.extra_env)
        return env

    # --- processes -------------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run an `airflow` CLI command against this cluster's metadata database."""
        proc = subprocess.run([airflow_local.airflow_bin(), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                               f"{proc.stderr[-3000:]}")
        return proc

    def start(self) -> None:
        """Set up the metadata database and start the four processes (the pool is made by wait_ready, over
        the REST API: one `airflow` interpreter start fewer)."""
        self.home.mkdir(parents=True, exist_ok=True)
        # the import check runs beside the migration: each is mostly an interpreter importing Airflow
        check = self._start_celery_executor_import_check()
        if self.prepare_dags:
            # what `make run`/`make airflow` do before Airflow parses the DAG files: the dbt manifest
            airflow_local.ensure_dbt_manifest()
        # the project's Airflow plugins: the scheduler cannot create a gov_publish run without the one
        # registering its deadline reference (orchestration/deadlines.py)
        airflow_local.install_plugins(Path(self.env["AIRFLOW__CORE__PLUGINS_FOLDER"]))
        try:
            self.airflow("db", "migrate")
        finally:
            self._check_celery_executor_imports(check)
        worker_name = f"gov-test-{uuid.uuid4().hex[:6]}@%h"
        commands = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
            "celery-worker": ["celery", "worker", "--concurrency", str(self.worker_concurrency),
                              "--celery-hostname", worker_name, "--without-gossip", "--without-mingle"],
        }
        env = self.env
        for name, args in commands.items():
            log = (self.home / f"{name}.log").open("w")
            self.procs[name] = subprocess.Popen([airflow_local.airflow_bin(), *args], env=env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def _start_celery_executor_import_check(self) -> subprocess.Popen:
        python = str(Path(airflow_local.airflow_bin()).with_name("python"))
        return subprocess.Popen([python, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
                                env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def _check_celery_executor_imports(self, check: subprocess.Popen) -> None:
        """Fail fast, with the reason, when the installed Celery and its Airflow provider do not fit together
        (e.g. celery 5.7 dropped `celery.backends.database.retry`, which provider 3.26 imports): otherwise
        the worker dies at start-up and the test only sees a dead process."""
        _, stderr = check.communicate(timeout=300)
        if check.returncode != 0:
            raise RuntimeError("the Celery executor cannot be imported with the installed packages (check the "
                               "celery / apache-airflow-providers-celery versions in uv.lock):\n"
                               + stderr[-1500:])

    def stop(self) -> None:
        # SIGTERM each process group (Airflow forks task runners and Celery pool children), then SIGKILL
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 45
        for proc in self.procs.values():
            try:
                proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"Airflow processes exited: {dead}\n{self.log_tails()}")

    def log_tails(self, chars: int = 2500) -> str:
        out = []
        for name in self.procs:
            path = self.home / f"{name}.log"
            text = path.read_text(errors="replace") if path.exists() else ""
            out.append(f"--- {name} ({path}) ---\n{text[-chars:]}")
        return "\n".join(out)

    # --- REST API v2 -----------------------------------------------------------------------------

    def wait_ready(self, timeout: float = 300) -> None:
        """api-server answering, a token for the simple auth manager's admin, the project's DAGs parsed."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                self._request("GET", "/api/v2/version", auth=False)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("api-server did not come up\n" + self.log_tails()) from None
                time.sleep(2)
        passwords = json.loads((self.home / "simple_auth_manager_passwords.json.generated").read_text())
        token = self._request("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]}, auth=False)
        self._token = token["access_token"]
        # what `make run`/`make airflow` create (airflow_local.migrate), before any DAG is unpaused
        pool = {"name": "warehouse", "slots": airflow_local.WAREHOUSE_POOL_SLOTS,
                "description": "Concurrent warehouse sessions of the gov DAGs", "include_deferred": False}
        try:
            self.post("/api/v2/pools", pool)
        except ApiError as err:
            if "409" not in str(err):  # 409: a metadata database used before has it already
                raise
            self.patch("/api/v2/pools/warehouse", pool)
        wanted = {"gov_ingest", "gov_publish", "gov_publish_watchdog"}
        while {d["dag_id"] for d in self.get("/api/v2/dags")["dags"]} < wanted:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("the project's DAGs were not parsed\n" + self.log_tails())
            time.sleep(2)

    def _request(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                raw = r.read()
        except urllib.error.HTTPError as err:
            raise ApiError(f"{method} {path} -> {err.code}: {err.read().decode(errors='replace')[:2000]}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", path, body)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.patch(f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def reparse(self, dag_id: str) -> None:
        """Ask the dag-processor to parse the DAG's file now (it takes the request on its next loop)."""
        token = self.get(f"/api/v2/dags/{dag_id}")["file_token"]
        self._request("PUT", f"/api/v2/parseDagFile/{token}")

    def trigger(self, dag_id: str, logical_date: datetime | None, conf: dict | None = None,
                run_after: datetime | None = None, note: str | None = None) -> dict:
        body: dict[str, Any] = {"logical_date": logical_date.isoformat() if logical_date else None,
                                "conf": conf or {}}
        if run_after is not None:
            body["run_after"] = run_after.isoformat()
        if note:
            body["note"] = note
        return self.post(f"/api/v2/dags/{dag_id}/dagRuns", body)

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=run_after")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        # page by page: the API returns 50 by default, and gov_publish has more tasks (a task per dbt node)
        tis: list[dict] = []
        while True:
            page = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100&offset={len(tis)}")
            tis += page["task_instances"]
            if not page["task_instances"] or len(tis) >= page["total_entries"]:
                return tis

    def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        entry = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
        return entry["value"]

    def queued_asset_events(self, dag_id: str) -> int:
        try:
            return self.get(f"/api/v2/dags/{dag_id}/assets/queuedEvents")["total_entries"]
        except ApiError as err:
            if "404" in str(err):  # nothing queued
                return 0
            raise

    def wait_runs(self, dag_id: str, run_ids: set[str], timeout: float) -> dict[str, dict]:
        """Wait until the given runs reach a final state; return them by run_id."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            runs = {r["dag_run_id"]: r for r in self.dag_runs(dag_id) if r["dag_run_id"] in run_ids}
            if len(runs) == len(run_ids) and all(r["state"] in TERMINAL_RUN_STATES for r in runs.values()):
                return runs
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} runs not finished: {self.describe(dag_id, runs)}\n{self.log_tails()}")
            time.sleep(3)

    def describe(self, dag_id: str, runs: dict[str, dict]) -> str:
        """Run and task states, for assertion messages."""
        lines = []
        for run_id, run in runs.items():
            tis = ", ".join(f"{t['task_id']}={t['state']}" for t in self.task_instances(dag_id, run_id))
            lines.append(f"{run_id}: {run['state']} [{tis}]")
        return "\n".join(lines)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
