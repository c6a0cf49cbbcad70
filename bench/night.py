"""A whole city night through the real Airflow path, by phase, at one week and one year of history; and a
backfill of N nights through `airflow backfill create` against the same nights through the direct path.

    .venv/bin/python bench/night.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
                                    [--nights 30] [--skip-history] [--skip-backfill] [--keep]

1. History. One template warehouse gets the built-in scenario's night FIRST (2023-11-06) through the
   loader; each copy of it gets (history - 1) earlier nights synthesised in SQL from that night (raw rows and
   their load-ledger rows, shifted day by day: bench/dbt_incremental.py's way, as generating a year through
   the scenario would take hours and only the volume matters), one full dbt build and one publish (a whole
   copy), so it is a warehouse that has run for a week or a year.
2. The night NIGHT (2023-11-07) on each copy through the path `gov-warehouse run` takes: gov_ingest then
   gov_publish as `airflow dags test` runs in one Airflow process (orchestration/airflow_local.
   dags_test_nights), SMTP sink for the emails.
   Phases are read from the task instances' start and end times in Airflow's metadata database; "start-up"
   is the run's wall time that no task covers (Airflow creating the run, parsing, starting each task), the
   rest is the tasks' own time. Printed per phase, week and year, and year / week.
3. Backfill of --nights nights (from BACKFILL_START): (a) a real Airflow deployment (tests/support/
   airflow_cluster.py: api-server, scheduler, dag-processor, Celery worker, PostgreSQL metadata, Redis),
   `airflow backfill create` of gov_ingest, gov_publish following on the asset events, timed from the
   backfill's creation to the last publish; (b) the direct path on a fresh warehouse: the loader for every
   night, then one dbt build and one publish (what `make reconcile` does). Ratio (a) / (b).

Ratios from one run; absolute times on a shared machine are noise. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from dbt_incremental import SYNTHESISE  # noqa: E402

from ingest import loader  # noqa: E402
from orchestration import airflow_local, dbt_run  # noqa: E402
from orchestration.publish import publish_candidate  # noqa: E402
from reports import smtp_sink  # noqa: E402
from scenario.generator import Scenario  # noqa: E402
from warehouse import conninfo, settings  # noqa: E402
from warehouse.bootstrap import bootstrap  # noqa: E402

FIRST, NIGHT = date(2023, 11, 6), date(2023, 11, 7)
HISTORIES = {"week": 7, "year": 365}
# gov_publish's dbt step (orchestration/dbt_tasks.py, Cosmos' watcher mode): one task runs dbt (source freshness,
# then one build), the node tasks show and retry its nodes
PRODUCER = "dbt.dbt_producer_watcher"
BACKFILL_START = date(2023, 11, 8)

# the load ledger of the synthesised nights: the freshness mart is built from it (one row per reporter,
# source and day), so a year of history has a year of ledger rows, as a warehouse that ran a year has
LEDGER = """
insert into audit.load_ledger (source, reporter_code, service_date, file_path, content_sha256, file_bytes, rows_read,
                               rows_loaded, rows_rejected, status, started_at, finished_at)
select source, reporter_code, service_date - k, file_path, content_sha256 || '-h' || k, file_bytes, rows_read,
       rows_loaded, rows_rejected, status, started_at - make_interval(days => k), finished_at - make_interval(days => k)
from audit.load_ledger cross join generate_series(1, %(days)s) as k
where service_date = %(first)s and status in ('loaded', 'skipped_duplicate')
"""


def phase_of(dag_id: str, task_id: str) -> str:
    """The bench's phase of a task of the nightly DAGs (dags/gov_ingest.py, dags/gov_publish.py)."""
    if task_id.startswith("load_"):
        return f"load {task_id.removeprefix('load_')}"
    named = {"bootstrap": "bootstrap", "validate_raw": "raw checks", "validate_marts": "mart checks",
             "publish": "publish", "send_summary": "emails", "notify_reporters": "emails"}
    if task_id in named:
        return named[task_id]
    if task_id == PRODUCER:
        return "dbt build"
    if dag_id == airflow_local.PUBLISH_DAG and task_id.startswith("dbt."):
        return "dbt node tasks"
    if dag_id == airflow_local.PUBLISH_DAG and task_id not in ("service_days", "night_failed"):
        return "dbt"  # the fallback task without a manifest, dbt_docs
    return "other"


def admin_conn(admin: conninfo.ConnInfo) -> psycopg.Connection:
    return psycopg.connect(admin.conninfo(), autocommit=True)


