"""The dbt warehouse the tests of this folder share: two nights of the built-in scenario around a
change in the registry (2023-06-30 -> 2023-07-01), each built by dbt and then published as the nightly
run publishes it; what gov_bi_reader, logged in with its own credentials, reads after each publish.

One session-scoped build serves the mart tests (tests/dbt/test_dbt_warehouse.py) and the grant tests
(tests/dbt/test_dbt_grants.py): the grants are checked on marts that hold a night's rows.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest
from psycopg import sql

from ingest import loader
from orchestration.publish import publish_candidate
from scenario.generator import Night, Scenario
from tests.conftest import create_database, drop_database
from tests.support.dbt_cli import dbt
from warehouse import connections, conninfo, settings

NIGHT1, NIGHT2 = date(2023, 6, 30), date(2023, 7, 1)


def bi_reader_view(wh: conninfo.ConnInfo) -> dict[str, int | str]:
    """Rows gov_bi_reader counts in each table of `marts` (or the error it gets), logged in as itself."""
    with psycopg.connect(wh.conninfo()) as admin:
        tables = [t for (t,) in admin.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1")]
    seen: dict[str, int | str] = {}
    with connections.connect_as(connections.BI_READER, wh, autocommit=True) as conn:
        assert (conn.info.user, conn.execute("select session_user").fetchone()[0]) == ("gov_bi_reader",) * 2
        for table in tables:
            try:
                seen[table] = conn.execute(
                    sql.SQL("select count(*) from {}").format(sql.Identifier("marts", table))).fetchone()[0]
            except psycopg.Error as err:
                seen[table] = type(err).__name__
    return seen


@pytest.fixture(scope="session")
def built(server_url, tmp_path_factory):
    wh = create_database(server_url, "gov_dbt")
    try:
        from warehouse.bootstrap import bootstrap

        bootstrap(wh)
        landing = tmp_path_factory.mktemp("dbt_landing")
        target = tmp_path_factory.mktemp("dbt_target")
        scenario = Scenario()
        nights: dict[date, Night] = {}
        results, published = {}, {}
        for day in (NIGHT1, NIGHT2):
            nights[day] = scenario.write_night(day, landing)
            for source in settings.FEEDS:
                loader.load_night(wh, landing, source, day)
            # the unit tests take fixed inputs: the first build runs (and the tests assert on) every one
            results[day] = dbt(wh, target, "build", day=day, unit_tests=day == NIGHT1)
            published[day] = {"tables": publish_candidate(wh), "bi_reader": bi_reader_view(wh)}
        yield {"wh": wh, "nights": nights, "scenario": scenario, "results": results, "target": target,
               "published": published}
    finally:
        drop_database(wh)
