"""The canteen feed's raw table has one partition per service day and no index (warehouse/sql/bootstrap.sql):
the loader makes the day's partition before a file's load, concurrent loads of one new day both land,
queries on one day read that day's partition only, and a warehouse bootstrapped before the table was
partitioned has its rows moved on the next bootstrap.

Expected counts come from the scenario generator's own records, or from the rows the test inserted.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

import psycopg
import pytest

from ingest import loader
from scenario.generator import Scenario
from scenario.messy import write_volume_csv
from warehouse import conninfo
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)
PARENT = "raw.canteens_meals"


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def fetch(wh: conninfo.ConnInfo, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(wh.conninfo()) as conn:
        return conn.execute(sql, params).fetchall()


def partitions(wh: conninfo.ConnInfo) -> dict[str, int]:
    """Partition name -> rows, read from the partitions themselves."""
    names = [r[0] for r in fetch(wh, """select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid
                                       where i.inhparent = %s::regclass order by 1""", (PARENT,))]
    return {n: fetch(wh, f"select count(*) from raw.{n}")[0][0] for n in names}


def indexes(wh: conninfo.ConnInfo) -> list[str]:
    return [r[0] for r in fetch(wh, "select indexname from pg_indexes where schemaname = 'raw' "
                                    "and tablename like 'canteens_meals%%'")]


def test_each_day_lands_in_its_own_partition_without_an_index(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    days = (DAY, DAY + timedelta(days=1))
    expected = {}
    for day in days:
        expected[day] = len(scenario.write_night(day, tmp_path, feeds=("canteens",)).meals)
    for day in days:
        results = loader.load_night(wh, tmp_path, "canteens", day)
        assert results and {r.status for r in results} == {"loaded"}
        assert sum(r.rows_loaded for r in results) == expected[day]
    assert partitions(wh) == {f"canteens_meals_{d:%Y%m%d}": expected[d] for d in days}
    assert indexes(wh) == []  # a COPY pays for no index entry per row

    # one day's query (the nightly models' filter) plans a scan of that day's partition only
    plan = "\n".join(r[0] for r in fetch(wh, f"explain select count(*) from {PARENT} where _service_date = %s",
                                         (days[1],)))
    assert f"canteens_meals_{days[1]:%Y%m%d}" in plan and f"canteens_meals_{days[0]:%Y%m%d}" not in plan

    # the transformer and the bulk reader see the partitions' rows through the parent
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("set role gov_transformer")
        assert conn.execute(f"select count(*) from {PARENT}").fetchone()[0] == sum(expected.values())


def test_concurrent_loads_of_a_new_day_both_land(fresh_warehouse, scenario, tmp_path):
    """Two canteens' files of a day with no partition yet, loaded at the same moment on two connections
    (two Celery workers): the partition is made once and both files load."""
    wh = fresh_warehouse
    night = scenario.write_night(DAY, tmp_path, feeds=("canteens",))
    paths = loader.landed_files(tmp_path, "canteens", DAY)[:2]
    start = threading.Barrier(len(paths))
    results: dict = {}

    def load(path):
        with loader.connect(wh) as conn:
            start.wait()
            results[path] = loader.load_file(conn, "canteens", DAY, path)

    threads = [threading.Thread(target=load, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {p: r.status for p, r in results.items()} == dict.fromkeys(paths, "loaded")
    assert {p: r.rows_loaded for p, r in results.items()} == {
        p: sum(m["canteen_code"] == p.stem for m in night.meals) for p in paths}
    assert partitions(wh) == {f"canteens_meals_{DAY:%Y%m%d}": sum(r.rows_loaded for r in results.values())}


def test_bootstrap_moves_an_unpartitioned_table_day_by_day(fresh_warehouse):
    """A warehouse from before the partitioning: a plain raw.canteens_meals with its btree index. The next
    bootstrap partitions it and keeps every row in its day; bootstrapping again changes nothing."""
    wh = fresh_warehouse
    per_day = {DAY - timedelta(days=k): 10 + k for k in range(3)}
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        conn.execute("set role gov_owner")
        conn.execute(f"create table raw.legacy (like {PARENT})")
        conn.execute("alter table raw.legacy add column _reporter_code text not null")  # dropped since
        conn.execute(f"drop table {PARENT}")
        conn.execute("alter table raw.legacy rename to canteens_meals")
        conn.execute(f"create index canteens_meals_day_load on {PARENT} (_service_date, _load_id)")
        for day, n in per_day.items():
            conn.execute(f"""insert into {PARENT} (_load_id, _source_file, _row_number, _service_date, _reporter_code,
                                                    record_id, served_at)
                             select 1, 'CT140105001001.csv', k, %s, 'CT140105001001', 'r' || k,
                                    %s::date + interval '12 hours'
                             from generate_series(1, %s) as k""", (day, day, n))
    bootstrap(wh)
    assert fetch(wh, "select relkind from pg_class where oid = %s::regclass", (PARENT,)) == [("p",)]
    moved = {f"canteens_meals_{d:%Y%m%d}": n for d, n in per_day.items()}
    assert partitions(wh) == moved
    assert fetch(wh, f"select _service_date, count(*) from {PARENT} group by 1 order by 1") == sorted(per_day.items())
    assert indexes(wh) == [] and fetch(wh, "select to_regclass('raw.canteens_meals_unpartitioned')") == [(None,)]
    bootstrap(wh)
    assert partitions(wh) == moved


def test_bootstrap_drops_the_old_reporter_column_and_keeps_the_rows(fresh_warehouse, scenario, tmp_path):
    """Raw tables made before 2026-11-26 had `_reporter_code`. The next bootstrap drops it from the three
    tables (the canteen partitions with their parent), keeps every row, and loads go on as before."""
    wh = fresh_warehouse
    canteen = scenario.canteens[0]
    days = (DAY, DAY + timedelta(days=1))
    paths = [tmp_path / "canteens" / d.isoformat() / f"{canteen.code}.csv" for d in days]
    counts = [write_volume_csv(scenario, p, 300, first_day=d, canteen=canteen) for p, d in zip(paths, days, strict=True)]
    with loader.connect(wh) as conn:
        assert loader.load_file(conn, "canteens", days[0], paths[0]).rows_loaded == counts[0]
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        conn.execute("set role gov_owner")
        for table in ("raw.streets_compounds", PARENT, "raw.assistance_case_events"):
            conn.execute(f"alter table {table} add column _reporter_code text")
        conn.execute(f"update {PARENT} set _reporter_code = canteen_code")
    bootstrap(wh)
    assert fetch(wh, """select a.attrelid::regclass::text from pg_attribute a join pg_class c on c.oid = a.attrelid
                        join pg_namespace n on n.oid = c.relnamespace
                        where n.nspname = 'raw' and a.attname = '_reporter_code' and not a.attisdropped""") == []
    assert fetch(wh, f"select count(*) from {PARENT} where canteen_code = %s", (canteen.code,)) == [(counts[0],)]
    bootstrap(wh)  # nothing left to drop: runs as on every night
    with loader.connect(wh) as conn:
        assert loader.load_file(conn, "canteens", days[1], paths[1]).rows_loaded == counts[1]
    assert fetch(wh, f"select _service_date, count(*) from {PARENT} group by 1 order by 1") == list(
        zip(days, counts, strict=True))
