"""Publish O(night) on hand-made candidate marts (a real PostgreSQL): the rows of the keys recorded in
audit.mart_changes since a table's last publish move, nothing else; a change the publish's snapshot did
not see (its build still running) moves with the next publish; a table dbt made anew is copied whole.

Changes are recorded here as dbt_project/macros/publish_delta.sql records them (tests/dbt/
test_publish_delta.py runs the real dbt builds): in the transaction that rewrites the candidate's rows.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from orchestration.publish import publish_candidate

pytestmark = pytest.mark.integration

DAYS = ("2023-11-01", "2023-11-02", "2023-11-03")


def transformer(wh) -> psycopg.Connection:
    conn = psycopg.connect(wh.conninfo())
    conn.execute("set role gov_transformer")
    return conn


def build(wh, conn: psycopg.Connection | None = None, *, day: str, value: int) -> None:
    """A nightly merge of one day into the day-keyed candidate mart: delete + insert, and its changed key."""
    own = conn is None
    conn = conn or transformer(wh)
    conn.execute("delete from marts_candidate.mart_daily where service_date = %s", (day,))
    conn.execute("insert into marts_candidate.mart_daily select %s, s, %s from generate_series(1, 3) s", (day, value))
    conn.execute("insert into audit.mart_changes (model, key_columns, keys) values ('mart_daily', "
                 "array['service_date'], %s)", (json.dumps([{"service_date": day}]),))
    if own:
        conn.commit()
        conn.close()


def create_candidate(wh) -> None:
    with transformer(wh) as conn:
        conn.execute("drop table if exists marts_candidate.mart_daily")
        conn.execute("create table marts_candidate.mart_daily (service_date date, street integer, value integer)")
        for day in DAYS:
            conn.execute("insert into marts_candidate.mart_daily select %s, s, 0 from generate_series(1, 3) s", (day,))


def published(wh) -> dict[str, set[int]]:
    with psycopg.connect(wh.conninfo()) as conn:
        rows = conn.execute("select service_date::text, array_agg(distinct value), count(*) from marts.mart_daily "
                            "group by 1").fetchall()
    return {day: (set(values), n) for day, values, n in rows}


def versions(wh) -> dict[str, set[str]]:
    """Each day's physical row versions in `marts` (a rewritten row gets a new one)."""
    with psycopg.connect(wh.conninfo()) as conn:
        rows = conn.execute("select service_date::text, ctid::text || '/' || xmin::text from marts.mart_daily").fetchall()
    out: dict[str, set[str]] = {}
    for day, version in rows:
        out.setdefault(day, set()).add(version)
    return out


def test_only_the_recorded_days_move_and_an_unseen_build_moves_next_time(fresh_warehouse):
    wh = fresh_warehouse
    create_candidate(wh)
    assert publish_candidate(wh) == ["mart_daily"]  # first publish: a whole copy
    assert published(wh) == {d: ({0}, 3) for d in DAYS}

    before = versions(wh)
    build(wh, day=DAYS[1], value=1)
    build(wh, day=DAYS[2], value=2)  # two builds before one publish (a blocked night in between)
    publish_candidate(wh)
    assert published(wh) == {DAYS[0]: ({0}, 3), DAYS[1]: ({1}, 3), DAYS[2]: ({2}, 3)}
    after = versions(wh)
    assert after[DAYS[0]] == before[DAYS[0]]  # not rewritten
    assert after[DAYS[1]].isdisjoint(before[DAYS[1]]) and after[DAYS[2]].isdisjoint(before[DAYS[2]])

    # a build still running while the publish runs: its change is not in the publish's snapshot, so the
    # publish leaves that day as it was, and the next publish moves it
    running = transformer(wh)
    try:
        build(wh, running, day=DAYS[0], value=5)
        publish_candidate(wh, lock_timeout_s=2, attempts=1)
        assert published(wh)[DAYS[0]] == ({0}, 3)
        running.commit()
    finally:
        running.close()
    publish_candidate(wh)
    assert published(wh) == {DAYS[0]: ({5}, 3), DAYS[1]: ({1}, 3), DAYS[2]: ({2}, 3)}
    with psycopg.connect(wh.conninfo()) as conn:
        # the publish made an index on the key for its deletes, and pruned the changes it covered
        indexed = conn.execute("select count(*) from pg_indexes where schemaname = 'marts' "
                               "and tablename = 'mart_daily' and indexdef like '%(service_date)'").fetchone()[0]
        covered = conn.execute("select count(*) from audit.mart_changes m join audit.publish_state s "
                               "on s.table_name = m.model where m.xact < pg_snapshot_xmin(s.snapshot)").fetchone()[0]
        recorded = conn.execute("select count(*) from audit.mart_changes").fetchone()[0]
    assert indexed == 1
    assert covered == 0 and recorded < 4


def test_a_table_made_anew_is_copied_whole(fresh_warehouse):
    """A full refresh (or a `table` model) makes another candidate table: nothing recorded, every row moves."""
    wh = fresh_warehouse
    create_candidate(wh)
    publish_candidate(wh)
    with transformer(wh) as conn:
        conn.execute("create table marts_candidate.mart_daily_new (like marts_candidate.mart_daily)")
        conn.execute("insert into marts_candidate.mart_daily_new select service_date, street, 9 "
                     "from marts_candidate.mart_daily")
        conn.execute("drop table marts_candidate.mart_daily")
        conn.execute("alter table marts_candidate.mart_daily_new rename to mart_daily")
    publish_candidate(wh)
    assert published(wh) == {d: ({9}, 3) for d in DAYS}
