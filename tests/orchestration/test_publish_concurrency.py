"""Publishing while BI sessions are open (two real connections on a real PostgreSQL).

The candidate marts are small hand-made tables in `marts_candidate` (what dbt would have built), so
each test controls exactly which rows each night publishes and what an open BI transaction must see.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from orchestration.publish import PublishLockTimeout, publish_candidate
from warehouse import connections

pytestmark = pytest.mark.integration

TABLES = ("mart_city_daily_summary", "mart_street_daily_scorecard")


def build_candidate(wh, night: int, rows: int) -> None:
    """A night of candidate marts: `rows` rows per table, each row carrying its night number."""
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("set role gov_transformer")
        for t in TABLES:
            conn.execute(f"drop table if exists marts_candidate.{t}")
            conn.execute(f"create table marts_candidate.{t} (k integer primary key, night integer not null)")
            conn.execute(f"comment on table marts_candidate.{t} is 'night {night}'")
            conn.execute(f"insert into marts_candidate.{t} select g, %s from generate_series(1, %s) g", (night, rows))


def bi_session(wh) -> psycopg.Connection:
    """A BI tool's session: logged in as gov_bi_reader with its own credentials (not SET ROLE)."""
    conn = connections.connect_as(connections.BI_READER, wh)
    assert conn.execute("select session_user, current_user").fetchone() == ("gov_bi_reader", "gov_bi_reader")
    conn.commit()
    return conn


