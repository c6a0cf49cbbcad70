"""gov_ingest: at 02:00 Asia/Shanghai, load the service day that just ended and check the raw feeds.

Each feed's load produces its Airflow Asset; once all are loaded and checked, `raw_night` is
produced, which schedules gov_publish (data-aware scheduling). Orchestration only: every task
calls orchestration.steps.

A run's service day is the day before its logical date (Asia/Shanghai), or its `service_date` param; runs made
by `make run` are named `local__<service day>`. Re-run a day, a feed or one reporter's file with *Trigger* and
the params `service_date`, `feed`, `reporter` (README, For data engineers).
"""

from __future__ import annotations

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

    def make_load(feed: str):
        @task(task_id=f"load_{feed}", pool=WAREHOUSE_POOL, outlets=[RAW_FEEDS[feed]])
        def load(day: str) -> dict:
            from orchestration import steps
            from warehouse.connections import warehouse

            ctx = get_current_context()
            params = ctx["params"]
            if params.get("feed", "all") not in ("all", feed):
                return {"source": feed, "service_date": day, "skipped": True}
            summary = steps.load_feed(warehouse(), feed, day, params.get("reporter"))
            ctx["outlet_events"][RAW_FEEDS[feed]].extra = {"service_date": day, "files": summary["files"]}
            return summary

        return load

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
    loads = []
    for feed in FEEDS:
        loaded = make_load(feed)(day)
        ready >> loaded
        loads.append(loaded)
    loads >> notify_reporters(day)
    night_loaded(day, validate_raw(day, loads))


gov_ingest()
