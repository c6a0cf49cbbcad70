"""Run Airflow locally on the embedded defaults: environment, metadata DB, `airflow dags test` (one DAG run, or
every night of a `gov-warehouse run` in one process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from warehouse import connections, conninfo, settings
from warehouse.bootstrap import BOOTSTRAP_MODE_VAR

INGEST_DAG = "gov_ingest"
PUBLISH_DAG = "gov_publish"
WAREHOUSE_POOL_SLOTS = 4


def airflow_bin() -> str:
    return str(Path(sys.executable).with_name("airflow"))


def airflow_env(smtp_port: int | None = None, warehouse_url: str | None = None) -> dict[str, str]:
    """Environment for Airflow processes: local home, project DAGs, the warehouse URL, smtp_default.

    The warehouse is `warehouse_url`, else WAREHOUSE_URL, else the embedded server, which is started
    only then; its administrator's password is left out (the caller has bootstrapped the warehouse)."""
    home = settings.airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Airflow's own processes start `airflow …` subcommands by name: the venv must come first on PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("AIRFLOW_HOME", str(home))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(settings.DAGS_DIR))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.setdefault("AIRFLOW__CORE__DEFAULT_TIMEZONE", settings.SERVICE_TZ)
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    # the documented state of a local Airflow (README, For data engineers): the DAGs start paused, nothing runs
    # at 02:00 over a landing zone without that night's files until the engineer unpauses (UNPAUSE_HINT)
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "True")
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(home / "plugins"))
    if warehouse_url:
        env["WAREHOUSE_URL"] = warehouse_url
    elif not env.get("WAREHOUSE_URL"):
        env["WAREHOUSE_URL"] = connections.warehouse().sqlalchemy_url()
    # Airflow's processes learn where the warehouse is, not the administrator's password: every caller
    # bootstraps first, and the nightly bootstrap task then only verifies that (docs/security.md). An
    # administrator without a password (embedded server, trust) has nothing to withhold: the task applies.
    wh = conninfo.parse_url(env["WAREHOUSE_URL"])
    if wh.password:
        env["WAREHOUSE_URL"] = replace(wh, password="").sqlalchemy_url()
        env.setdefault(BOOTSTRAP_MODE_VAR, "verify")
    env.setdefault("GOV_LOCAL_DIR", str(settings.local_dir()))
    # lineage of every task and dbt model (the OpenLineage provider; Cosmos adds dbt's inputs and outputs), as JSON
    # lines in a file of the local dir: compose points the same setting at a backend (docs/deploy.md)
    lineage = openlineage_events_file(Path(env["GOV_LOCAL_DIR"]))
    env.setdefault("AIRFLOW__OPENLINEAGE__TRANSPORT",
                   json.dumps({"type": "file", "log_file_path": str(lineage), "append": True}))
    env.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", "gov-warehouse")
    # the summaries' links to the docs: `make docs` serves them there (a worker's file:// path is dead for officials)
    env.setdefault("GOV_DOCS_BASE_URL", f"http://localhost:{settings.DOCS_PORT}")
    env.setdefault("LANDING_DIR", str(settings.landing_dir()))
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    env.setdefault("GX_ANALYTICS_ENABLED", "False")
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
    # Cosmos would report every dbt task to its telemetry endpoint (an HTTP call per task, failing offline)
    env.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
    if smtp_port is not None:
        env["AIRFLOW_CONN_SMTP_DEFAULT"] = json.dumps({
            "conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "gov-data@taiyuan.example",
                      "timeout": 10, "retry_limit": 1},
        })
    return env