class Bench:
    def __init__(self, admin: conninfo.ConnInfo, work: Path) -> None:
        self.admin, self.work = admin, work
        self.tag = uuid.uuid4().hex[:8]
        self.created: list[conninfo.ConnInfo] = []
        self.scenario = Scenario()

    def database(self, name: str, template: conninfo.ConnInfo | None = None) -> conninfo.ConnInfo:
        wh = self.admin.with_db(f"bench_night_{name}_{self.tag}")
        with admin_conn(self.admin) as conn:
            conn.execute(f'create database "{wh.dbname}"' + (f' template "{template.dbname}"' if template else ""))
        self.created.append(wh)
        bootstrap(wh)  # a copy does not inherit the template's database settings (jit = off)
        return wh

    def drop_all(self) -> None:
        with admin_conn(self.admin) as conn:
            for wh in reversed(self.created):
                conn.execute(f'drop database if exists "{wh.dbname}" with (force)')

    # --- 1. history ---------------------------------------------------------------------------------

    def with_history(self, template: conninfo.ConnInfo, name: str, days: int) -> tuple[conninfo.ConnInfo, dict]:
        wh = self.database(name, template)
        started = time.perf_counter()
        with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
            for statement in SYNTHESISE.split(";"):
                if statement.strip():
                    conn.execute(statement, {"days": days - 1, "first": FIRST})
            conn.execute(LEDGER, {"days": days - 1, "first": FIRST})
            conn.execute("analyze")
        dbt_run.run_dbt(wh, ["build", "--quiet"], FIRST.isoformat())
        publish_candidate(wh)
        with psycopg.connect(wh.conninfo()) as conn:
            marts = conn.execute("select sum(n_live_tup) from pg_stat_user_tables where schemaname = 'marts'"
                                 ).fetchone()[0]
            meals = conn.execute("select count(*) from raw.canteens_meals").fetchone()[0]
        return wh, {"nights": days, "meals": meals, "mart_rows": marts, "prepare_s": time.perf_counter() - started}

    # --- 2. one night through Airflow -----------------------------------------------------------------

    def airflow_night(self, wh: conninfo.ConnInfo, day: date, sink_port: int, name: str) -> dict:
        env = airflow_local.airflow_env(sink_port, wh.sqlalchemy_url())
        env.update({"AIRFLOW_HOME": str(self.work / "airflow"), "LANDING_DIR": str(self.work / "landing"),
                    "GOV_LOCAL_DIR": str(self.work / f"local_{name}"), "OUTBOX_DIR": str(self.work / "outbox")})
        env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{self.work / 'airflow' / 'airflow.db'}"
        airflow_local.migrate(env)
        log_dir = self.work / f"logs_{name}"
        started = time.perf_counter()
        # the path `gov-warehouse run` takes: both DAGs of the night in one Airflow process
        outcome = airflow_local.dags_test_nights([day], env, log_dir)[day]
        log = airflow_local.nightly_log_path(log_dir, day)
        for dag_id in (airflow_local.INGEST_DAG, airflow_local.PUBLISH_DAG):
            state = run_state(self.work / "airflow" / "airflow.db", dag_id, day)
            if state != "success":
                raise SystemExit(f"{dag_id} {day} failed on the {name} warehouse (exit {outcome}); see {log}")
            if outcome.get(dag_id) != 0:  # seen 2026-12-01: Airflow's deadline check after a successful run
                print(f"warning: {dag_id} {day} succeeded but its run exited {outcome.get(dag_id)}; see {log}",
                      flush=True)
        wall = time.perf_counter() - started
        return {"wall_s": wall, **self.task_phases(self.work / "airflow" / "airflow.db", day), **log_breakdown(log)}

    @staticmethod
    def task_phases(metadata: Path, day: date) -> dict:
        """Per phase: seconds of task time and tasks; per run: wall time and the share no task covers."""
        run_id = airflow_local.local_run_id(day)
        with sqlite3.connect(metadata) as db:
            runs = db.execute("select dag_id, start_date, end_date from dag_run where run_id = ?", (run_id,)).fetchall()
            tis = db.execute("select dag_id, task_id, start_date, end_date from task_instance where run_id = ? "
                             "and start_date is not null", (run_id,)).fetchall()
        phases: dict[str, list[float]] = defaultdict(list)
        covered: dict[str, float] = defaultdict(float)
        for dag_id, task_id, start, end in tis:
            seconds = (_ts(end) - _ts(start)).total_seconds()
            phases[phase_of(dag_id, task_id)].append(seconds)
            covered[dag_id] += seconds  # `dags test` runs one task at a time
        run_start = {dag_id: _ts(start) for dag_id, start, _end in runs}
        first: dict[str, tuple[str, float]] = {}  # each run's first task, and how long the run waited for it
        for dag_id, task_id, start, _end in sorted(tis, key=lambda t: _ts(t[2])):
            first.setdefault(dag_id, (task_id, (_ts(start) - run_start[dag_id]).total_seconds()))
        # a run `dags test` failed to close after its last task has no end: its last task's end then
        last_end = {d: max(_ts(e) for dd, _t, _s, e in tis if dd == d and e) for d in covered}
        run_wall = {dag_id: ((_ts(end) if end else last_end[dag_id]) - _ts(start)).total_seconds()
                    for dag_id, start, end in runs}
        return {"phases": {p: (sum(v), len(v)) for p, v in phases.items()}, "run_wall": run_wall,
                "task_time": dict(covered), "first_task_wait": first}

    # --- 3. backfill ----------------------------------------------------------------------------------

    def direct_path(self, days: list[date]) -> float:
        wh = self.database("direct")
        started = time.perf_counter()
        for day in days:
            for source in settings.FEEDS:
                loader.load_night(wh, self.work / "landing", source, day)
        dbt_run.run_dbt(wh, ["build", "--quiet"], None)
        publish_candidate(wh)
        return time.perf_counter() - started

    def airflow_backfill(self, days: list[date], sink_port: int, max_active_runs: int) -> tuple[float, int, int]:
        from tests.support.airflow_cluster import AirflowCluster, flush_redis_db, free_redis_db

        wh = self.database("backfill")
        metadata = self.admin.with_db(f"bench_night_meta_{self.tag}")
        with admin_conn(self.admin) as conn:
            conn.execute(f'create database "{metadata.dbname}"')
        self.created.append(metadata)
        redis_db = free_redis_db()
        cluster = AirflowCluster(
            home=self.work / "cluster", metadata_url=metadata.sqlalchemy_url(),
            broker_url=f"redis://127.0.0.1:6379/{redis_db}", smtp_port=sink_port,
            extra_env={"WAREHOUSE_URL": wh.sqlalchemy_url(), "LANDING_DIR": str(self.work / "landing"),
                       "GOV_LOCAL_DIR": str(self.work / "local_backfill"), "OUTBOX_DIR": str(self.work / "outbox"),
                       "GOV_TASK_RETRIES": "0"})
        try:
            cluster.start()
            cluster.wait_ready()
            hold_cron_schedule(cluster, metadata)
            since = datetime.now(UTC)
            started = time.perf_counter()
            cluster.airflow("backfill", "create", "--dag-id", airflow_local.INGEST_DAG,
                            "--from-date", airflow_local.logical_date_for(days[0]).isoformat(),
                            "--to-date", airflow_local.logical_date_for(days[-1]).isoformat(),
                            "--max-active-runs", str(max_active_runs))
            wanted = {airflow_local.logical_date_for(d) for d in days}
            while True:
                cluster.check_alive()
                ingest = [r for r in cluster.dag_runs(airflow_local.INGEST_DAG)
                          if r["logical_date"] and datetime.fromisoformat(r["logical_date"]) in wanted]
                publish = [r for r in cluster.dag_runs(airflow_local.PUBLISH_DAG)
                           if datetime.fromisoformat(r["queued_at"]) >= since]
                settled = (len(ingest) == len(days) and all(r["state"] in ("success", "failed") for r in ingest)
                           and publish and all(r["state"] in ("success", "failed") for r in publish)
                           and cluster.queued_asset_events(airflow_local.PUBLISH_DAG) == 0)
                if settled:
                    break
                time.sleep(3)
            wall = time.perf_counter() - started
            failed = [r["dag_run_id"] for r in ingest + publish if r["state"] != "success"]
            if failed:
                raise SystemExit(f"backfill runs failed: {failed}\n{cluster.log_tails()}")
            return wall, len(ingest), len(publish)
        finally:
            cluster.stop()
            flush_redis_db(redis_db)


STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+)Z")
DBT_ELAPSED = re.compile(r"Finished running .* \(([\d.]+)s\)\.")


def run_state(metadata: Path, dag_id: str, day: date) -> str:
    """"success" when every task of the run that ran succeeded (its watcher skipped), from the task
    instances: the run's own state is not what to read when `dags test` fails after the last task."""
    with sqlite3.connect(metadata) as db:
        states = {s for (s,) in db.execute("select state from task_instance where dag_id = ? and run_id = ?",
                                           (dag_id, airflow_local.local_run_id(day)))}
    return "success" if states and states <= {"success", "skipped"} and "success" in states else str(states)


def log_breakdown(log: Path) -> dict:
    """From the night's log (`dags test` prints every task's log): per Cosmos dbt task, its wall time
    against dbt's own "Finished running ... (N s)" (the rest is the task's and dbt's start-up: process,
    imports, project parse, connection; the node tasks of watcher mode run no dbt, all of their time is
    Airflow's); and per DAG run, how long its first task waited between "running task" and the Execution API's
    "Task started" (`dags test` builds its in-process Execution API, and the DAG bag behind it, on a process's
    first task)."""
    walls: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    first_waits: list[float] = []
    task, started, running = None, None, None
    for line in log.read_text(errors="replace").splitlines():
        stamp = STAMP.match(line)
        at = datetime.fromisoformat(stamp.group(1)) if stamp else None
        if "[DAG TEST] starting task_id=" in line:
            task, started = line.split("task_id=")[1].split()[0], at
        elif "[DAG TEST] running task" in line and running is None:
            running = at
        elif "Task started" in line and isinstance(running, datetime):
            first_waits.append((at - running).total_seconds())
            running = False  # only the first task of each `dags test` process
        elif "Created dag run." in line:
            running = None
        elif (elapsed := DBT_ELAPSED.search(line)) and task and task.startswith("dbt."):
            own[task] += float(elapsed.group(1))
        elif "[DAG TEST] end task task_id=" in line and task and task.startswith("dbt.") and started:
            walls[task] += (at - started).total_seconds()
    nodes = [t for t in walls if t != PRODUCER]
    return {"dbt_tasks": len(walls), "dbt_task_wall": sum(walls.values()), "dbt_own": sum(own.values()),
            "producer_wall": walls.get(PRODUCER, 0.0), "producer_dbt_own": own.get(PRODUCER, 0.0),
            "node_tasks": len(nodes), "node_task_wall": sum(walls[t] for t in nodes),
            "first_task_api_wait": first_waits}


