"""Which nights a gov_publish run covers (orchestration/steps.days_to_publish, issue 20): the days of its
triggering asset events and every night loaded since its last publish attempt (steps.pending_days).

Airflow 3.3 gives the run after a running one only the events up to the first one queued meanwhile
(apache/airflow#56050): the nights of the later events must still be covered, which the load ledger and
the publish log of the warehouse say. The ledger and publish-log rows are written here by hand (the
loader and the publish write the same columns), each with the clock time the case needs.
"""

from __future__ import annotations

from datetime import date, timedelta
from types import SimpleNamespace

import psycopg
import pytest

from orchestration import steps

pytestmark = pytest.mark.integration

DAY = date(2023, 7, 1)
NEVER_PUBLISHED, PUBLISHED, REVISED_AFTER_PUBLISH, BLOCKED, DUPLICATE_AFTER_PUBLISH, LONG_AGO, RELEASED = (
    DAY + timedelta(days=i) for i in range(7))


def ledger(conn: psycopg.Connection, day: date, status: str, finished: str, decided: str | None = None) -> None:
    conn.execute(
        """insert into audit.load_ledger (source, reporter_code, service_date, file_path, status, started_at,
                                          finished_at, decided_at)
           values ('canteens', 'CT140105001001', %s, %s, %s, now() - %s::interval, now() - %s::interval,
                   now() - %s::interval)""",
        (day, f"canteens/{day}/CT140105001001.csv", status, finished, finished, decided))


def publish_log(conn: psycopg.Connection, day: date, status: str, logged: str) -> None:
    conn.execute("insert into audit.publish_log (service_date, run_id, status, logged_at) "
                 "values (%s, 'run', %s, now() - %s::interval)", (day, status, logged))


@pytest.fixture
def warehouse(fresh_warehouse):
    with psycopg.connect(fresh_warehouse.conninfo(), autocommit=True) as conn:
        ledger(conn, NEVER_PUBLISHED, "loaded", "3 hours")
        ledger(conn, PUBLISHED, "loaded", "3 hours")
        publish_log(conn, PUBLISHED, "published", "2 hours")
        ledger(conn, REVISED_AFTER_PUBLISH, "replaced", "5 hours")
        publish_log(conn, REVISED_AFTER_PUBLISH, "published", "4 hours")
        ledger(conn, REVISED_AFTER_PUBLISH, "loaded", "1 hour")  # the revised file, after that publish
        ledger(conn, BLOCKED, "loaded", "3 hours")
        publish_log(conn, BLOCKED, "blocked", "2 hours")  # attempted: its own re-run retries it
        ledger(conn, DUPLICATE_AFTER_PUBLISH, "loaded", "5 hours")
        publish_log(conn, DUPLICATE_AFTER_PUBLISH, "published", "4 hours")
        ledger(conn, DUPLICATE_AFTER_PUBLISH, "skipped_duplicate", "1 hour")  # changed nothing
        ledger(conn, LONG_AGO, "loaded", "40 days")  # older than the lookback
        ledger(conn, RELEASED, "released", "6 hours", decided="1 hour")  # held, released after the publish
        publish_log(conn, RELEASED, "published", "5 hours")
    return fresh_warehouse


def test_pending_days_are_the_nights_loaded_since_their_last_publish_attempt(warehouse):
    assert steps.pending_days(warehouse) == [d.isoformat() for d in (NEVER_PUBLISHED, REVISED_AFTER_PUBLISH, RELEASED)]
    assert steps.pending_days(warehouse, lookback=timedelta(days=60)) == [
        d.isoformat() for d in (NEVER_PUBLISHED, REVISED_AFTER_PUBLISH, LONG_AGO, RELEASED)]


def test_a_publish_run_covers_the_pending_nights_and_no_night_published_since_its_event(warehouse):
    tonight = DAY + timedelta(days=20)
    with psycopg.connect(warehouse.conninfo(), autocommit=True) as conn:
        ledger(conn, tonight, "loaded", "10 minutes")
    # tonight's event, and one for a night an earlier run published after its load (an event Airflow left
    # unconsumed until now: apache/airflow#56050): that night is not built again
    events = {"raw_night": [SimpleNamespace(extra={"service_date": tonight.isoformat()}),
                            SimpleNamespace(extra={"service_date": PUBLISHED.isoformat()})]}
    pending = [NEVER_PUBLISHED, REVISED_AFTER_PUBLISH, RELEASED, tonight]
    assert steps.days_to_publish(None, events, None, wh=warehouse) == [d.isoformat() for d in pending]
    # without the warehouse: the events' days only (as before)
    assert steps.days_to_publish(None, events, None) == sorted([PUBLISHED.isoformat(), tonight.isoformat()])
    # a run for one service_date (by hand) is for that day alone
    assert steps.days_to_publish({"service_date": tonight.isoformat()}, events, None, wh=warehouse) == [
        tonight.isoformat()]


def test_with_nothing_pending_a_run_covers_its_events_nights(fresh_warehouse):
    """Every file of the night a duplicate (a re-run of gov_ingest): nothing was loaded since the night's
    publish, and the run rebuilds the night its event names, as a run without the warehouse would."""
    with psycopg.connect(fresh_warehouse.conninfo(), autocommit=True) as conn:
        ledger(conn, DAY, "loaded", "5 hours")
        publish_log(conn, DAY, "published", "4 hours")
        ledger(conn, DAY, "skipped_duplicate", "1 hour")
    events = {"raw_night": [SimpleNamespace(extra={"service_date": DAY.isoformat()})]}
    assert steps.pending_days(fresh_warehouse) == []
    assert steps.days_to_publish(None, events, None, wh=fresh_warehouse) == [DAY.isoformat()]
