"""Nightly run: load the three feeds, check them, build the marts, send the morning summary.

Orchestration only: every task calls a function of `ingest.pipeline`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

FEEDS = ("streets", "canteens", "assistance")

default_args = {
    "owner": "gov-data",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(minutes=30),
}


@dag(
    dag_id="gov_nightly",
    description="Nightly ingest, checks, marts and officials' summary for one service day (Asia/Shanghai)",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["governance", "nightly"],
    params={
        "service_date": Param(None, type=["null", "string"], format="date",
                              description="Service day to process (YYYY-MM-DD); default: the day before the run"),
    },
)
def gov_nightly():
    @task
    def service_day() -> str:
        from ingest import pipeline

        ctx = get_current_context()
        return pipeline.service_day(ctx["params"], ctx.get("logical_date"))

    @task
    def bootstrap() -> None:
        from ingest import pipeline

        pipeline.bootstrap_warehouse()

    @task
    def load(source: str, day: str) -> dict:
        from ingest import pipeline

        return pipeline.load_feed(source, day)

    @task
    def validate_raw(day: str, loads: list[dict]) -> dict:
        from ingest import pipeline

        ctx = get_current_context()
        return pipeline.validate_raw(day, run_id=ctx["run_id"])

    @task
    def build_marts(day: str, dq: dict) -> None:
        from ingest import pipeline

        pipeline.build_marts(day)

    @task
    def send_summary(day: str, dq: dict) -> list[str]:
        from ingest import pipeline

        return pipeline.send_summary(day, dq)

    day = service_day()
    ready = bootstrap()
    loads = []
    for source in FEEDS:
        loaded = load.override(task_id=f"load_{source}")(source, day)
        ready >> loaded
        loads.append(loaded)
    dq = validate_raw(day, loads)
    built = build_marts(day, dq)
    built >> send_summary(day, dq)


gov_nightly()
