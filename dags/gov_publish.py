"""gov_publish: build the marts, validate them, publish, and send the officials' summary.

Scheduled on the `raw_night` asset (produced by gov_ingest, and again when a late file is
loaded), or run by hand for a `service_date`. Orchestration only: tasks call orchestration.steps; the dbt
step (task group `dbt`, see orchestration/dbt_tasks.py) is one `dbt build` of the night
(`dbt_producer_watcher`) and one task per dbt model/seed/snapshot showing its result.

A failing dbt node or test fails its own task in `dbt` (*Clear* re-runs that node alone); a failing `fail` check blocks
`publish` and `marts` keeps the last good night; `send_summary` mails the officials whatever happened, and
`night_failed` then marks the run failed (it is skipped on a good night). `dbt_docs` regenerates the dbt docs
the docs site serves (GOV_DOCS_BASE_URL), after publish.

Deadline: a run that has not succeeded by the 07:00 (Asia/Shanghai) after it was triggered alerts on-call
(an Airflow Deadline Alert, orchestration/deadlines.py). What no run can show, a night whose run never started,
is gov_publish_watchdog's.
"""

from __future__ import annotations

from airflow.sdk import Param, dag, get_current_context, task

from orchestration import dbt_tasks, deadlines
from orchestration.dag_settings import MARTS, RAW_NIGHT, START, TZ, WAREHOUSE_POOL, default_args


@dag(
    dag_id="gov_publish",
    description="dbt build of the marts, checks, publish, officials' summary email",
    doc_md=__doc__,  # the module docstring, shown on the DAG's page in the UI
    schedule=RAW_NIGHT,
    start_date=START,
    catchup=False,
    max_active_runs=1,
    # 07:00 Asia/Shanghai: a run not succeeded by then alerts on-call (an Airflow Deadline Alert)
    deadline=deadlines.publish_deadline(),
    default_args=default_args(),
    tags=["governance", "publish"],
    params={
        "service_date": Param(None, type=["null", "string"], format="date",
                              description=f"Service day YYYY-MM-DD ({TZ}); default: from the triggering asset"),
    },
)
def gov_publish():
    @task
    def service_days() -> list[str]:
        from orchestration import steps
        from warehouse.connections import warehouse

        ctx = get_current_context()
        # every night loaded since its last publish attempt, not only the triggering events' (Airflow 3.3 leaves
        # events queued behind a running gov_publish unconsumed: steps.pending_days); one dbt build covers them
        return steps.days_to_publish(ctx["params"], ctx.get("triggering_asset_events"), ctx.get("logical_date"),
                                     wh=warehouse())

    @task(pool=WAREHOUSE_POOL)
    def validate_marts(days: list[str]) -> dict:
        from orchestration import steps
        from warehouse.connections import warehouse

        return steps.validate_marts(warehouse(), days, run_id=get_current_context()["run_id"])

    # a blocked publish fails the run on purpose: no retries, `marts` keeps the last good night. Lock waits
    # are retried inside the step, each bounded (orchestration/publish.py), so a task retry would add nothing
    @task(pool=WAREHOUSE_POOL, outlets=[MARTS], retries=0)
    def publish(days: list[str]) -> dict:
        from orchestration import steps
        from warehouse.connections import warehouse

        return steps.publish(warehouse(), days, run_id=get_current_context()["run_id"])

    # officials hear about the night whatever happened to it (blocked, failed, nothing published yet);
    # the send ledger keeps its retries and re-runs from mailing anyone twice (reports/send.py)
    @task(pool=WAREHOUSE_POOL, trigger_rule="all_done")
    def send_summary(days: list[str]) -> list[str]:
        from orchestration import steps
        from warehouse.connections import warehouse

        return [key for day in days for key in steps.send_summary(warehouse(), day)]

    # the docs site's dbt docs (GOV_DOCS_BASE_URL/dbt-docs/, the email links there) describe tonight's marts:
    # `dbt docs generate` as gov_transformer into the folder the site serves, whatever publish decided
    @task(pool=WAREHOUSE_POOL, trigger_rule="all_done")
    def dbt_docs() -> str | None:
        from airflow.sdk.exceptions import AirflowSkipException

        from orchestration import dbt_tasks
        from warehouse.connections import warehouse

        index = dbt_tasks.generate_docs(warehouse())
        if index is None:
            raise AirflowSkipException(f"{dbt_tasks.DOCS_SWITCH} is false")
        return str(index)

    # the run's colour is the night's: send_summary, the last task, succeeds whatever happened before it, so
    # this watcher (Airflow's pattern: trigger rule one_failed) fails the run when a dbt node, the checks or
    # publish failed or was blocked; on a good night it is skipped
    @task(trigger_rule="one_failed", retries=0)
    def night_failed() -> None:
        raise RuntimeError("a task of this night failed or publish was blocked (the red task says which); "
                           "the officials' summary went out all the same")

    days = service_days()
    # dbt builds the marts into marts_candidate in one build, each node's tests right after it; a task per node
    built = dbt_tasks.marts_build(days, pool=WAREHOUSE_POOL)
    checked = validate_marts(days)
    published = publish(days)
    summary = send_summary(days)
    built >> checked >> published >> summary
    published >> dbt_docs()
    [built, checked, published, summary] >> night_failed()


gov_publish()
