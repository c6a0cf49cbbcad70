"""One dbt build over a range of nights (issue 20), and the registry history in any order of builds.

Three nights of the built-in scenario around the registry change of 2023-07-01 (the January transitions
end, the July ones start): 2023-06-30, 2023-07-01, 2023-07-02.

- `in_order`: each night loaded and then built by its own nightly build (`service_date`), as the nightly
  DAG ran them before issue 20.
- `as_range`: the first night built alone, then the other two loaded and built by ONE build of the range
  (`service_date_from` 2023-07-01, `service_date` 2023-07-02: orchestration/steps.build_marts, as gov_publish's
  direct path runs it): a catch-up of pending nights. It must end
  with exactly the tables of the nightly builds, every mart and the registry history.
  Both start from copies of one warehouse in which the first night was loaded and built (`first_night`).

Then an older night is reprocessed after newer ones: a street sends a revised registry file for
2023-06-30 after 2023-07-02 was built, and 2023-06-30 is built again. The history must be the one the
three nights give in order (computed here from the generator's rows, not read back from dbt); with the
dbt snapshot this used to fail its uniqueness test (one duplicate version per changed compound).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path

import pytest

from ingest import loader
from orchestration import steps
from orchestration.dbt_run import dbt_env
from orchestration.publish import publish_candidate
from scenario import writers
from scenario.generator import Night, Scenario
from tests.conftest import clone_database, create_database, drop_database
from tests.dbt.test_dbt_warehouse import digest, query
from tests.support.dbt_cli import declared_marts
from warehouse import conninfo, settings
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

N1, N2, N3 = date(2023, 6, 30), date(2023, 7, 1), date(2023, 7, 2)
M = "marts_candidate"
# the registry attributes a version is made of (snapshots/snap_compound_registry.sql), as the generator names them
ATTRIBUTES = ("name", "community_code", "households", "building_area_m2", "buildings", "property_mode",
              "property_company", "subsidy_start_month", "party_org_type", "party_org_since", "owners_committee",
              "building_heads", "unit_heads", "service_station", "grid_code", "micro_grids", "grid_assistants",
              "party_org_on_grid", "party_positions", "secretary_type", "part_time_members", "party_members",
              "property_party_branch", "party_instructors", "dual_model", "self_funding", "courtyards_merged",
              "micro_positions", "in_service_members")


def build(wh: conninfo.ConnInfo, target: Path, last: date, first: date | None = None) -> dict:
    """`dbt build` of the nights first..last (one night without `first`), as gov_transformer, strict
    reconciliation; returns run_results.json (tests/support/dbt_cli.py, with the range's first day)."""
    variables = {"reconciliation_severity": "error", "service_date": last.isoformat()}
    if first is not None:
        variables["service_date_from"] = first.isoformat()
    cmd = [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(settings.DBT_PROJECT_DIR),
           "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target),
           "--log-path", str(target / "logs"), "--vars", json.dumps(variables)]
    env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    proc = subprocess.run(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    results = json.loads((target / "run_results.json").read_text())
    statuses = {r["status"] for r in results["results"] if not r["unique_id"].startswith("exposure.")}
    assert statuses <= {"success", "pass"}, statuses
    return results


def comparable(wh: conninfo.ConnInfo) -> dict[str, str]:
    """md5 of the ordered rows of every candidate mart and the registry history (test_dbt_warehouse.digest),
    mart_source_freshness without first_loaded_at: the loader's wall clock, which differs between two
    warehouses loaded one after the other (whether a first load was late still counts)."""
    out = digest(wh)
    freshness = f"{M}.mart_source_freshness"
    out[freshness] = query(wh, f"""
        select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as d
        from (select service_date, source, reporter_code, street_code, district_code, expected, received, late,
                     missing, first_loaded_at is null as never_loaded from {freshness}) as x""")[0]["d"]
    return out


def load(wh: conninfo.ConnInfo, landing: Path, day: date) -> None:
    for source in settings.FEEDS:
        results = loader.load_night(wh, landing, source, day)
        assert results and "failed" not in {r.status for r in results}, (source, day)


@pytest.fixture(scope="module")
def scenario_nights(tmp_path_factory) -> tuple[Scenario, Path, dict[date, Night]]:
    landing = tmp_path_factory.mktemp("range_landing")
    scenario = Scenario()
    return scenario, landing, {day: scenario.write_night(day, landing) for day in (N1, N2, N3)}


@pytest.fixture(scope="module")
def first_night(server_url, scenario_nights, tmp_path_factory):
    """The first night loaded and built by its nightly build: where both ways start, so each warehouse below
    is a copy of this one (tests/conftest.clone_database) rather than a second load and build of it."""
    _, landing, _ = scenario_nights
    wh = create_database(server_url, "gov_dbt_first")
    try:
        bootstrap(wh)
        load(wh, landing, N1)
        build(wh, tmp_path_factory.mktemp("first_target"), N1)
        yield wh
    finally:
        drop_database(wh)


@pytest.fixture(scope="module")
def in_order(first_night, scenario_nights, tmp_path_factory):
    """Each night loaded, then built by its own nightly build."""
    _, landing, _ = scenario_nights
    wh = clone_database(first_night, "gov_dbt_nightly")
    try:
        target = tmp_path_factory.mktemp("nightly_target")
        for day in (N2, N3):
            load(wh, landing, day)
            build(wh, target, day)
        yield {"wh": wh, "target": target, "digest": comparable(wh)}
    finally:
        drop_database(wh)


@pytest.fixture(scope="module")
def as_range(first_night, scenario_nights):
    """The first night built alone; the next two loaded, then built by one build of their range."""
    _, landing, _ = scenario_nights
    wh = clone_database(first_night, "gov_dbt_range")
    try:
        publish_candidate(wh)
        load(wh, landing, N2)
        load(wh, landing, N3)
        # the range as gov_publish builds it on the direct path (dbt_run.run_dbt: service_date_from, service_date)
        steps.build_marts(wh, N3.isoformat(), N2.isoformat())
        published = publish_candidate(wh)  # the delta of a build of two nights (audit.mart_changes)
        yield {"wh": wh, "digest": comparable(wh), "published": published}
    finally:
        drop_database(wh)


def test_one_build_of_a_range_equals_the_nightly_builds_of_its_nights(in_order, as_range):
    nightly, ranged = in_order["digest"], as_range["digest"]
    # every mart dbt builds and the registry history; nothing is left out of the comparison
    assert set(nightly) == {f"{M}.{t}" for t in declared_marts()} | {"snapshots.snap_compound_registry"}
    assert ranged == nightly
    # and the range build did build both nights (not only its last one): the city summary has each day
    days = {r["service_date"] for r in query(as_range["wh"], f"select service_date from {M}.mart_city_daily_summary")}
    assert days == {N1, N2, N3}
    registry_days = {r["service_date"] for r in query(
        as_range["wh"], f"select distinct service_date from {M}.mart_property_coverage")}
    assert registry_days == {N1, N2, N3}


def test_publishing_a_range_build_moves_every_night_it_changed(as_range):
    """The publish after a build of two nights moves the keys its merges recorded for both nights: every
    published mart then holds exactly the candidate's rows (orchestration/publish.py)."""
    wh = as_range["wh"]
    assert set(as_range["published"]) == declared_marts()

    def rows(schema: str) -> dict[str, str]:
        return {t: query(wh, f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as d "
                             f"from {schema}.{t} x")[0]["d"] for t in sorted(declared_marts())}

    assert rows("marts") == rows(M)
    days = {r["service_date"] for r in query(wh, "select distinct service_date from marts.mart_city_daily_summary")}
    assert days == {N1, N2, N3}


def expected_history(nights: list[tuple[date, list[dict]]]) -> dict[str, list[tuple]]:
    """compound -> [(valid_from, valid_to, building_heads, property_mode)], SCD2 over the nights in order:
    a version starts on a night whose attributes differ from the compound's previous night."""
    versions: dict[str, list[list]] = {}
    for day, rows in sorted(nights, key=lambda n: n[0]):
        for r in rows:
            attrs = tuple(r.get(a) for a in ATTRIBUTES)
            history = versions.setdefault(r["compound_code"], [])
            if not history or history[-1][4] != attrs:
                start = datetime.combine(day, time())
                if history:
                    history[-1][1] = start
                history.append([start, None, r["building_heads"], r["property_mode"], attrs])
    return {code: [tuple(v[:4]) for v in history] for code, history in versions.items()}


def history(wh: conninfo.ConnInfo) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for r in query(wh, "select compound_code, dbt_valid_from, dbt_valid_to, building_heads, property_mode "
                       "from snapshots.snap_compound_registry order by compound_code, dbt_valid_from"):
        out.setdefault(r["compound_code"], []).append(
            (r["dbt_valid_from"], r["dbt_valid_to"], r["building_heads"], r["property_mode"]))
    return out


def test_reprocessing_an_older_night_after_newer_ones_gives_the_in_order_history(in_order, scenario_nights, tmp_path):
    """A street's revised registry file for 2023-06-30 arrives after 2023-07-02 was built; the night is
    loaded and built again (its own nightly build). The registry history is then the one the three nights
    give in order, and the marts of 2023-06-30 show the revision while those of the later nights do not."""
    _, _, nights = scenario_nights
    wh, target = in_order["wh"], in_order["target"]
    # before: the history of the three nights as sent, in order
    assert history(wh) == expected_history([(d, n.compounds) for d, n in nights.items()])

    # a compound whose registry row did not change between the nights, in a district without published
    # figures (the strict reconciliation checks 小店区' and 迎泽区' building heads on every night built); the
    # street's revision gives it five more building heads on 2023-06-30 only
    rows = [dict(r) for r in nights[N1].compounds]
    after = {r["compound_code"]: r for r in nights[N2].compounds}
    revised = min(r["compound_code"] for r in rows
                  if r["district_code"] not in ("140105", "140106") and r["compound_code"] in after
                  and all(r.get(a) == after[r["compound_code"]].get(a) for a in ATTRIBUTES))
    street = revised[:9]
    for r in rows:
        if r["compound_code"] == revised:
            r["building_heads"] += 5
    revision = tmp_path / "revision"
    folder = revision / "streets" / N1.isoformat()
    folder.mkdir(parents=True)
    wb, ws = writers.street_workbook("小区台账", header=True)
    for r in rows:
        if r["street_code"] == street:
            ws.append(writers.street_row_values(r))
    writers.save_stable(wb, folder / f"{street}.xlsx")
    [result] = loader.load_night(wh, revision, "streets", N1, reporter=street)
    assert result.status == "loaded"

    def party(day: date) -> dict[str, int]:
        return {r["scope_code"]: r["building_heads"] for r in query(
            wh, f"select scope_code, building_heads from {M}.mart_party_coverage where service_date = %s", (day,))}

    later = {day: party(day) for day in (N2, N3)}
    first = party(N1)
    build(wh, target, N1)  # the older night again, after the newer ones

    expected = expected_history([(N1, rows), (N2, nights[N2].compounds), (N3, nights[N3].compounds)])
    got = history(wh)
    assert got == expected
    # the revision is a version of its own: 2023-06-30 only, the night after back to the street's usual row
    assert [v[2] for v in got[revised]] == [v[2] for v in expected[revised]] and len(got[revised]) == 2
    assert {k for k, v in got.items() if len(v) == 2} - {revised}  # the July changes are still there
    # the marts of the older night show it, those of the newer nights are untouched
    assert party(N1) == {k: v + 5 * (k in (revised[:6], street)) for k, v in first.items()}
    assert {day: party(day) for day in (N2, N3)} == later
    current = {r["compound_code"]: r["building_heads"] for r in query(wh, f"select * from {M}.dim_compound")}
    assert current == {r["compound_code"]: r["building_heads"] for r in nights[N3].compounds}
