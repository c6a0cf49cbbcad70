"""A province night (issue 21), built and checked for real: PostgreSQL, the loader, dbt and the GX suites, with
GOV_SCOPE=shanxi (the province's reference seeds beside Taiyuan's). To keep it small, the night holds Taiyuan
and one other city (阳泉市, the smallest: about 0.4 Taiyuans); the other nine cities are in the reference data
but sent nothing, so they show as missing reporters and as city rows of zeros, which must add up as well.

Taiyuan's part is checked against a Taiyuan-scope build of the same night (the deployment as before scopes):
every mart's Taiyuan rows are the same rows. Both warehouses start from one load of Taiyuan's files (the
province's a copy of the Taiyuan one's database before dbt), so what differs is the scope alone.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from ingest import feeds, landing, loader
from orchestration import steps
from scenario.generator import Scenario
from scenario.province import OTHER_CITIES, CityScenario
from tests.conftest import clone_database, create_database, drop_database
from tests.support.dbt_cli import dbt
from warehouse import conninfo, settings
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 7)
YANGQUAN = next(c for c in OTHER_CITIES if c.code == "140300")
CANDIDATE = "marts_candidate"
# the column that places a mart's row in a city, first found wins (canteen and point codes: CT/AP + street)
PLACE_COLUMNS = ("city_code", "scope_code", "district_code", "street_code", "compound_code", "canteen_code",
                 "point_code", "reporter_code")


def _query(wh: conninfo.ConnInfo, sql: str, args: tuple = ()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(sql, args or None).fetchall()


def _forget_reference() -> None:
    """The loader reads the reference data once a process: read it again after GOV_SCOPE changed."""
    landing.known_reporters.cache_clear()
    feeds.known_districts.cache_clear()


@pytest.fixture(scope="module")
def province(server_url, tmp_path_factory):
    taiyuan_wh = create_database(server_url, "gov_province_ty")
    province_wh = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(settings.SCOPE_VAR, "shanxi")
            _forget_reference()
            # the loader knows a province's reporters from the reference seeds in force (ingest.landing)
            assert "CT140302001001" in landing.known_reporters("canteens")
        _forget_reference()
        bootstrap(taiyuan_wh)
        ty_landing = tmp_path_factory.mktemp("province_ty")
        taiyuan_night = Scenario().write_night(DAY, ty_landing)
        for source in settings.FEEDS:
            loader.load_night(taiyuan_wh, ty_landing, source, DAY)
        province_wh = clone_database(taiyuan_wh, "gov_province_sx")
        city = CityScenario(YANGQUAN)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(settings.SCOPE_VAR, "shanxi")
            _forget_reference()
            yq_landing = tmp_path_factory.mktemp("province_yq")
            yq_night = city.write_night(DAY, yq_landing)
            for source in settings.FEEDS:
                loader.load_night(province_wh, yq_landing, source, DAY)
            dbt(province_wh, tmp_path_factory.mktemp("province_sx_target"), "build", day=DAY)
            checks = {"raw": steps.validate_raw(province_wh, DAY.isoformat(), "province_sx"),
                      "marts": steps.validate_marts(province_wh, [DAY.isoformat()], "province_sx")}
        _forget_reference()
        dbt(taiyuan_wh, tmp_path_factory.mktemp("province_ty_target"), "build", day=DAY)
        taiyuan_checks = {"raw": steps.validate_raw(taiyuan_wh, DAY.isoformat(), "province_ty"),
                          "marts": steps.validate_marts(taiyuan_wh, [DAY.isoformat()], "province_ty")}
        yield {"taiyuan": taiyuan_wh, "province": province_wh, "checks": checks, "taiyuan_checks": taiyuan_checks,
               "taiyuan_night": taiyuan_night, "yangquan_night": yq_night, "yangquan": city}
    finally:
        drop_database(taiyuan_wh)
        if province_wh is not None:
            drop_database(province_wh)


def _marts(wh: conninfo.ConnInfo) -> dict[str, list[str]]:
    tables: dict[str, list[str]] = {}
    for r in _query(wh, "select table_name, column_name from information_schema.columns where table_schema = %s "
                        "order by table_name, ordinal_position", (CANDIDATE,)):
        tables.setdefault(r["table_name"], []).append(r["column_name"])
    return tables


def _taiyuan_rows(wh: conninfo.ConnInfo, table: str, columns: list[str]) -> tuple[int, str]:
    """Count and digest of the table's rows placed in Taiyuan (140100); a table no column places, whole."""
    place = next((c for c in PLACE_COLUMNS if c in columns), None)
    where = "true" if place is None or table == "mart_published_figures" else \
        f"coalesce(regexp_replace(t.{place}::text, '^(CT|AP)', ''), '1401') like '1401%'"
    row = _query(wh, f'select count(*) as n, md5(coalesce(string_agg(t::text, chr(10) order by t::text), \'\')) as d '
                     f'from {CANDIDATE}."{table}" as t where {where}')[0]
    return row["n"], row["d"]


