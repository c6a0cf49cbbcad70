"""gov_publish_watchdog: at 07:00 Asia/Shanghai, alert the on-call address if last night has not
been published (officials read the summary at 08:00).

Which alarm covers what:

- **gov_publish's deadline** (an Airflow Deadline Alert, orchestration/deadlines.py) watches a *run*: a
  gov_publish run that has not succeeded by the 07:00 after it was triggered (running late, failed, blocked).
- **this watchdog** watches the *data*, for what a deadline cannot see: a night with no gov_publish run at all
  (gov_ingest failed or never produced `raw_night`, files never arrived, the DAG paused), and a run that
  succeeded without that night's marts being published (audit.publish_log has no `published` row for the day).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, get_current_context, task

from orchestration.dag_settings import START, default_args


@dag(
    dag_id="gov_publish_watchdog",
    description="Alert on-call when the night's marts are not published by 07:00",
    doc_md=__doc__,  # the module docstring, shown on the DAG's page in the UI
    schedule="0 7 * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args={**default_args(), "retries": 0, "execution_timeout": timedelta(minutes=5)},
    tags=["governance", "alerting"],
    params={"service_date": Param(None, type=["null", "string"], format="date")},
)
def gov_publish_watchdog():
    @task
    def check_published() -> dict:
        from orchestration import steps
        from warehouse.connections import warehouse

        ctx = get_current_context()
        # the 07:00 run checks the day before, like the 02:00 ingest run
        return steps.check_published(warehouse(), steps.service_day(ctx["params"], ctx.get("logical_date")))

    check_published()


gov_publish_watchdog()