def startup_share(r: dict) -> tuple[float, float]:
    """Seconds of the night's DAG-run wall time that are start-up, not work, and their share: what no task
    covers, each run's first task waiting for `dags test`'s Execution API, and the dbt tasks' time that is not
    dbt's own run (the other tasks' time counts as work, so this is a lower bound)."""
    wall = sum(r["run_wall"].values())
    startup = (wall - sum(r["task_time"].values()) + sum(r["first_task_api_wait"])
               + r["dbt_task_wall"] - r["dbt_own"])
    return startup, startup / wall


def hold_cron_schedule(cluster, metadata: conninfo.ConnInfo) -> None:
    """Unpause the DAGs without the 02:00 cron starting today's night (no files for it): a manual run parked
    in the far future keeps gov_ingest at its max_active_runs for non-backfill runs, as
    tests/orchestration/test_airflow_distributed.py does; backfill runs have their own limit."""
    cluster.trigger(airflow_local.INGEST_DAG, None, run_after=datetime(2100, 1, 1, tzinfo=UTC),
                    note="bench: parks the cron schedule; never runs")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with psycopg.connect(metadata.conninfo()) as conn:
            row = conn.execute("select exceeds_max_non_backfill from dag where dag_id = %s",
                               (airflow_local.INGEST_DAG,)).fetchone()
        if row and row[0]:
            break
        time.sleep(2)
    else:
        raise SystemExit("the dag-processor did not re-parse gov_ingest")
    cluster.set_paused(airflow_local.PUBLISH_DAG, False)
    cluster.set_paused(airflow_local.INGEST_DAG, False)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


