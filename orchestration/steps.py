"""The nightly pipeline's steps as plain functions: DAG tasks call these and nothing else.

Each step is given the warehouse it works on (`wh`); it logs in there as the role its work needs."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta
from pathlib import Path

from ingest import batches, loader
from orchestration import dbt_run
from warehouse import bootstrap, connections, settings
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)


def service_day(params: dict | None, logical_date: datetime | None) -> str:
    """The service day a run is for: the `service_date` param, else the Shanghai day before the run's
    logical date (the 02:00 run processes the day that just ended)."""
    explicit = (params or {}).get("service_date")
    if explicit:
        return date.fromisoformat(str(explicit)).isoformat()
    if logical_date is None:
        raise ValueError("no service_date param and no logical date")
    return (logical_date.astimezone(settings.TZ).date() - timedelta(days=1)).isoformat()


# How far back a publish run looks for nights loaded since their last publish (pending_days)
PENDING_LOOKBACK = timedelta(days=35)


def days_to_publish(params: dict | None, asset_events: dict | None, logical_date: datetime | None,
                    wh: ConnInfo | None = None) -> list[str]:
    """Service days a publish run covers, built in one dbt build of min(days)..max(days) (build_marts): the
    param; else, given the warehouse `wh`, every day loaded since its last publish attempt (pending_days),
    which holds every triggering event's night not published since; else (nothing pending: a re-run whose
    files were all duplicates) the days the triggering asset events name. An event's night published since
    its last load (by an earlier run: see pending_days) is not built again."""
    if (params or {}).get("service_date"):
        return [service_day(params, None)]
    if wh is not None and (pending := pending_days(wh)):
        return pending
    days = set()
    for events in (asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or {}
            if extra.get("service_date"):
                days.add(date.fromisoformat(extra["service_date"]).isoformat())
    if days:
        return sorted(days)
    return [service_day(None, logical_date)]


def pending_days(wh: ConnInfo, lookback: timedelta = PENDING_LOOKBACK) -> list[str]:
    """Service days with a file loaded (or released) after the day's last publish attempt, or never
    published, among the loads of the last `lookback`.

    Why the warehouse and not only the triggering events: Airflow 3.3 (apache/airflow#56050) creates the
    next asset-triggered run of a DAG at max_active_runs once the running one ends, but gives it only the
    events up to the FIRST one queued meanwhile (the queue row's created_at); the events after it stay
    unconsumed until yet another event arrives. A night loaded while a publish ran would wait for the next
    night's files, and then be built again with it. Read here, every run covers every night loaded before
    it started. A blocked or failed publish counts as an attempt: that night is not retried by every later
    run (its own re-run does it). A load finishing while a run is between its start and its publish log
    counts as covered by it; its own event triggers the next run in the usual case."""
    with connections.connect_as(connections.REPORTER, wh) as conn:
        rows = conn.execute(
            """select l.service_date::text
               from audit.load_ledger as l
               where l.status in ('loaded', 'replaced', 'released') and l.service_date is not null
                 and l.finished_at > now() - %s
                 and greatest(l.finished_at, l.decided_at) > coalesce(
                     (select max(p.logged_at) from audit.publish_log as p where p.service_date = l.service_date),
                     '-infinity')
               group by l.service_date order by l.service_date""", (lookback,)).fetchall()
    return [day for (day,) in rows]


def bootstrap_warehouse(wh: ConnInfo) -> None:
    bootstrap.bootstrap(wh)


def load_feed(wh: ConnInfo, source: str, day: str, reporter: str | None = None) -> dict:
    results = loader.load_night(wh, settings.landing_dir(), source, date.fromisoformat(day), reporter)
    summary = batches.results_summary(source, day, results)
    log.info("load summary: %s", json.dumps(summary, ensure_ascii=False))
    if summary["failed"]:
        # an unexpected error (not bad data, which is quarantined or rejected): the rest of the night is
        # loaded; failing the task makes Airflow retry, and loaded files are skipped on the retry
        raise RuntimeError(f"{len(summary['failed'])} {source} files failed to load: " + "; ".join(summary["failed"][:5]))
    return summary


def check_label(suite: str, expectation: str, column: str | None) -> str:
    """How a check is named in logs, the publish log and the email."""
    return f"{suite}.{expectation}({column or ''})"


def validate_raw(wh: ConnInfo, day: str, run_id: str) -> dict:
    """The raw suites of the night as one GX checkpoint, under the Airflow run id."""
    from expectations.runner import run_checkpoint
    from expectations.suites import raw_suites

    run = run_checkpoint(wh, "raw", {day: raw_suites(day)}, run_id=run_id)
    failed = [check_label(r.suite, r.expectation, r.column) for r in run.failed]
    warned = [check_label(r.suite, r.expectation, r.column) for r in run.warnings]
    log.info("raw checks: %d run, %d failed, %d warnings", len(run.results), len(failed), len(warned))
    return {"checks": len(run.results), "failed": failed, "warnings": warned,
            "data_docs": str(run.data_docs) if run.data_docs else None}


def build_marts(wh: ConnInfo, day: str, first_day: str | None = None) -> None:
    """`dbt build` of the marts for the nights first_day..day in one build (one night without first_day):
    it rebuilds exactly what those nights can change, as their nightly builds in order would
    (dbt_project/macros/nightly.sql). A publish run passes max(days) and min(days) of days_to_publish."""
    dbt_run.run_dbt(wh, ["build"], day, first_day)


def validate_marts(wh: ConnInfo, days: list[str], run_id: str) -> dict:
    """GX suites on the candidate marts (write-audit-publish: the audit step)."""

    from expectations.runner import run_checkpoint
    from expectations.suites import mart_suites
    from orchestration.publish import CANDIDATE

    with connections.connect_as(connections.CHECKER, wh) as conn:
        rows = conn.execute("select table_name, column_name from information_schema.columns where table_schema = %s "
                            "order by table_name, ordinal_position", (CANDIDATE,)).fetchall()
    tables: dict[str, list[str]] = {}
    for table, column in rows:
        tables.setdefault(table, []).append(column)
    # every day of the run in one checkpoint, under the Airflow run id
    run = run_checkpoint(wh, "marts", {day: mart_suites(CANDIDATE, day, tables) for day in days}, run_id=run_id)
    failed = [check_label(r.suite, r.expectation, r.column) for r in run.failed]
    log.info("mart checks: %d run, %d failed", len(run.results), len(failed))
    return {"checks": len(run.results), "failed": failed}


def publish(wh: ConnInfo, days: list[str], run_id: str) -> dict:
    """Publish the candidate marts when no 'fail' check failed (raw suites of these days, mart suites of
    this run); otherwise leave `marts` at the last good night, log the block and fail the task. A publish
    that cannot take its locks within its bound (orchestration.publish) is logged `failed` and fails the task."""

    from orchestration.publish import PublishLockTimeout, publish_candidate

    dq = _latest_dq(wh, days)
    outcome = {**dq, "data_docs": str(docs) if (docs := _data_docs()) else None,
               "status": "blocked" if dq["failed"] else "published"}
    error = None
    if outcome["status"] == "published":
        try:
            outcome["tables"] = publish_candidate(wh)
        except PublishLockTimeout as err:
            outcome["status"], outcome["error"], error = "failed", str(err), err
    _log_publish(wh, days, run_id, outcome)
    if error is not None:
        raise error
    if outcome["status"] == "blocked":
        raise RuntimeError(f"publish blocked for {', '.join(days)}: {len(outcome['failed'])} failing checks: "
                           + "; ".join(outcome["failed"][:10]))
    return outcome


def _log_publish(wh: ConnInfo, days: list[str], run_id: str, outcome: dict) -> None:
    with connections.connect_as(connections.PUBLISHER, wh) as conn:
        for day in days:
            conn.execute(
                """insert into audit.publish_log (service_date, run_id, status, checks, failed, warnings, detail)
                   values (%s, %s, %s, %s, %s, %s, %s)""",
                (day, run_id, outcome["status"], outcome["checks"], len(outcome["failed"]), len(outcome["warnings"]),
                 json.dumps(outcome, ensure_ascii=False)),
            )


def publish_outcome(wh: ConnInfo, days: list[str]) -> dict:
    """The latest publish outcome of these days (what the summary email reports)."""

    with connections.connect_as(connections.REPORTER, wh) as conn:
        row = conn.execute("select detail from audit.publish_log where service_date = any(%s::date[]) "
                           "order by logged_at desc limit 1", (days,)).fetchone()
    if row:
        return row[0]
    # no publish step ran (the dbt build failed or was not reached): the checks that did run, and why
    dq = _latest_dq(wh, days)
    build = {"label": "build_failed", "severity": "fail", "zh": "本次数据构建未完成，未进行发布检查"}
    return {**dq, "status": "blocked", "failed": [*dq["failed"], build["label"]], "issues": [*dq["issues"], build]}


def _data_docs() -> Path | None:
    from expectations.gx_context import data_docs_index

    return data_docs_index()


def _latest_dq(wh: ConnInfo, days: list[str]) -> dict:
    """The latest result of every check for these days, from audit.dq_results."""

    with connections.connect_as(connections.PUBLISHER, wh) as conn:
        rows = conn.execute(
            """select distinct on (suite, expectation, coalesce(column_name, ''), service_date)
                      suite, expectation, column_name, severity, success, unexpected_count, details ->> 'zh'
               from audit.dq_results where service_date = any(%s::date[])
               order by suite, expectation, coalesce(column_name, ''), service_date, checked_at desc""",
            (days,),
        ).fetchall()
    # what failed, with the check's Chinese description (expectations/suites.py) for the email
    issues = [{"label": check_label(s, e, c), "severity": sev, "unexpected_count": n, "zh": zh}
              for s, e, c, sev, ok, n, zh in rows if not ok]
    return {
        "checks": len(rows),
        "failed": [i["label"] for i in issues if i["severity"] == "fail"],
        "warnings": [i["label"] for i in issues if i["severity"] == "warn"],
        "issues": issues,
    }


def check_published(wh: ConnInfo, day: str) -> dict:
    """Fail (and so alert on-call) when `day` has no successful publish."""

    with connections.connect_as(connections.REPORTER, wh) as conn:
        row = conn.execute(
            "select max(logged_at) from audit.publish_log where service_date = %s and status = 'published'", (day,)
        ).fetchone()
    if row[0] is None:
        raise RuntimeError(f"service day {day} has not been published: officials' 08:00 summary is at risk")
    return {"service_date": day, "published_at": row[0].isoformat()}


def send_summary(wh: ConnInfo, day: str) -> list[str]:
    from reports.send import send_summaries

    return send_summaries(wh, day, publish_outcome(wh, [day]))


def send_notices(wh: ConnInfo, day: str) -> dict:
    """Tell every reporter whose file of `day` had problems (and those whose corrected file loaded, or whose
    file is missing): reports/notices.py; the send ledger keeps a re-run from mailing anyone twice."""
    from reports.notices import send_notices as notify

    summary = notify(wh, day)
    log.info("reporters' notices: %s", json.dumps(summary, ensure_ascii=False))
    return summary
