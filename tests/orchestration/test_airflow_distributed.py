"""The distributed path of the production topology (DESIGN.md §11, issue #8) and backfills (issue #6):
Airflow's api-server, scheduler, dag-processor and a Celery worker run as separate processes with the
machine's PostgreSQL as metadata database and its Redis as Celery broker.

1. `gov_ingest` is triggered through the REST API for one service day; the scheduler hands its tasks to
   the Celery worker, the `raw_night` asset triggers `gov_publish`, and the published marts match the
   scenario generator's own counts.
2. `airflow backfill create` loads two more service days (each backfilled run finds its service day from
   its logical date, and `gov_publish` follows on the asset events); a backfill of the last of them again,
   reprocessing its completed run, adds only `skipped_duplicate` ledger rows, leaves every mart
   byte-identical and sends no summary twice.

One cluster serves both tests (module-scoped fixture). The module runs four gov_ingest and three or
four gov_publish runs through Celery.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from email import policy
from pathlib import Path

import psycopg
import pytest

from orchestration import airflow_local, dbt_tasks
from reports import smtp_sink
from scenario.generator import Night, Scenario
from tests.conftest import create_database, drop_database
from tests.end_to_end.test_end_to_end import _officials, expected_summary, query
from tests.support.airflow_cluster import AirflowCluster, flush_redis_db, free_redis_db
from warehouse import conninfo, settings

pytestmark = pytest.mark.e2e

DAY0, DAY1, DAY2 = date(2023, 11, 5), date(2023, 11, 6), date(2023, 11, 7)
BACKFILL_DAYS = (DAY1, DAY2)
REPROCESSED = (DAY2,)  # one completed night run again is enough to show a re-run changes nothing
RUN_TIMEOUT = 900  # seconds for one round of runs
# With a dbt manifest, gov_publish renders the night's one dbt build (the Cosmos watcher's producer) and a
# sensor task per dbt node after it (orchestration/dbt_tasks.py): some 35 more task processes per publish on
# the worker's two slots, and this module publishes four times. Without a manifest the DAG builds the marts
# in one `dbt build` task (its documented fallback), which is what this module runs by default: it is about
# the distributed path (REST, scheduler, Celery, assets, backfills); the per-node graph is checked by
# tests/orchestration/test_dag_integrity.py and a real night of it by the end-to-end tests.
# Set GOV_DIST_TEST_PER_NODE_DBT=1 to run the per-node graph here too.
PER_NODE_DBT = os.environ.get("GOV_DIST_TEST_PER_NODE_DBT") == "1"
# Cosmos' gate task after the producer (cosmos.constants.PRODUCER_WATCHER_DONE_TASK_ID: not imported, Cosmos'
# package import is slow and the default run does not render it)
PRODUCER_WATCHER_DONE_TASK_ID = "dbt_producer_watcher_done"
# task slots of the Celery worker: two, so that tasks of different runs overlap as they do in production
WORKER_CONCURRENCY = int(os.environ.get("GOV_DIST_TEST_WORKER_CONCURRENCY", "2"))


class Deployment:
    """The cluster plus what the tests check it against: warehouse, landing zone, outbox, generated nights."""

    def __init__(self, cluster: AirflowCluster, warehouse: conninfo.ConnInfo, metadata: conninfo.ConnInfo,
                 landing: Path, outbox: Path, nights: dict[date, Night]):
        self.cluster = cluster
        self.landing = landing
        self.warehouse = warehouse
        self.metadata = metadata
        self.outbox = outbox
        self.nights = nights


@pytest.fixture(scope="module")
def deployment(server_url, tmp_path_factory):
    from warehouse.bootstrap import bootstrap

    root = tmp_path_factory.mktemp("distributed")
    landing = root / "landing"
    # the files the cluster loads, written by the project's own command while the cluster is set up beside it
    generate = subprocess.Popen([sys.executable, "-m", "commands", "generate", "--day", DAY0.isoformat(),
                                 "--to", DAY2.isoformat(), "--out", str(landing)],
                                stdout=(root / "generate.log").open("wb"), stderr=subprocess.STDOUT,
                                cwd=settings.REPO_ROOT)
    # what the tests expect, from the generator's own records (same seed; nothing written)
    scenario = Scenario()
    nights = {day: Night(day=day, compounds=scenario.registry_rows(day), meals=scenario.meals(day),
                         events=scenario.events(day)) for day in (DAY0, DAY1, DAY2)}

    warehouse = create_database(server_url, "gov_dist")
    metadata = create_database(server_url, "airflow_meta")
    redis_db = free_redis_db()
    sink = smtp_sink.start(root / "outbox")
    bootstrap(warehouse)
    cluster = AirflowCluster(
        home=root / "airflow",
        metadata_url=metadata.sqlalchemy_url(),
        broker_url=f"redis://127.0.0.1:6379/{redis_db}",
        smtp_port=sink.port,
        extra_env={
            "WAREHOUSE_URL": warehouse.sqlalchemy_url(),
            "LANDING_DIR": str(landing),
            "GOV_LOCAL_DIR": str(root / "local"),
            "OUTBOX_DIR": str(root / "outbox"),
            # a broken step should fail the test at once, not wait out production retry back-offs
            "GOV_TASK_RETRIES": "0",
            **({} if PER_NODE_DBT else {"GOV_DBT_MANIFEST": str(root / "no-dbt-manifest" / "manifest.json")}),
        },
        prepare_dags=PER_NODE_DBT,
        worker_concurrency=WORKER_CONCURRENCY,
        # no periodic re-parse (CPU the runs need on 2 cores): _hold_cron_schedule asks for the one it waits on
        dag_file_process_interval=3600,
    )
    try:
        cluster.start()
        cluster.wait_ready()
        assert generate.wait(timeout=600) == 0, (root / "generate.log").read_text(errors="replace")[-3000:]
        _hold_cron_schedule(cluster, metadata)
        yield Deployment(cluster, warehouse, metadata, landing, root / "outbox", nights)
    finally:
        if generate.poll() is None:
            generate.kill()
            generate.wait()
        cluster.stop()
        sink.stop()
        flush_redis_db(redis_db)
        drop_database(metadata)
        drop_database(warehouse)


def _hold_cron_schedule(cluster: AirflowCluster, metadata: conninfo.ConnInfo) -> None:
    """Unpause the DAGs without letting the 02:00 cron fire for today's date.

    gov_ingest has catchup=False, so unpausing it makes the scheduler start the run of the latest
    02:00 tick — a real night for which this test has no files, whose publish would rebuild the marts
    for that date. A manual run parked in the far future (its run_after is never reached) keeps
    gov_ingest at its max_active_runs=1 for non-backfill runs, so the scheduler creates no cron runs,
    while manual runs still start (only *running* runs count against that limit) and backfill runs
    have their own limit.
    """
    cluster.trigger("gov_ingest", None, run_after=datetime(2100, 1, 1, tzinfo=UTC),
                    note="test: parks the cron schedule; never runs")
    # the dag-processor records "max active runs reached" on its next parse of the file, asked for here
    cluster.reparse("gov_ingest")
    deadline = time.monotonic() + 120
    while not _exceeds_max_non_backfill(metadata, "gov_ingest"):
        assert time.monotonic() < deadline, "dag-processor did not re-parse gov_ingest"
        time.sleep(2)
    cluster.set_paused("gov_publish", False)
    cluster.set_paused("gov_ingest", False)


def _exceeds_max_non_backfill(metadata: conninfo.ConnInfo, dag_id: str) -> bool:
    # Airflow's metadata table: the REST API does not expose this scheduling flag
    with psycopg.connect(metadata.conninfo()) as conn:
        row = conn.execute("select exceeds_max_non_backfill from dag where dag_id = %s", (dag_id,)).fetchone()
    return bool(row and row[0])


def _service_days_of(cluster: AirflowCluster, dag_id: str, runs: dict[str, dict]) -> dict[str, list[str]]:
    task = "service_day" if dag_id == "gov_ingest" else "service_days"
    days = {}
    for run_id in runs:
        value = cluster.xcom(dag_id, run_id, task)
        days[run_id] = value if isinstance(value, list) else [value]
    return days


def _wait_publish_settled(cluster: AirflowCluster, since: datetime, days: set[date]) -> dict[str, dict]:
    """Wait until the asset-triggered gov_publish runs started after `since` have published `days` and
    nothing is left queued; return those runs (all of them must have succeeded)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        cluster.check_alive()
        runs = {r["dag_run_id"]: r for r in cluster.dag_runs("gov_publish")
                if r["run_type"] == "asset_triggered" and datetime.fromisoformat(r["queued_at"]) >= since}
        done = {k: r for k, r in runs.items() if r["state"] in ("success", "failed")}
        if runs and len(done) == len(runs) and cluster.queued_asset_events("gov_publish") == 0:
            covered = {d for v in _service_days_of(cluster, "gov_publish", done).values() for d in v}
            failed = {k: r for k, r in done.items() if r["state"] != "success"}
            assert not failed, cluster.describe("gov_publish", failed)
            if covered >= {d.isoformat() for d in days}:
                return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"gov_publish did not settle: {cluster.describe('gov_publish', runs)}\n"
                               f"{cluster.log_tails()}")
        time.sleep(3)