def print_night(rows: dict[str, dict]) -> None:
    names = list(rows)
    phases = sorted({p for r in rows.values() for p in r["phases"]},
                    key=lambda p: ["bootstrap", "load streets", "load canteens", "load assistance", "raw checks",
                                   "dbt", "dbt build", "dbt node tasks", "mart checks", "publish", "emails",
                                   "other"].index(p))
    print("\nOne night (" + NIGHT.isoformat() + ") through `airflow dags test` (gov_ingest, then gov_publish):")
    header = f"{'phase':<16}" + "".join(f"{n + ' s (tasks)':>18}" for n in names)
    print(header + (f"{'year / week':>13}" if len(names) == 2 else ""))
    for p in phases:
        cells = [rows[n]["phases"].get(p, (0.0, 0)) for n in names]
        line = f"{p:<16}" + "".join(f"{s:>12.1f} ({k:>3})" for s, k in cells)
        if len(names) == 2 and cells[0][0]:
            line += f"{cells[1][0] / cells[0][0]:>12.2f}x"
        print(line)
    for n in names:
        r = rows[n]
        wall = sum(r["run_wall"].values())
        tasks = sum(r["task_time"].values())
        firsts = ", ".join(f"{d}: {t} after {s:.1f} s" for d, (t, s) in r["first_task_wait"].items())
        print(f"{n}: {r['dbt_tasks']} dbt tasks took {r['dbt_task_wall']:.1f} s, of which dbt's own run "
              f"{r['dbt_own']:.1f} s ({r['dbt_own'] / max(r['dbt_task_wall'], 0.001):.0%}); first task of each "
              "run waited for the in-process Execution API: "
              + ", ".join(f"{w:.1f} s" for w in r["first_task_api_wait"]))
        if r["producer_wall"]:
            print(f"{n}: watcher mode: the producer {r['producer_wall']:.1f} s (dbt's own runs, freshness and build, "
                  f"{r['producer_dbt_own']:.1f} s); {r['node_tasks']} node tasks {r['node_task_wall']:.1f} s "
                  f"({r['node_task_wall'] / max(r['node_tasks'], 1):.1f} s each, no dbt)")
        startup, share = startup_share(r)
        print(f"{n}: start-up, not work: {startup:.1f} s of the DAG runs' wall time ({share:.0%}; the target is "
              "under a half): no task running, the first tasks' Execution API wait, dbt tasks' time not dbt's own")
        print(f"{n}: DAG runs {wall:.1f} s wall, tasks {tasks:.1f} s, no task running {wall - tasks:.1f} s "
              f"({(wall - tasks) / wall:.0%}); first task of each run: {firsts}; whole command {r['wall_s']:.1f} s")
    if len(names) == 2:
        w, y = (sum(rows[n]["run_wall"].values()) for n in names)
        print(f"whole night, year / week: {y / w:.2f}x (target <= 1.3x); "
              f"publish: {rows[names[1]]['phases']['publish'][0] / rows[names[0]]['phases']['publish'][0]:.2f}x "
              "(target <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--nights", type=int, default=30, help="nights of the backfill (default 30)")
    parser.add_argument("--max-active-runs", type=int, default=1,
                        help="the backfill's own max_active_runs (Airflow applies it apart from the DAG's; default 1)")
    parser.add_argument("--histories", nargs="*", default=list(HISTORIES), choices=list(HISTORIES))
    parser.add_argument("--skip-history", action="store_true", help="leave out parts 1 and 2")
    parser.add_argument("--skip-backfill", action="store_true", help="leave out part 3")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    args = parser.parse_args()
    os.environ.setdefault("PII_HASH_KEY", "bench-key-" + "x" * 24)
    bench = Bench(conninfo.parse_url(args.server), Path(tempfile.mkdtemp(prefix="bench_night_")))
    # dbt's target and logs of the direct builds in the scratch directory, not the checkout's .local
    os.environ["GOV_LOCAL_DIR"] = str(bench.work / "local")
    sink = smtp_sink.start(bench.work / "outbox")
    print(f"scratch: {bench.work}; load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        landing = bench.work / "landing"
        if not args.skip_history:
            template = bench.database("template")
            for day in (FIRST, NIGHT):
                bench.scenario.write_night(day, landing)
            for source in settings.FEEDS:
                loader.load_night(template, landing, source, FIRST)
            rows = {}
            for name in args.histories:
                wh, info = bench.with_history(template, name, HISTORIES[name])
                print(f"{name}: {info['nights']} nights, {info['meals']:,} raw meals, {info['mart_rows']:,} mart "
                      f"rows, made in {info['prepare_s']:.0f} s", flush=True)
                rows[name] = bench.airflow_night(wh, NIGHT, sink.port, name)
                print(f"{name}: night through Airflow in {rows[name]['wall_s']:.1f} s", flush=True)
            print_night(rows)
        if not args.skip_backfill:
            days = [BACKFILL_START + timedelta(days=k) for k in range(args.nights)]
            for day in days:
                bench.scenario.write_night(day, landing)
            direct = bench.direct_path(days)
            print(f"\nbackfill of {len(days)} nights, direct path (loader, one dbt build, one publish): "
                  f"{direct:.1f} s", flush=True)
            wall, ingest_runs, publish_runs = bench.airflow_backfill(days, sink.port, args.max_active_runs)
            print(f"backfill of {len(days)} nights through `airflow backfill create`: {wall:.1f} s "
                  f"({ingest_runs} gov_ingest runs, at most {args.max_active_runs} at a time; "
                  f"{publish_runs} gov_publish runs); "
                  f"Airflow / direct: {wall / direct:.1f}x (target <= 2x)")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
    finally:
        sink.stop()
        bench.drop_all()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)


if __name__ == "__main__":
    main()