def openlineage_events_file(local_dir: Path) -> Path:
    """The file local runs write their OpenLineage events to (one JSON event a line), its folder made."""
    path = local_dir / "openlineage" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def migrate(env: dict[str, str]) -> None:
    """Get ready for Airflow to parse the DAGs: the dbt manifest (see ensure_dbt_manifest), then Airflow's
    metadata DB, created or upgraded (skipped when this Airflow version already did)."""
    from importlib.metadata import version

    ensure_dbt_manifest()
    install_plugins(Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"]))

    # not `import airflow` here: it would read (and create) a config before AIRFLOW_HOME is in effect
    marker = Path(env["AIRFLOW_HOME"]) / f".migrated-{version('apache-airflow')}-{_digest(env)}"
    if marker.exists():
        return
    subprocess.run([airflow_bin(), "db", "migrate"], env=env, check=True, capture_output=True)
    subprocess.run([airflow_bin(), "pools", "set", "warehouse", str(WAREHOUSE_POOL_SLOTS),
                    "Concurrent warehouse sessions of the gov DAGs"], env=env, check=True, capture_output=True)
    marker.touch()


# Airflow loads plugins from a folder, not a package: a one-line module there for each of the project's plugins
PLUGINS = {
    "gov_ui_timezone.py": "from orchestration.airflow_ui import GovUiPlugin",  # the UI's default time zone
    "gov_deadlines.py": "from orchestration.deadlines import DeadlinePlugin",  # gov_publish's 07:00 reference
}


def install_plugins(folder: Path) -> list[Path]:
    """Write the project's plugin modules into Airflow's plugins folder (here by migrate, in the image by the
    Dockerfile)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, line in PLUGINS.items():
        path = folder / name
        path.write_text(f"{line}  # noqa: F401  (written by gov-warehouse)\n")
        paths.append(path)
    return paths


def unpause_command(env: dict[str, str]) -> str:
    """The one command that unpauses the three gov DAGs of this local Airflow, for a second terminal."""
    return (f"AIRFLOW_HOME={env['AIRFLOW_HOME']} {airflow_bin()} dags unpause --treat-dag-id-as-regex "
            f"--yes '^gov_'")


def ensure_dbt_manifest() -> Path:
    """The dbt manifest gov_publish renders its per-model tasks from, (re)made by `dbt parse` when the dbt
    project changed. Called before Airflow parses the DAGs: the DAG file itself runs no dbt command."""
    from orchestration.dbt_manifest import ensure_manifest

    return ensure_manifest()


def _digest(env: dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].encode()).hexdigest()[:10]


def logical_date_for(day: date) -> datetime:
    """The scheduled run that processes `day` starts at 02:00 Asia/Shanghai the next morning."""
    return datetime.combine(day + timedelta(days=1), time(2, 0), ZoneInfo(settings.SERVICE_TZ))


def local_run_id(day: date) -> str:
    """The run id of a local run: the service day it processes, readable in the grid and the runs list."""
    return f"local__{day.isoformat()}"


def local_run_note(day: date) -> str:
    slot = logical_date_for(day)
    return (f"Service day {day.isoformat()} ({settings.SERVICE_TZ}), run by `gov-warehouse run` for the "
            f"{slot:%Y-%m-%d %H:%M} slot")


def dags_test(dag_id: str, day: date, env: dict[str, str], log_path: Path | None = None) -> int:
    """Run one of the nightly DAGs for one service day through Airflow (`airflow dags test`), shaped like the
    scheduled or backfilled run of that day (see _dags_test_main)."""
    cmd = [sys.executable, "-m", "orchestration.airflow_local", "dags-test", dag_id, day.isoformat()]
    if log_path is None:
        return subprocess.run(cmd, env=env).returncode
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        return subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def nightly_log_path(log_dir: Path, day: date) -> Path:
    """The file a local run writes a service day's output to (both DAGs, every task's log)."""
    return log_dir / f"nightly-{day.isoformat()}.log"


# what the process of dags_test_nights writes to its parent between the nights' own output (which goes to
# each night's log file): a DAG run starting and its exit status
_EVENT = "gov-night-event "


def dags_test_nights(days: list[date], env: dict[str, str], log_dir: Path,
                     on_start: Callable[[str, date], None] | None = None) -> dict[date, dict[str, int]]:
    """Run gov_ingest then gov_publish for each service day in order, all in ONE Airflow process: each run is
    dags_test's (`airflow dags test`, shaped like the scheduled run of its day, task logs where the UI reads
    them), and each night's output goes to nightly_log_path(log_dir, day), replaced. The first task of every
    `airflow dags test` process waits for dag.test()'s in-process Execution API (built once per process, 20-45 s
    here: bench/README.md), which a process per DAG per night paid twice a night.

    As scheduled runs would, a night whose ingest fails (or whose publish is blocked) does not stop the next
    nights; its publish is not run. `on_start(dag_id, day)` is called as each DAG run starts. Returns, per day,
    the exit status of each DAG run made (0 ok, else failed; a day the process never reached has its exit
    status, or 1, under gov_ingest)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "orchestration.airflow_local", "dags-test-nights", str(log_dir),
           *(day.isoformat() for day in days)]
    results: dict[date, dict[str, int]] = {}
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(_EVENT):
                sys.stdout.write(line)  # what Airflow prints before the first night or after the last
                continue
            kind, dag_id, day_text, *rc = line[len(_EVENT):].split()
            day = date.fromisoformat(day_text)
            if kind == "start" and on_start is not None:
                on_start(dag_id, day)
            elif kind == "end":
                results.setdefault(day, {})[dag_id] = int(rc[0])
    for day in days:  # a run the process died before ending (or never reached) failed with the process
        night = results.setdefault(day, {})
        if INGEST_DAG not in night:
            night[INGEST_DAG] = proc.returncode or 1
        elif night[INGEST_DAG] == 0 and PUBLISH_DAG not in night:
            night[PUBLISH_DAG] = proc.returncode or 1
    return results


