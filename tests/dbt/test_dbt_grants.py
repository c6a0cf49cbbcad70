"""Grants: the BI role reads the marts and nothing else, and writes nowhere (DESIGN.md section 6).

dbt builds two nights of the scenario (logged in as gov_transformer, see profiles.yml) into
`marts_candidate`, the nightly run's publish step (as gov_publisher) copies each into `marts`
(tests/dbt/conftest.py); a connection logged in as gov_bi_reader with its own credentials then tries
everything. The marts are the ones the project declares, checked against dbt's manifest and
PostgreSQL's catalogue; the relations BI must not read are every other table and view there is.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors, sql

from tests.dbt.conftest import NIGHT1, NIGHT2
from tests.support.dbt_cli import declared_marts
from warehouse import connections, conninfo

pytestmark = pytest.mark.integration

MARTS = sorted(declared_marts())
# named here as well, so that a catalogue query that found nothing could not pass the test
FORBIDDEN = ("raw.streets_compounds", "raw.canteens_meals", "raw.assistance_case_events", "audit.load_ledger",
             "audit.rejected_rows", "audit.dq_results", "audit.publish_log", "audit.summary_sends",
             "staging.stg_streets__compounds", "staging.stg_canteens__meals", "staging.stg_assistance__case_events",
             "intermediate.int_assistance__cases", "snapshots.snap_compound_registry", "seeds.officials",
             "seeds.published_figures", "marts_candidate.mart_city_daily_summary", "marts_candidate.dim_compound",
             "marts_candidate.mart_source_freshness")


@pytest.fixture(scope="module")
def warehouse(built) -> conninfo.ConnInfo:
    """The shared dbt warehouse, published twice (once per night)."""
    return built["wh"]


def admin_rows(wh: conninfo.ConnInfo, query: str, params=()) -> list[tuple]:
    with psycopg.connect(wh.conninfo()) as conn:
        return conn.execute(query, params).fetchall()


def as_bi_reader(wh: conninfo.ConnInfo, sql: str) -> None:
    with connections.connect_as(connections.BI_READER, wh, autocommit=True) as conn:
        assert conn.info.user == "gov_bi_reader"
        conn.execute(sql)


def test_marts_are_owned_by_the_publisher_and_candidates_by_the_transformer(warehouse):
    with psycopg.connect(warehouse.conninfo()) as conn:
        owners = conn.execute("select schemaname, tablename, tableowner from pg_tables "
                              "where schemaname in ('marts', 'marts_candidate')").fetchall()
    published = {t: o for s, t, o in owners if s == "marts"}
    assert set(published) == set(MARTS)
    assert set(published.values()) == {"gov_publisher"}
    assert {o for s, _, o in owners if s == "marts_candidate"} == {"gov_transformer"}


def test_the_declared_marts_are_the_manifest_s_and_the_catalogue_s(built):
    manifest = json.loads((built["target"] / "manifest.json").read_text())
    models = {n["name"] for n in manifest["nodes"].values()
              if n["resource_type"] == "model" and n["original_file_path"].startswith("models/marts/")}
    # DESIGN.md section 7's 12 and those added since (issue 23: grid coverage, party organisations, canteen
    # beneficiaries), one model file each
    assert len(MARTS) >= 15 and set(MARTS) == models
    for day in (NIGHT1, NIGHT2):
        assert sorted(built["published"][day]["tables"]) == MARTS, day
    catalogue = {t for (t,) in admin_rows(built["wh"], "select table_name from information_schema.tables "
                                                      "where table_schema = 'marts'")}
    assert catalogue == set(MARTS)


@pytest.mark.parametrize("day", [NIGHT1, NIGHT2])
def test_bi_reader_reads_every_row_of_every_mart_after_each_publish(built, day):
    """After the first publish (which creates the marts) and the second (which replaces their rows),
    gov_bi_reader counts every mart, none empty; after the second, as many rows as the administrator."""
    seen = built["published"][day]["bi_reader"]
    assert set(seen) == set(MARTS)
    assert {t: n for t, n in seen.items() if not isinstance(n, int) or n == 0} == {}, day
    if day == NIGHT2:
        admin = {t: admin_rows(built["wh"], sql.SQL("select count(*) from {}").format(
            sql.Identifier("marts", t)))[0][0] for t in MARTS}
        assert seen == admin


@pytest.mark.parametrize("relation", FORBIDDEN)
def test_bi_reader_cannot_read_outside_marts(warehouse, relation):
    with pytest.raises(errors.InsufficientPrivilege):
        as_bi_reader(warehouse, f"select * from {relation} limit 1")


def test_bi_reader_can_read_no_relation_of_the_catalogue_outside_marts(warehouse):
    relations = admin_rows(warehouse, """
        select table_schema, table_name from information_schema.tables
        where table_schema not in ('marts', 'pg_catalog', 'information_schema') order by 1, 2""")
    names = {f"{s}.{t}" for s, t in relations}
    assert set(FORBIDDEN) <= names
    readable = []
    with connections.connect_as(connections.BI_READER, warehouse, autocommit=True) as conn:
        assert conn.info.user == "gov_bi_reader"
        for schema, table in relations:
            try:
                conn.execute(sql.SQL("select 1 from {} limit 1").format(sql.Identifier(schema, table)))
                readable.append(f"{schema}.{table}")
            except errors.InsufficientPrivilege:
                pass
    assert readable == []


@pytest.mark.parametrize("statement", [
    "insert into marts.dim_district (district_code, district_name) values ('999999', 'x')",
    "update marts.mart_city_daily_summary set compounds = 0",
    "delete from marts.fct_assistance_case",
    "truncate marts.fct_canteen_day",
    "create table marts.bi_scratch (x int)",
    "create view marts.bi_view as select 1 as x",
    "create table public.bi_scratch (x int)",
    "create table raw.bi_scratch (x int)",
    "create table marts_candidate.bi_scratch (x int)",
    "create schema bi_scratch",
    "alter table marts.dim_street add column x int",
    "drop table marts.dim_compound",
    "create temporary table bi_scratch (x int)",
])
def test_bi_reader_cannot_write_anywhere(warehouse, statement):
    with pytest.raises(errors.InsufficientPrivilege):
        as_bi_reader(warehouse, statement)
