"""A province night (the `shanxi` scope: eleven cities, about ten Taiyuans) through the distributed Airflow, with
one Celery worker slot against two: the loading phase and the whole night, and their ratios (issue 21).

    .venv/bin/python bench/province.py [--server postgresql://postgres@127.0.0.1:5432/postgres]
                                       [--day 2023-11-07] [--concurrency 1 2] [--load-only] [--keep]

1. The province's files for DAY are generated once (scenario/province.py) into a landing zone both runs read.
2. The other cities' reporters are not in the repository's reference seeds (a Taiyuan deployment's), and the
   loader reads only files named after a seeded reporter (ingest/landing.py): the bench runs on a copy of the
   committed tree (`git archive HEAD`) whose seeds have scenario.province.seed_rows appended, the copy first on
   every Airflow process's PYTHONPATH and its dags/ the DAG folder: a province deployment's reference data.
3. For each worker concurrency: a fresh warehouse, metadata database and Redis database, a cluster as the
   distributed test starts it (tests/support/airflow_cluster.py: api-server, scheduler, dag-processor, one
   Celery worker with that many slots), gov_ingest triggered for DAY over REST, and (unless --load-only)
   gov_publish on its asset (gov_publish without a dbt manifest: its one-task `dbt build` fallback, as the
   distributed test runs it). The loading phase runs from the first plan_<feed> task's start to the last
   loaded_<feed> task's end; the whole night from gov_ingest's start to gov_publish's end. Per-file and per-row
   costs are each load task's time over its batch's files and rows (task summaries in XCom).

Ratios from one run per concurrency; nothing asserts a time. The machine's load is printed with the figures.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from orchestration import airflow_local  # noqa: E402
from reports import smtp_sink  # noqa: E402
from scenario.province import Province, seed_rows  # noqa: E402
from warehouse import conninfo  # noqa: E402
from warehouse.bootstrap import bootstrap  # noqa: E402

FEEDS = ("streets", "canteens", "assistance")
TIMEOUT = 3 * 3600


def province_tree(work: Path) -> Path:
    """The committed tree with the province's reference rows appended to its seeds."""
    tree = work / "repo"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    for seed, rows in seed_rows().items():
        path = tree / "dbt_project" / "seeds" / f"{seed}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            fields = next(csv.reader(f))
        with path.open("a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, fields, lineterminator="\n").writerows(rows)
    return tree


def hold_cron_schedule(cluster, metadata: conninfo.ConnInfo) -> None:
    """Unpause the DAGs without the 02:00 cron starting today's night: a manual run parked in the far future
    keeps gov_ingest at max_active_runs for scheduled runs (tests/orchestration/test_airflow_distributed.py)."""
    cluster.trigger("gov_ingest", None, run_after=datetime(2100, 1, 1, tzinfo=UTC), note="bench: parks the cron")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with psycopg.connect(metadata.conninfo()) as conn:
            row = conn.execute("select exceeds_max_non_backfill from dag where dag_id = 'gov_ingest'").fetchone()
        if row and row[0]:
            break
        time.sleep(2)
    else:
        raise SystemExit("the dag-processor did not re-parse gov_ingest")
    cluster.set_paused("gov_publish", False)
    cluster.set_paused("gov_ingest", False)


def task_instances(cluster, dag_id: str, run_id: str) -> list[dict]:
    return cluster.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500")["task_instances"]


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def night(admin: conninfo.ConnInfo, tree: Path, landing: Path, work: Path, day: date, concurrency: int,
          load_only: bool) -> dict:
    from tests.support.airflow_cluster import AirflowCluster, flush_redis_db, free_redis_db

    tag = f"{concurrency}_{uuid.uuid4().hex[:6]}"
    wh, metadata = admin.with_db(f"gov_helperb_province_{tag}"), admin.with_db(f"gov_helperb_meta_{tag}")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        for db in (wh, metadata):
            conn.execute(f'create database "{db.dbname}"')
    redis_db = free_redis_db()
    sink = smtp_sink.start(work / f"outbox_{concurrency}")
    cluster = AirflowCluster(
        home=work / f"airflow_{concurrency}", metadata_url=metadata.sqlalchemy_url(),
        broker_url=f"redis://127.0.0.1:6379/{redis_db}", smtp_port=sink.port,
        extra_env={"WAREHOUSE_URL": wh.sqlalchemy_url(), "LANDING_DIR": str(landing),
                   "GOV_LOCAL_DIR": str(work / f"local_{concurrency}"), "OUTBOX_DIR": str(work / f"outbox_{concurrency}"),
                   "GOV_TASK_RETRIES": "0", "PII_HASH_KEY": os.environ["PII_HASH_KEY"],
                   "GOV_DBT_MANIFEST": str(work / "no-dbt-manifest" / "manifest.json"),
                   "PYTHONPATH": str(tree), "AIRFLOW__CORE__DAGS_FOLDER": str(tree / "dags")},
        prepare_dags=False, worker_concurrency=concurrency)
    try:
        bootstrap(wh)
        cluster.start()
        cluster.wait_ready()
        hold_cron_schedule(cluster, metadata)
        if load_only:
            cluster.set_paused("gov_publish", True)
        since = datetime.now(UTC)
        run = cluster.trigger("gov_ingest", airflow_local.logical_date_for(day), conf={"service_date": day.isoformat()})
        ingest = cluster.wait_runs("gov_ingest", {run["dag_run_id"]}, TIMEOUT)[run["dag_run_id"]]
        tis = task_instances(cluster, "gov_ingest", run["dag_run_id"])
        if ingest["state"] != "success":
            raise SystemExit(cluster.describe("gov_ingest", {run["dag_run_id"]: ingest}) + cluster.log_tails())
        end = _ts(ingest["end_date"])
        publish_state = "not run (--load-only)"
        if not load_only:
            deadline = time.monotonic() + TIMEOUT
            while True:
                runs = [r for r in cluster.dag_runs("gov_publish") if r["run_type"] == "asset_triggered"
                        and datetime.fromisoformat(r["queued_at"]) >= since]
                if runs and all(r["state"] in ("success", "failed") for r in runs):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("gov_publish did not finish\n" + cluster.log_tails())
                cluster.check_alive()
                time.sleep(5)
            end = max(_ts(r["end_date"]) for r in runs)
            publish_state = ",".join(r["state"] for r in runs)
        loading = [t for t in tis if t["task_id"].split("_")[0] in ("plan", "load", "loaded")]
        load_start = min(_ts(t["start_date"]) for t in loading)
        load_end = max(_ts(t["end_date"]) for t in loading)
        batches = []
        for t in tis:
            if t["task_id"].startswith("load_"):
                entry = cluster.get(f"/api/v2/dags/gov_ingest/dagRuns/{run['dag_run_id']}/taskInstances/"
                                    f"{t['task_id']}/xcomEntries/return_value?map_index={t['map_index']}")
                batches.append({"feed": t["task_id"].removeprefix("load_"), "seconds": t["duration"],
                                "files": entry["value"]["files"], "rows": entry["value"]["rows_read"]})
        return {"concurrency": concurrency, "loading": (load_end - load_start).total_seconds(),
                "night": (end - _ts(ingest["start_date"])).total_seconds(), "publish": publish_state,
                "load_tasks": len(batches), "batches": batches}
    finally:
        cluster.stop()
        sink.stop()
        flush_redis_db(redis_db)
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            for db in (metadata, wh):
                conn.execute(f'drop database if exists "{db.dbname}" with (force)')


def costs(batches: list[dict]) -> dict[str, tuple[int, int, float]]:
    out = {}
    for feed in FEEDS:
        mine = [b for b in batches if b["feed"] == feed]
        out[feed] = (sum(b["files"] for b in mine), sum(b["rows"] for b in mine), sum(b["seconds"] for b in mine))
    return out


def database_bytes(wh: conninfo.ConnInfo) -> int:
    with psycopg.connect(wh.conninfo()) as conn:
        return conn.execute("select pg_database_size(current_database())").fetchone()[0]


def direct_costs(admin: conninfo.ConnInfo, work: Path, day: date) -> dict[str, tuple[int, int, float]]:
    """The loader's own cost per file and per row, without Airflow: Taiyuan's night of `day` (the same code path
    as every city's) planned and loaded batch by batch in this process on a fresh warehouse."""
    from ingest import batches
    from scenario.generator import Scenario

    landing = work / "landing_taiyuan"
    Scenario().write_night(day, landing)
    wh = admin.with_db(f"gov_helperb_costs_{uuid.uuid4().hex[:6]}")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{wh.dbname}"')
    try:
        bootstrap(wh)
        before = database_bytes(wh)
        out = {}
        for feed in FEEDS:
            started = time.perf_counter()
            results = [r for b in batches.plan(landing, feed, day) for r in batches.load_batch(wh, landing, b)]
            out[feed] = (len(results), sum(r.rows_read for r in results), time.perf_counter() - started)
        print(f"  the night's raw and audit rows take {(database_bytes(wh) - before) / 1e6:.1f} MB in the warehouse "
              "(tables and indexes)", flush=True)
        return out
    finally:
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{wh.dbname}" with (force)')


def print_costs(costs_by_feed: dict[str, tuple[int, int, float]]) -> None:
    for feed, (files, rows, seconds) in costs_by_feed.items():
        print(f"  {feed:10} {files:6} files {rows:8} rows  {seconds:7.1f} s  "
              f"{1000 * seconds / max(files, 1):6.1f} ms/file  {1e6 * seconds / max(rows, 1):7.1f} us/row", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--day", type=date.fromisoformat, default=date(2023, 11, 7))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--load-only", action="store_true", help="gov_ingest only (gov_publish stays paused)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (landing zone, logs)")
    parser.add_argument("--landing", type=Path,
                        help="the province's files for --day already generated here (else generated into the work folder)")
    parser.add_argument("--costs-only", action="store_true",
                        help="only the loader's cost per file and per row (Taiyuan's night, in this process)")
    args = parser.parse_args()
    os.environ.setdefault("PII_HASH_KEY", "bench-key-" + "x" * 24)  # the bench's own warehouses: a key of its own
    admin = conninfo.parse_url(args.server)
    work = Path(tempfile.mkdtemp(prefix="bench-province-"))
    try:
        print(f"the loader alone, Taiyuan's night {args.day} (load: {os.getloadavg()[0]:.1f})", flush=True)
        print_costs(direct_costs(admin, work, args.day))
        if args.costs_only:
            return
        started = time.perf_counter()
        tree = province_tree(work)
        landing = args.landing or work / "landing"
        if args.landing is None:
            generated = Province().write_night(args.day, landing)
            print(f"{args.day}: {len(generated.files)} files, {len(generated.meals)} canteen rows, "
                  f"{len(generated.events)} case events, in {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for concurrency in args.concurrency:
            print(f"--- worker concurrency {concurrency} (load: {os.getloadavg()[0]:.1f})", flush=True)
            r = night(admin, tree, landing, work, args.day, concurrency, args.load_only)
            results.append(r)
            print(f"loading {r['loading']:.0f} s, night {r['night']:.0f} s ({r['load_tasks']} load tasks; "
                  f"gov_publish {r['publish']}; load after: {os.getloadavg()[0]:.1f})", flush=True)
            print_costs(costs(r["batches"]))
        if len(results) >= 2:
            one, two = results[0], results[1]
            print(f"\nconcurrency {two['concurrency']} / {one['concurrency']}: loading "
                  f"{two['loading'] / one['loading']:.2f}x, whole night {two['night'] / one['night']:.2f}x")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
