"""Grants: the BI role reads the marts and nothing else, and writes nowhere (DESIGN.md section 6).

dbt builds the project on an empty, bootstrapped warehouse (logged in as gov_transformer, see
profiles.yml) into `marts_candidate`, the nightly run's publish step (as gov_publisher) copies it into
`marts`; a connection logged in as gov_bi_reader then tries everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from orchestration.dbt_run import dbt_env
from warehouse import connections, conninfo, settings

pytestmark = pytest.mark.integration

MARTS = ("dim_district", "dim_street", "dim_community", "dim_compound", "fct_assistance_case", "fct_canteen_day",
         "mart_property_coverage", "mart_party_coverage", "mart_subsidy_ledger", "mart_street_daily_scorecard",
         "mart_city_daily_summary")
FORBIDDEN = ("raw.streets_compounds", "raw.canteens_meals", "raw.assistance_case_events", "audit.load_ledger",
             "audit.rejected_rows", "audit.dq_results", "staging.stg_streets__compounds",
             "staging.stg_canteens__meals", "staging.stg_assistance__case_events", "intermediate.int_assistance__cases",
             "snapshots.snap_compound_registry", "seeds.officials", "seeds.published_figures",
             "marts_candidate.mart_city_daily_summary", "marts_candidate.dim_compound")


@pytest.fixture(scope="module")
def warehouse(server_url, tmp_path_factory):
    import uuid

    from warehouse.bootstrap import bootstrap

    admin = conninfo.parse_url(server_url)
    wh = admin.with_db(f"gov_grants_{uuid.uuid4().hex[:10]}")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{wh.dbname}"')
    try:
        bootstrap(wh)
        target = tmp_path_factory.mktemp("dbt_grants")
        cmd = [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(settings.DBT_PROJECT_DIR),
               "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target),
               "--log-path", str(target / "logs"), "--vars", json.dumps({"service_date": "2023-11-07"})]
        env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
        proc = subprocess.run(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        from orchestration.publish import publish_candidate

        publish_candidate(wh)
        yield wh
    finally:
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{wh.dbname}" with (force)')


def as_bi_reader(wh: conninfo.ConnInfo, sql: str) -> None:
    with connections.connect_as(connections.BI_READER, wh, autocommit=True) as conn:
        assert conn.info.user == "gov_bi_reader"
        conn.execute(sql)


def test_marts_are_owned_by_the_publisher_and_candidates_by_the_transformer(warehouse):
    with psycopg.connect(warehouse.conninfo()) as conn:
        owners = conn.execute("select schemaname, tablename, tableowner from pg_tables "
                              "where schemaname in ('marts', 'marts_candidate')").fetchall()
    published = {t: o for s, t, o in owners if s == "marts"}
    assert set(MARTS) <= set(published)
    assert set(published.values()) == {"gov_publisher"}
    assert {o for s, _, o in owners if s == "marts_candidate"} == {"gov_transformer"}


@pytest.mark.parametrize("table", MARTS)
def test_bi_reader_selects_from_every_mart(warehouse, table):
    as_bi_reader(warehouse, f"select * from marts.{table} limit 1")


@pytest.mark.parametrize("relation", FORBIDDEN)
def test_bi_reader_cannot_read_outside_marts(warehouse, relation):
    with pytest.raises(errors.InsufficientPrivilege):
        as_bi_reader(warehouse, f"select * from {relation} limit 1")


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