def _dags_test_nights_main(log_dir: Path, days: list[date]) -> None:
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    from orchestration.deadlines import NO_DEADLINES_VAR

    os.environ[NO_DEADLINES_VAR] = "1"  # dag.test() cannot finish a run with deadline alerts (deadlines.py)
    _write_task_logs()
    write_default_airflow_configuration_if_needed()  # as Airflow's main() does before a command
    parser = cli_parser.get_parser()
    events = os.fdopen(os.dup(1), "w", buffering=1)  # the parent's pipe, while fd 1 and 2 are a night's log
    for day in days:
        with _output_to(nightly_log_path(log_dir, day)):
            for dag_id in (INGEST_DAG, PUBLISH_DAG):
                events.write(f"{_EVENT}start {dag_id} {day.isoformat()}\n")
                print(f"=== {dag_id} for service day {day} (airflow dags test) ===", flush=True)
                _shape_like_a_scheduled_run(day)
                # the arguments and the function of `airflow dags test`, as its command line gives them
                args = parser.parse_args(["dags", "test", dag_id, logical_date_for(day).isoformat(),
                                          "--conf", json.dumps({"service_date": day.isoformat()})])
                rc = _exit_status(args.func, args)
                events.write(f"{_EVENT}end {dag_id} {day.isoformat()} {rc}\n")
                if rc != 0:
                    break  # no publish of a night whose ingest failed; the next night still runs
    events.close()


def _exit_status(func: Callable, *args) -> int:
    """The exit status `func(*args)` would give the process: 0, its SystemExit's, or 1 for an exception (its
    traceback printed, as Python would)."""
    import traceback

    try:
        func(*args)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)  # `airflow dags test` exits with "DagRun failed"
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """The process's stdout and stderr (file descriptors 1 and 2, which Airflow's log handlers and the task
    processes write to) go to `path`, replaced, until the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with path.open("wb") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _shape_like_a_scheduled_run(day: date) -> None:
    """`airflow dags test` records the run as started at its logical date (years before it ran: the UI showed a
    three-minute night as lasting 1,119 days) and names it after the moment it was started. The run it creates
    is made instead as the scheduler makes the run of that night's slot: logical date and run_after at the
    slot, started now (so durations are true), its id and note naming the service day."""
    from airflow.models import dagrun
    from airflow.utils import timezone

    # Airflow's own function, also when an earlier night of this process replaced it (dags_test_nights)
    create = getattr(dagrun.get_or_create_dagrun, "airflow_original", dagrun.get_or_create_dagrun)

    def get_or_create_local_run(**kwargs):
        slot = kwargs["logical_date"]
        kwargs.update(run_id=local_run_id(day), run_after=slot, start_date=timezone.utcnow(),
                      triggering_user_name="gov-warehouse run")
        run = create(**kwargs)
        run.note = local_run_note(day)
        kwargs["session"].commit()
        return run

    # dag.test() imports the function at call time, so replacing the module's attribute is enough
    get_or_create_local_run.airflow_original = create
    dagrun.get_or_create_dagrun = get_or_create_local_run


def _write_task_logs() -> None:
    """`airflow dags test` runs each task inside its own process and only prints its log: the UI's log tab of a
    local run was empty. Each task's output is written where the UI reads task logs (`[logging]
    base_log_folder` / `log_filename_template`), then copied to the run's own output."""
    from airflow.configuration import conf
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.helpers import parse_template_string, render_template

    run_in_process = supervisor.run_task_in_process
    _, template = parse_template_string(conf.get("logging", "log_filename_template"))
    base = Path(conf.get("logging", "base_log_folder"))
    written: set[Path] = set()  # a re-run of the day replaces its run, and the log of each try

    def run_with_log_file(ti, task, client=None):
        path = base / render_template(template, {"ti": ti, "try_number": ti.try_number}, native=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = path.stat().st_size if path in written else 0
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        try:
            # tasks run one at a time here: while one runs, the process's output is its log
            with path.open("ab" if path in written else "wb") as log:
                written.add(path)
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                return run_in_process(ti=ti, task=task, client=client)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            with path.open("rb") as log:
                log.seek(offset)
                sys.stdout.buffer.write(log.read())
            sys.stdout.flush()

    supervisor.run_task_in_process = run_with_log_file


def _dags_test_main(dag_id: str, day: date) -> None:
    from airflow.__main__ import main

    from orchestration.deadlines import NO_DEADLINES_VAR

    os.environ[NO_DEADLINES_VAR] = "1"  # dag.test() cannot finish a run with deadline alerts (deadlines.py)
    _shape_like_a_scheduled_run(day)
    _write_task_logs()
    sys.argv = ["airflow", "dags", "test", dag_id, logical_date_for(day).isoformat(),
                "--conf", json.dumps({"service_date": day.isoformat()})]
    main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["dags-test"] and len(sys.argv) == 4:
        _dags_test_main(sys.argv[2], date.fromisoformat(sys.argv[3]))
    elif sys.argv[1:2] == ["dags-test-nights"] and len(sys.argv) >= 4:
        _dags_test_nights_main(Path(sys.argv[2]), [date.fromisoformat(d) for d in sys.argv[3:]])
    else:
        sys.exit("usage: python -m orchestration.airflow_local dags-test DAG_ID SERVICE_DAY\n"
                 "       python -m orchestration.airflow_local dags-test-nights LOG_DIR SERVICE_DAY...")
