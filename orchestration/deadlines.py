"""gov_publish's 07:00 as an Airflow 3 Deadline Alert: a run that has not succeeded by the 07:00 Asia/Shanghai
after it was triggered alerts the on-call address (officials read the summary at 08:00).

Airflow's built-in references are the run's logical date, its queue time, a fixed time or an average runtime;
gov_publish is triggered by an asset (no logical date), at whatever time the night's files were loaded, so the
night's deadline is a reference of its own, `PublishedByMorning`: the first GOV_PUBLISH_DEADLINE (default 07:00)
in the service time zone after the run's `run_after`. A run whose deadline had already passed when it was made
(a backfill, a local run of an old night, a re-publish after a late file) gets none: its morning is over, and
the data watchdog (dags/gov_publish_watchdog.py) has said what it had to say.

The scheduler evaluates the reference when it creates the run and hands a missed deadline's callback
(`deadline_missed`) to an executor; a run that succeeds before the deadline has its deadline pruned. The
scheduler and the DAG processor find the reference through a plugin (DeadlinePlugin, which
airflow_local.install_plugins writes into the plugins folder; the image does the same).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseDeadlineReference, DeadlineAlert, SyncCallback

from warehouse import settings
from warehouse.settings import SERVICE_TZ

DEADLINE_VAR = settings.PUBLISH_DEADLINE_VAR
DEFAULT_DEADLINE = "07:00"
# set by `airflow dags test` runs (airflow_local): Airflow 3.3's dag.test() cannot finish a successful run of a
# DAG with deadline alerts (it looks them up by their serialized form, not their stored ids), and no scheduler
# watches such a run; its deadline would be skipped anyway (its morning is over, see morning_deadline)
NO_DEADLINES_VAR = settings.NO_DEADLINES_VAR


def deadline_time_of_day() -> time:
    """GOV_PUBLISH_DEADLINE as a time of day (HH:MM, or HH:MM:SS), in the service time zone."""
    raw = settings.text(DEADLINE_VAR, DEFAULT_DEADLINE)
    try:
        return time.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{DEADLINE_VAR}={raw!r} is not a time of day like 07:00") from None


def morning_deadline(run_after: datetime, now: datetime, at: time | None = None) -> datetime | None:
    """The first `at` (service time zone) after `run_after`; None when that moment is already past at `now`."""
    tz = ZoneInfo(SERVICE_TZ)
    local = run_after.astimezone(tz)
    deadline = datetime.combine(local.date(), at or deadline_time_of_day(), tz)
    if deadline <= local:
        deadline += timedelta(days=1)
    return deadline if deadline > now else None


class PublishedByMorning(BaseDeadlineReference):
    """The next morning's deadline of a gov_publish run (see morning_deadline)."""

    required_kwargs = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session: Any, **kwargs: Any) -> datetime | None:
        # Core imports here: the scheduler calls this; DAG files only name the class
        from airflow._shared.timezones import timezone
        from airflow.models import DagRun
        from sqlalchemy import select

        run_after = session.scalar(select(DagRun.run_after).where(DagRun.dag_id == kwargs["dag_id"],
                                                                  DagRun.run_id == kwargs["run_id"]))
        return None if run_after is None else morning_deadline(run_after, timezone.utcnow())


def deadline_missed(context: dict, **_: Any) -> None:
    """The Deadline Alert's callback, run by an executor: the on-call notifier of every task failure, with a
    subject of its own. `context` is what the scheduler hands a deadline callback (the run, the deadline)."""
    from orchestration.dag_settings import on_call_notifier

    on_call_notifier(
        subject="[gov-data] {{ dag_run.dag_id }} has not published by {{ deadline_local }} (run {{ dag_run.dag_run_id }})",
        html_content=(
            "<p>The run <b>{{ dag_run.dag_run_id }}</b> of <b>{{ dag_run.dag_id }}</b> had not succeeded by its "
            "deadline, {{ deadline_local }}: the officials' summary is due at 08:00.</p>"
            "<p>State: {{ dag_run.state }}. Check its tasks in the Airflow UI.</p>"),
    )({**context, "deadline_local": _local(context.get("deadline", {}).get("deadline_time"))})


def _local(value: Any) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return "its deadline"
    return f"{value.astimezone(ZoneInfo(SERVICE_TZ)):%Y-%m-%d %H:%M} {SERVICE_TZ}"


def publish_deadline() -> DeadlineAlert | None:
    """gov_publish's `deadline=`: PublishedByMorning, no offset, on-call alerted by deadline_missed (none in a
    process that set GOV_NO_DEADLINE_ALERTS)."""
    if settings.switch(NO_DEADLINES_VAR, False):
        return None
    return DeadlineAlert(reference=PublishedByMorning(), interval=timedelta(0),
                         callback=SyncCallback(deadline_missed), name="published by 07:00")


class DeadlinePlugin(AirflowPlugin):
    """Registers PublishedByMorning with the scheduler (a custom deadline reference is found through a plugin)."""

    name = "gov_deadlines"
    deadline_references = [PublishedByMorning]
