"""gov_ingest: at 02:00 Asia/Shanghai, load the service day that just ended and check the raw feeds.

Each feed's night is planned into batches of files (`plan_<feed>`), each batch loaded by one instance of the
mapped task `load_<feed>` (dynamic task mapping: the batches spread over the Celery workers), and
`loaded_<feed>` produces the feed's Airflow Asset; once all are loaded and checked, `raw_night` is produced,
which schedules gov_publish (data-aware scheduling). Orchestration only: every task calls
orchestration.steps or ingest.batches.

A run's service day is the day before its logical date (Asia/Shanghai), or its `service_date` param; runs made
by `make run` are named `local__<service day>`. Re-run a day, a feed or one reporter's file with *Trigger* and
the params `service_date`, `feed`, `reporter` (README, For data engineers).
"""

from __future__ import annotations

from datetime import date

from airflow.sdk import Param, dag, get_current_context, task

from orchestration.dag_settings import FEEDS, RAW_FEEDS, RAW_NIGHT, START, TZ, WAREHOUSE_POOL, default_args


@dag(
    dag_id="gov_ingest",
    description="Load the night's source files into raw.* (COPY, ledger) and run the raw GX suites",
    doc_md=__doc__,  # the module docstring, shown on the DAG's page in the UI
    schedule="0 2 * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["governance", "ingest"],
    params={
        "service_date": Param(None, type=["null", "string"], format="date",
                              description=f"Service day YYYY-MM-DD ({TZ}); default: the day before the run"),
        "feed": Param("all", enum=["all", *FEEDS], description="Load only this feed"),
        "reporter": Param(None, type=["null", "string"],
                          description="Load only this reporter's file (street, canteen or point code)"),
    },
)
def gov_ingest():
    @task
    def service_day() -> str:
        from orchestration import steps

        ctx = get_current_context()
        return steps.service_day(ctx["params"], ctx.get("logical_date"))

    @task(pool=WAREHOUSE_POOL)
    def bootstrap() -> None:
        from orchestration import steps
        from warehouse.connections import warehouse

        steps.bootstrap_warehouse(warehouse())

    # each feed's night: planned into batches of files (ingest/batches.py), one mapped `load_<feed>` task
    # instance per batch (Airflow's dynamic task mapping, spread over the workers), then `loaded_<feed>`, which
    # sums the batches up and produces the feed's asset once
    def make_plan(feed: str):
        @task(task_id=f"plan_{feed}")
        def plan(day: str) -> list[dict]:
            from ingest import batches
            from warehouse import settings

            params = get_current_context()["params"]
            if params.get("feed", "all") not in ("all", feed):
                return batches.skipped_plan(feed, day)
            return batches.plan(settings.landing_dir(), feed, date.fromisoformat(day), params.get("reporter"))

        return plan

    def make_load(feed: str):
        @task(task_id=f"load_{feed}", pool=WAREHOUSE_POOL)
        def load(batch: dict) -> dict:
            from ingest import batches
            from warehouse import settings
            from warehouse.connections import warehouse

            reporter = get_current_context()["params"].get("reporter")
            return batches.run_batch(warehouse(), settings.landing_dir(), batch, reporter)

        return load

    def make_loaded(feed: str):
        @task(task_id=f"loaded_{feed}", outlets=[RAW_FEEDS[feed]])
        def loaded(day: str, summaries: list[dict]) -> dict:
            from ingest import batches

            summary = batches.feed_summary(feed, day, summaries)
            if not summary.get("skipped"):
                get_current_context()["outlet_events"][RAW_FEEDS[feed]].extra = {"service_date": day,
                                                                                 "files": summary["files"]}
            return summary

        return loaded

    @task(pool=WAREHOUSE_POOL)
    def validate_raw(day: str, loads: list[dict]) -> dict:
        from orchestration import steps
        from warehouse.connections import warehouse

        return steps.validate_raw(warehouse(), day, run_id=get_current_context()["run_id"])

    # every reporter whose file had problems hears of it tonight (reports/notices.py), whatever happened to the
    # other feeds' loads; the send ledger keeps retries and re-runs from mailing anyone twice
    @task(pool=WAREHOUSE_POOL, trigger_rule="all_done")
    def notify_reporters(day: str) -> dict:
        from orchestration import steps
        from warehouse.connections import warehouse

        return steps.send_notices(warehouse(), day)

    @task(outlets=[RAW_NIGHT])
    def night_loaded(day: str, dq: dict) -> str:
        get_current_context()["outlet_events"][RAW_NIGHT].extra = {"service_date": day}
        return day

    day = service_day()
    ready = bootstrap()
    loads, feeds_loaded = [], []
    for feed in FEEDS:
        batch_loads = make_load(feed).expand(batch=make_plan(feed)(day))
        ready >> batch_loads
        loads.append(batch_loads)
        feeds_loaded.append(make_loaded(feed)(day, batch_loads))
    loads >> notify_reporters(day)
    night_loaded(day, validate_raw(day, feeds_loaded))


gov_ingest()
