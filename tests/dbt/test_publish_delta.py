"""Publish O(night) on real dbt builds: each publish moves only the keys the night's incremental merges
rewrote (audit.mart_changes, dbt_project/macros/publish_delta.sql), and what BI reads equals a whole copy of
the candidate marts after every publish.

The two nights of tests/dbt/conftest.py are the start: a copy of that database is published (whole, if an
earlier test rebuilt the shared candidate), then gets a revised file for the second night, that night
reprocessed, then a third night built, and one publish for both builds (as after a blocked night): the
changes of two builds in one publish, checked equal to a whole copy.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import psycopg
import pytest
from psycopg import sql

from ingest import loader
from orchestration.publish import publish_candidate
from tests.conftest import drop_database
from tests.dbt.conftest import NIGHT1, NIGHT2
from tests.support.dbt_cli import dbt
from warehouse import conninfo, settings

pytestmark = pytest.mark.integration

NIGHT3 = NIGHT2 + timedelta(days=1)


def differences(wh: conninfo.ConnInfo) -> dict[str, tuple[int, int]]:
    """Per mart: rows in `marts` and not in the candidate, and the other way round (as multisets),
    for the tables that differ; a table on one side only counts as all its rows."""
    with psycopg.connect(wh.conninfo()) as conn:
        tables = {s: {t for (t,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = %s", (s,))}
            for s in ("marts", "marts_candidate")}
        out = {}
        for t in tables["marts"] | tables["marts_candidate"]:
            if t not in tables["marts"] or t not in tables["marts_candidate"]:
                out[t] = (-1, -1)
                continue
            m, c = sql.Identifier("marts", t), sql.Identifier("marts_candidate", t)
            extra = conn.execute(sql.SQL("select count(*) from (select * from {} except all select * from {}) x")
                                 .format(m, c)).fetchone()[0]
            missing = conn.execute(sql.SQL("select count(*) from (select * from {} except all select * from {}) x")
                                   .format(c, m)).fetchone()[0]
            if extra or missing:
                out[t] = (extra, missing)
    return out


def row_versions(wh: conninfo.ConnInfo, table: str, day: date) -> set[str]:
    """The physical versions (ctid, xmin) of a published mart's rows of one day: a row rewritten gets new ones."""
    with psycopg.connect(wh.conninfo()) as conn:
        return {f"{ctid}/{xmin}" for ctid, xmin in conn.execute(
            sql.SQL("select ctid::text, xmin::text from {} where service_date = %s").format(
                sql.Identifier("marts", table)), (day,))}


def clone(wh: conninfo.ConnInfo, prefix: str) -> conninfo.ConnInfo:
    """A copy of the warehouse database (CREATE DATABASE ... TEMPLATE): the shared build stays as it is."""
    copy = wh.with_db(f"{prefix}_{wh.dbname}"[:63])
    with psycopg.connect(wh.with_db("postgres").conninfo(), autocommit=True) as admin:
        admin.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(copy.dbname), sql.Identifier(wh.dbname)))
    return copy


def test_a_revised_and_reprocessed_night_and_the_next_publish_what_a_whole_copy_would(built, tmp_path):
    """Night 2's canteen file revised and the night reprocessed, then night 3 built, and one publish for
    both builds (as after a blocked night): BI reads what a whole copy would give, and night 1's rows of
    the day-keyed marts were not rewritten."""
    wh = clone(built["wh"], "delta")
    try:
        # the shared build as published (tests before this one may have rebuilt its candidate, e.g. a full
        # refresh: another candidate table, which this publish copies whole)
        publish_candidate(wh)
        assert differences(wh) == {}
        # the landing folder of the shared build, copied: the revision is made in the copy
        landing = tmp_path / "landing"
        shutil.copytree(built["nights"][NIGHT1].files[0].parents[2], landing)
        meals = sorted((landing / "canteens" / NIGHT2.isoformat()).glob("*.csv"))[0]
        lines = meals.read_bytes().splitlines(keepends=True)
        assert len(lines) > 3
        meals.write_bytes(b"".join(lines[:-2]))  # the canteen sends its file again, two meals fewer
        night1_rows = {t: row_versions(wh, t, NIGHT1) for t in ("fct_canteen_day", "mart_source_freshness")}
        assert all(night1_rows.values())

        results = loader.load_night(wh, landing, "canteens", NIGHT2)
        assert [r.status for r in results if r.path.name == meals.name] == ["loaded"]
        dbt(wh, tmp_path / "target", "build", day=NIGHT2)
        night3 = built["scenario"].write_night(NIGHT3, landing)
        for source in settings.FEEDS:
            loader.load_night(wh, landing, source, NIGHT3)
        dbt(wh, tmp_path / "target", "build", day=NIGHT3)
        assert set(differences(wh)) >= {"fct_canteen_day", "mart_city_daily_summary", "mart_source_freshness"}

        publish_candidate(wh)
        assert differences(wh) == {}
        with psycopg.connect(wh.conninfo()) as conn:
            person_times = dict(conn.execute("select service_date, sum(person_times) from marts.fct_canteen_day "
                                             "group by 1").fetchall())
            # covered changes are pruned: none the last publish's snapshot saw before its oldest transaction
            covered = conn.execute("select count(*) from audit.mart_changes m join audit.publish_state s "
                                   "on s.table_name = m.model where m.xact < pg_snapshot_xmin(s.snapshot)"
                                   ).fetchone()[0]
        nights = built["nights"]
        assert person_times == {NIGHT1: len(nights[NIGHT1].meals), NIGHT2: len(nights[NIGHT2].meals) - 2,
                                NIGHT3: len(night3.meals)}
        assert covered == 0
        # night 1's rows were not rewritten: the publish moved the nights the builds changed
        assert {t: row_versions(wh, t, NIGHT1) for t in night1_rows} == night1_rows
    finally:
        drop_database(wh)