def _marts_fingerprint(wh: conninfo.ConnInfo) -> dict[str, tuple[int, str]]:
    """Row count and md5 of the ordered rows of every marts table."""
    with psycopg.connect(wh.conninfo()) as conn:
        tables = [t for (t,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1")]
        out = {}
        for table in tables:
            out[table] = conn.execute(
                f"""select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text), ''))
                    from marts."{table}" t""").fetchone()
    return out


def _backfill(cluster: AirflowCluster, days: tuple[date, ...], *extra: str) -> None:
    # the CLI writes the backfill into the metadata database; the scheduler then runs it
    cluster.airflow("backfill", "create", "--dag-id", "gov_ingest",
                    "--from-date", airflow_local.logical_date_for(days[0]).isoformat(),
                    "--to-date", airflow_local.logical_date_for(days[-1]).isoformat(),
                    # one night after the other, as the nightly schedule would have run them
                    "--max-active-runs", "1", *extra)


def _backfill_runs(cluster: AirflowCluster, days: tuple[date, ...]) -> dict[str, dict]:
    wanted = {airflow_local.logical_date_for(d) for d in days}
    return {r["dag_run_id"]: r for r in cluster.dag_runs("gov_ingest")
            if r["logical_date"] and datetime.fromisoformat(r["logical_date"]) in wanted}


def _round(cluster: AirflowCluster, days: tuple[date, ...], *extra: str) -> tuple[dict[str, dict], dict[str, dict]]:
    """One backfill of `days` through to the published marts: (ingest runs, publish runs)."""
    since = datetime.now(UTC)
    _backfill(cluster, days, *extra)
    runs = _backfill_runs(cluster, days)
    assert len(runs) == len(days), runs
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = cluster.wait_runs("gov_ingest", set(runs), max(1.0, deadline - time.monotonic()))
        # a reprocessed run is cleared back to queued: wait for its new end, not the previous one
        if all(r["end_date"] and datetime.fromisoformat(r["end_date"]) > since for r in runs.values()):
            break
        time.sleep(3)
    assert all(r["state"] == "success" for r in runs.values()), cluster.describe("gov_ingest", runs)
    assert {r["run_type"] for r in runs.values()} == {"backfill"}
    publish = _wait_publish_settled(cluster, since, set(days))
    return runs, publish


def _messages(outbox: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(outbox.glob("*.eml"))]


def _expected_subjects(*days: date) -> list[str]:
    """One summary per official per service day (officials.csv)."""
    return sorted(f"【社区治理日报】{d.isoformat()} {o['scope_name']}" for d in days for o in _officials())


def _subjects_once_sent(outbox: Path, *days: date) -> list[str]:
    """The outbox's subjects, once the SMTP sink has written every summary of `days` (it writes a moment
    after send_summary has succeeded)."""
    deadline = time.monotonic() + 30
    while True:
        subjects = sorted(m["Subject"] for m in _messages(outbox))
        if len(subjects) >= len(_expected_subjects(*days)) or time.monotonic() > deadline:
            return subjects
        time.sleep(1)


def _summary_sends(wh: conninfo.ConnInfo) -> list[tuple]:
    with psycopg.connect(wh.conninfo()) as conn:
        return conn.execute("select * from audit.summary_sends order by 1, 2, 3").fetchall()


def test_nightly_run_triggered_over_rest_runs_on_the_celery_worker(deployment):
    cluster, wh = deployment.cluster, deployment.warehouse
    since = datetime.now(UTC)
    # the 02:00 run of the next morning processes DAY0, as the schedule would (no service_date param)
    run = cluster.trigger("gov_ingest", airflow_local.logical_date_for(DAY0))
    runs = cluster.wait_runs("gov_ingest", {run["dag_run_id"]}, RUN_TIMEOUT)
    assert runs[run["dag_run_id"]]["state"] == "success", cluster.describe("gov_ingest", runs)
    assert _service_days_of(cluster, "gov_ingest", runs) == {run["dag_run_id"]: [DAY0.isoformat()]}

    publish = _wait_publish_settled(cluster, since, {DAY0})
    # gov_publish found its service day in the triggering asset event's extra
    assert list(_service_days_of(cluster, "gov_publish", publish).values()) == [[DAY0.isoformat()]]

    # every task went through Celery: the worker stored one result per task instance that ran in the backend
    # (on a good night gov_publish's watcher, night_failed, is skipped: it never reaches a worker)
    tis = [t for dag_id, rs in (("gov_ingest", runs), ("gov_publish", publish)) for r in rs
           for t in cluster.task_instances(dag_id, r)]
    assert {t["task_id"] for t in tis if t["state"] == "skipped"} == {"night_failed"}
    # nor does an EmptyOperator, which the scheduler marks done itself: in the per-node graph, Cosmos' gate
    # after the producer
    empty = {t["task_id"] for t in tis if t["operator"] == "EmptyOperator"}
    assert empty == ({f"{dbt_tasks.GROUP_ID}.{PRODUCER_WATCHER_DONE_TASK_ID}"} if PER_NODE_DBT else set())
    tis = [t for t in tis if t["state"] != "skipped" and t["operator"] != "EmptyOperator"]
    deadline = time.monotonic() + 60
    while True:
        # the worker stores a task's final result a moment after Airflow has recorded the task's state
        with psycopg.connect(deployment.metadata.conninfo()) as conn:
            results = dict(conn.execute("select status, count(*) from celery_taskmeta group by 1").fetchall())
        if results == {"SUCCESS": len(tis)} or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert results == {"SUCCESS": len(tis)}, (results, len(tis))

    row = query(wh, "select * from marts.mart_city_daily_summary where service_date = %s", (DAY0,))
    assert len(row) == 1
    expected = expected_summary(DAY0, {DAY0: deployment.nights[DAY0]})
    assert {k: row[0][k] for k in expected} == expected
    published = query(wh, "select service_date, status from audit.publish_log")
    assert {(r["service_date"], r["status"]) for r in published} == {(DAY0, "published")}

    # the officials' summaries went out through smtp_default: one to each official, none twice
    assert _subjects_once_sent(deployment.outbox, DAY0) == _expected_subjects(DAY0)


def test_backfill_over_a_date_range_twice_changes_nothing(deployment):
    cluster, wh = deployment.cluster, deployment.warehouse

    ingest_runs, _ = _round(cluster, BACKFILL_DAYS)
    # each backfilled run found its service day from its logical date (02:00 the next morning)
    by_logical = {datetime.fromisoformat(r["logical_date"]): run_id for run_id, r in ingest_runs.items()}
    days = _service_days_of(cluster, "gov_ingest", ingest_runs)
    assert {days[by_logical[airflow_local.logical_date_for(d)]][0] for d in BACKFILL_DAYS} == {
        d.isoformat() for d in BACKFILL_DAYS}
    for d in BACKFILL_DAYS:
        assert days[by_logical[airflow_local.logical_date_for(d)]] == [d.isoformat()]

    summaries = {r["service_date"]: r for r in query(wh, "select * from marts.mart_city_daily_summary")}
    assert set(summaries) == {DAY0, DAY1, DAY2}
    for d in BACKFILL_DAYS:
        expected = expected_summary(d, deployment.nights)
        assert {k: summaries[d][k] for k in expected} == expected, d
    subjects = _subjects_once_sent(deployment.outbox, DAY0, *BACKFILL_DAYS)
    assert subjects == _expected_subjects(DAY0, *BACKFILL_DAYS)
    before = _marts_fingerprint(wh)
    sends = _summary_sends(wh)
    assert len(sends) == len(subjects)
    last_load = query(wh, "select coalesce(max(load_id), 0) as m from audit.load_ledger")[0]["m"]

    # a completed night again, re-running its run (without the flag, Airflow would skip it)
    _round(cluster, REPROCESSED, "--reprocess-behavior", "completed")
    again = query(wh, "select source, status, service_date from audit.load_ledger where load_id > %s", (last_load,))
    # one ledger row per landed file of the night, as the CLI wrote them
    files = [p for d in REPROCESSED for feed in settings.FEEDS
             for p in (deployment.landing / feed / d.isoformat()).iterdir()]
    assert len(again) == len(files)
    assert {r["status"] for r in again} == {"skipped_duplicate"}
    assert {r["service_date"] for r in again} == set(REPROCESSED)
    assert _marts_fingerprint(wh) == before
    # the send ledger kept every official from getting the night's summary twice
    assert _summary_sends(wh) == sends
    time.sleep(2)  # what a second send would have taken to reach the sink
    assert sorted(m["Subject"] for m in _messages(deployment.outbox)) == subjects

    # the parked manual run kept the cron schedule quiet: only the runs this module asked for
    run_types = {r["run_type"] for r in cluster.dag_runs("gov_ingest")}
    assert run_types <= {"manual", "backfill"}, run_types