def published(conn: psycopg.Connection, table: str) -> tuple[int, set[int]]:
    count, nights = conn.execute(f"select count(*), array_agg(distinct night) from marts.{table}").fetchone()
    return count, set(nights or [])


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread; returns (thread, box) where box gets 'result' or 'error' and 'seconds'."""
    box: dict = {}

    def run():
        started = time.monotonic()
        try:
            box["result"] = fn(*args, **kwargs)
        except Exception as err:  # handed to the test, which asserts on it
            box["error"] = err
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_repeatable_read_spanning_a_publish_sees_the_old_marts_whole(fresh_warehouse):
    wh = fresh_warehouse
    build_candidate(wh, night=1, rows=5)
    assert publish_candidate(wh) == sorted(TABLES)

    bi = bi_session(wh)
    try:
        bi.execute("begin isolation level repeatable read")
        bi.execute("select 1")  # the snapshot is taken here, before the publish; no mart touched yet
        build_candidate(wh, night=2, rows=7)
        thread, box = in_thread(publish_candidate, wh, lock_timeout_s=2, attempts=1)
        thread.join(20)
        assert not thread.is_alive(), "publish waited on a BI transaction that holds no conflicting lock"
        assert box.get("result") == sorted(TABLES), box.get("error")
        # the BI transaction still sees night 1, whole, in every table: not an empty or a mixed mart
        for t in TABLES:
            assert published(bi, t) == (5, {1})
        bi.execute("commit")
        for t in TABLES:
            assert published(bi, t) == (7, {2})  # a new transaction sees the new night
    finally:
        bi.close()


def test_open_bi_transaction_does_not_hold_up_the_publish(fresh_warehouse):
    wh = fresh_warehouse
    build_candidate(wh, night=1, rows=3)
    publish_candidate(wh)
    bi = bi_session(wh)
    try:
        bi.execute("begin")
        assert published(bi, TABLES[0]) == (3, {1})  # holds its lock on the mart until it ends
        build_candidate(wh, night=2, rows=4)
        thread, box = in_thread(publish_candidate, wh, lock_timeout_s=2, attempts=2, retry_delay_s=0.5)
        thread.join(20)
        assert not thread.is_alive(), "publish hung behind an open BI transaction"
        assert box.get("result") == sorted(TABLES), box.get("error")
        assert box["seconds"] < 2  # it never waited for a lock at all
        # a new BI query while the old transaction is still open is not queued behind anything
        other = bi_session(wh)
        try:
            other.execute("set statement_timeout = '2s'")
            assert published(other, TABLES[0]) == (4, {2})
        finally:
            other.close()
        assert published(bi, TABLES[0]) == (4, {2})  # read committed: its next statement sees the new night
    finally:
        bi.close()


def test_publish_blocked_by_a_lock_fails_clearly_within_its_bound(fresh_warehouse):
    """A session holding a lock that conflicts with the publish's writes (here an engineer's
    `lock table ... in share mode` in psql): the publish retries, then fails with a message naming the
    table and the blocking session, within attempts x (lock_timeout + delay); `marts` is unchanged."""
    wh = fresh_warehouse
    build_candidate(wh, night=1, rows=3)
    publish_candidate(wh)
    build_candidate(wh, night=2, rows=4)
    blocker = psycopg.connect(wh.conninfo(), application_name="engineer-psql")
    try:
        blocker.execute("begin")
        blocker.execute("lock table marts.mart_street_daily_scorecard in share mode")
        thread, box = in_thread(publish_candidate, wh, lock_timeout_s=1, attempts=3, retry_delay_s=0.5)
        thread.join(30)
        assert not thread.is_alive(), "publish waited beyond its bound"
        err = box.get("error")
        assert isinstance(err, PublishLockTimeout), box
        assert 3 * 1 <= box["seconds"] < 3 * 1 + 2 * 0.5 + 5
        message = str(err)
        assert "3 attempts" in message
        assert "engineer-psql" in message and "mart_street_daily_scorecard" in message
    finally:
        blocker.close()
    with psycopg.connect(wh.conninfo()) as conn:
        for t in TABLES:
            assert published(conn, t) == (3, {1})  # nothing half-published
    assert publish_candidate(wh) == sorted(TABLES)  # once the lock is gone, it publishes


def test_first_publish_creates_the_marts_and_a_changed_table_is_replaced(fresh_warehouse):
    wh = fresh_warehouse
    build_candidate(wh, night=1, rows=2)
    publish_candidate(wh)
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("set role gov_transformer")
        # a contract change between nights: a new column, and a table that is no longer built
        conn.execute("alter table marts_candidate.mart_city_daily_summary add column extra text default 'x'")
        conn.execute("drop table marts_candidate.mart_street_daily_scorecard")
        conn.commit()
    assert publish_candidate(wh) == ["mart_city_daily_summary"]
    with bi_session(wh) as conn:
        assert conn.execute("select k, night, extra from marts.mart_city_daily_summary order by k").fetchall() == [
            (1, 1, "x"), (2, 1, "x")]
        assert conn.execute("select obj_description('marts.mart_city_daily_summary'::regclass, 'pg_class')"
                            ).fetchone() == ("night 1",)
        assert conn.execute("select to_regclass('marts.mart_street_daily_scorecard')").fetchone() == (None,)


def test_nothing_to_publish_is_a_clear_error(fresh_warehouse):
    with pytest.raises(RuntimeError, match="nothing to publish"):
        publish_candidate(fresh_warehouse)


def test_a_publish_that_times_out_is_logged_failed_and_the_email_says_so(fresh_warehouse, monkeypatch):
    """Through the pipeline step the DAG runs: the lock timeout fails the task, `audit.publish_log`
    records `failed`, and the outcome the email reads says the publish step failed (not 'blocked')."""
    from orchestration import steps
    from reports import night

    wh = fresh_warehouse
    monkeypatch.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
    monkeypatch.setenv("GOV_PUBLISH_LOCK_TIMEOUT_S", "0.5")
    monkeypatch.setenv("GOV_PUBLISH_ATTEMPTS", "2")
    monkeypatch.setenv("GOV_PUBLISH_RETRY_DELAY_S", "0.1")
    build_candidate(wh, night=1, rows=3)
    publish_candidate(wh)
    build_candidate(wh, night=2, rows=4)
    blocker = psycopg.connect(wh.conninfo(), application_name="long-alter")
    try:
        blocker.execute("begin")
        blocker.execute("lock table marts.mart_city_daily_summary in access exclusive mode")
        with pytest.raises(PublishLockTimeout, match="2 attempts"):
            steps.publish(wh, ["2023-11-06"], run_id="locked")
    finally:
        blocker.close()
    with psycopg.connect(wh.conninfo()) as conn:
        assert conn.execute("select status, detail ->> 'error' like '%long-alter%' from audit.publish_log "
                            "where run_id = 'locked'").fetchall() == [("failed", True)]
    outcome = steps.publish_outcome(wh, ["2023-11-06"])
    assert outcome["status"] == "failed"
    assert night.publication_lines(outcome)[0].startswith("本服务日数据未能发布（发布步骤故障")
