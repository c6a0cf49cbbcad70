"""Settings shared by the project's DAGs (orchestration only: no database or dbt calls here)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow.sdk import Asset

from orchestration.assets import MARTS_ASSET, RAW_FEED_ASSETS, RAW_NIGHT_ASSET
from warehouse import settings
from warehouse.settings import FEEDS as FEEDS  # re-exported for the DAG files
from warehouse.settings import SERVICE_TZ

TZ = SERVICE_TZ  # pendulum takes the zone by name
START = pendulum.datetime(2023, 1, 1, tz=TZ)
ONCALL = settings.oncall_email()
WAREHOUSE_POOL = "warehouse"  # bounds concurrent warehouse sessions (created by `gov-warehouse run/airflow`)

RAW_FEEDS = {feed: Asset(name=f"raw_{feed}", uri=uri) for feed, uri in RAW_FEED_ASSETS.items()}
RAW_NIGHT = Asset(name="raw_night", uri=RAW_NIGHT_ASSET)
MARTS = Asset(name="marts", uri=MARTS_ASSET)


# an asset-triggered run (gov_publish's nightly runs) has no logical date, so no `ds`: it is named by its run id
TASK_FAILED_SUBJECT = ("[gov-data] {{ dag.dag_id }}.{{ ti.task_id }} failed for "
                       "{{ params.service_date or ds | default(run_id) }}")
TASK_FAILED_HTML = ("<p>Task <b>{{ ti.task_id }}</b> of <b>{{ dag.dag_id }}</b> failed after {{ ti.try_number }} "
                    "tries (run {{ run_id }}).</p><p>Log: {{ ti.log_url }}</p>")


def on_call_notifier(subject: str = TASK_FAILED_SUBJECT, html_content: str = TASK_FAILED_HTML) -> SmtpNotifier:
    """The on-call address's notifier (smtp_default); a task failure's message unless told otherwise (the
    07:00 deadline's, orchestration/deadlines.py)."""
    return SmtpNotifier(to=ONCALL, from_email="gov-data@taiyuan.example",
                        subject=subject, html_content=html_content)


def alert_on_call(context: dict) -> None:
    """Task failure callback: a fresh notifier for every failure. A notifier renders its templates into its
    own fields, so one instance shared by a DAG's tasks would name the first failed task in every later alert."""
    on_call_notifier()(context)


def default_args() -> dict:
    return {
        "owner": "gov-data",
        "retries": int(settings.number("GOV_TASK_RETRIES", 2)),
        "retry_delay": timedelta(seconds=settings.number("GOV_RETRY_DELAY_SECONDS", 120)),
        # Airflow 3.3 takes a multiplier (True meant 2.0 once deserialized, but 1.0 to a DAG object in
        # hand, and mapped tasks report 2.0): the delay doubles with each retry
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=45),
        "on_failure_callback": alert_on_call,
    }