def test_taiyuans_rows_of_every_mart_are_the_taiyuan_builds(province):
    taiyuan, shanxi = _marts(province["taiyuan"]), _marts(province["province"])
    assert taiyuan == shanxi  # the same marts, the same columns in both scopes
    different = {t: (_taiyuan_rows(province["taiyuan"], t, c), _taiyuan_rows(province["province"], t, c))
                 for t, c in taiyuan.items()}
    different = {t: v for t, v in different.items() if v[0] != v[1]}
    assert not different
    # and the Taiyuan build is the night the generator wrote
    city = _query(province["taiyuan"], f"select * from {CANDIDATE}.mart_city_daily_summary")
    assert [(r["city_code"], r["canteen_person_times"], r["compounds"]) for r in city] == [
        ("140100", len(province["taiyuan_night"].meals), len(province["taiyuan_night"].compounds))]


def test_every_citys_row_adds_up_its_districts_and_streets(province):
    wh = province["province"]
    city = {r["city_code"]: r for r in _query(wh, f"select * from {CANDIDATE}.mart_city_daily_summary "
                                                  "where service_date = %s", (DAY,))}
    districts = _query(wh, "select distinct left(district_code, 4) || '00' as city from seeds.districts "
                           "union select distinct left(district_code, 4) || '00' from seeds.province_districts")
    assert set(city) == {r["city"] for r in districts} and len(city) == 11
    streets = {r["city"]: r for r in _query(wh, f"""
        select left(street_code, 4) || '00' as city, sum(cases_received) as received, sum(cases_resolved) as resolved,
               sum(overnight_cohort) as cohort, sum(canteen_person_times) as meals, sum(people_served) as people
        from {CANDIDATE}.mart_street_daily_scorecard where service_date = %s group by 1""", (DAY,))}
    registry = {r["city"]: r for r in _query(wh, f"""
        select left(p.scope_code, 4) || '00' as city, sum(p.compounds) as compounds,
               sum(p.compounds_with_property_service) as with_property, sum(q.compounds_with_party_org) as with_party
        from {CANDIDATE}.mart_property_coverage p
        join {CANDIDATE}.mart_party_coverage q using (service_date, scope_level, scope_code)
        where p.scope_level = 'district' and p.service_date = %s group by 1""", (DAY,))}
    for code, c in city.items():
        s = streets.get(code, {"received": 0, "resolved": 0, "cohort": 0, "meals": 0, "people": 0})
        assert (c["cases_received"], c["cases_resolved"], c["overnight_cohort"], c["canteen_person_times"],
                c["people_served"]) == (s["received"], s["resolved"], s["cohort"], s["meals"], s["people"]), code
        r = registry.get(code, {"compounds": 0, "with_property": 0, "with_party": 0})
        assert (c["compounds"], c["compounds_with_property_service"], c["compounds_with_party_org"]) == (
            r["compounds"], r["with_property"], r["with_party"]), code
    # 阳泉's row is the night the generator wrote for it; the nine cities that sent nothing are rows of zeros
    yq = province["yangquan_night"]
    received = [e for e in yq.events if e["event"] == "received"]
    assert (city["140300"]["canteen_person_times"], city["140300"]["compounds"], city["140300"]["cases_received"]) \
        == (len(yq.meals), len(yq.compounds), len(received))
    assert len(yq.meals) > 0 and len(yq.compounds) > 0
    silent = set(city) - {"140100", "140300"}
    assert all(city[c]["compounds"] == city[c]["canteen_person_times"] == 0 for c in silent)
    # each city's beneficiaries row is its own cards: the city rows add up to the diners of both cities
    months = _query(wh, f"select scope_code, person_times from {CANDIDATE}.mart_canteen_beneficiaries "
                        "where scope_level = 'city' order by 1")
    assert [(m["scope_code"], m["person_times"]) for m in months] == [
        ("140100", len(province["taiyuan_night"].meals)), ("140300", len(yq.meals))]


def test_the_checks_pass_as_taiyuans_do(province):
    checks, taiyuan = province["checks"], province["taiyuan_checks"]
    assert checks["marts"]["failed"] == [] and checks["raw"]["failed"] == []
    assert checks["marts"]["checks"] == taiyuan["marts"]["checks"] > 0
    # the other city's rows are known to the checks: no warning that Taiyuan's night does not have
    assert set(checks["raw"]["warnings"]) <= set(taiyuan["raw"]["warnings"])


def test_the_programme_reconciles_as_taiyuans_does(province):
    sql = (f"select figure_key, scope_code, warehouse, matches from {CANDIDATE}.mart_published_figures "
           "order by figure_key, scope_code")
    assert _query(province["province"], sql) == _query(province["taiyuan"], sql)


def test_taiyuans_city_email_reads_taiyuan_only(province):
    """The city email's figures (reports.figures.load_report: trend, streets needing attention, districts side by
    side) for 太原市 in the province deployment are the Taiyuan deployment's, not the eleven cities' sums."""
    from orchestration.publish import publish_candidate
    from reports.figures import Scope, load_report

    city = Scope("city", "140100", "太原市")
    publish_candidate(province["taiyuan"])
    taiyuan = load_report(province["taiyuan"], city, DAY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(settings.SCOPE_VAR, "shanxi")
        publish_candidate(province["province"])
        shanxi = load_report(province["province"], city, DAY)
    assert taiyuan.published and shanxi.published
    assert taiyuan.days[DAY]["canteen_person_times"] == len(province["taiyuan_night"].meals)  # the generator's
    assert (shanxi.days, shanxi.attention, shanxi.districts) == (taiyuan.days, taiyuan.attention, taiyuan.districts)
