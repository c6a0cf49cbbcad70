"""The built-in Taiyuan scenario is calibrated to ../shared/seed-facts.yaml and deterministic."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from scenario.generator import PROGRAMME_END, PROGRAMME_START, Scenario
from warehouse.settings import DBT_PROJECT_DIR

pytestmark = pytest.mark.unit


def _published_figures() -> dict:
    """The project's copy of ../shared/seed-facts.yaml (dbt seed), in the yaml's shape."""
    codes = {"140105": "xiaodian", "140106": "yingze"}
    facts: dict = {"city": {}, "districts": {key: {"division_code": code} for code, key in codes.items()}}
    with (DBT_PROJECT_DIR / "seeds" / "published_figures.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            value = float(row["value"]) if "." in row["value"] else int(row["value"])
            target = facts["city"] if row["scope_level"] == "city" else facts["districts"].get(codes.get(row["scope_code"]))
            if target is None:
                continue
            group, _, key = row["figure_key"].rpartition(".")
            (target.setdefault(group, {}) if group else target)[key] = value
    return facts


FACTS = _published_figures()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def test_registry_calibrated_to_published_figures(scenario):
    xiaodian, yingze = FACTS["districts"]["xiaodian"], FACTS["districts"]["yingze"]
    by_district = Counter(c.district_code for c in scenario.compounds)
    assert by_district[xiaodian["division_code"]] == xiaodian["compounds"]
    assert by_district[yingze["division_code"]] == yingze["compounds"]
    measures = Counter(c.measure for c in scenario.compounds if c.district_code == xiaodian["division_code"])
    assert {k: measures[k] for k in xiaodian["four_measures"]} == xiaodian["four_measures"]
    assert sum(measures[k] for k in xiaodian["four_measures"]) == xiaodian["compounds_without_property_service_before"]
    yingze_compounds = [c for c in scenario.compounds if c.district_code == yingze["division_code"]]
    assert all(c.party_org_type != "none" for c in yingze_compounds)
    assert len({c.community_code for c in yingze_compounds}) == yingze["communities"]
    xd = [c for c in scenario.compounds if c.district_code == xiaodian["division_code"]]
    assert sum(c.building_heads for c in xd) == xiaodian["building_heads"]
    assert sum(c.unit_heads for c in xd) == xiaodian["unit_heads"]
    assert sum(c.service_station for c in xd) == xiaodian["party_service_stations"]
    # 0.5 yuan/m2/month for 6 months over the transition compounds' area = the published 3.3 million
    area = sum(c.building_area_m2 for c in xd if c.measure == "subsidy_transition")
    assert area * xiaodian["subsidy_yuan_per_m2_month"] * xiaodian["subsidy_months"] == xiaodian["subsidy_spent_yuan"]


def test_reporters_calibrated(scenario):
    city = FACTS["city"]
    assert len(scenario.canteens) == city["canteens_with_assistance_desk"]
    assert len(scenario.points) == city["assistance_points"]
    assert sum(p.canteen_code is not None for p in scenario.points) == city["canteens_with_assistance_desk"]
    assert len({p.code for p in scenario.points}) == city["assistance_points"]


def test_programme_totals_are_exact(scenario):
    days = (PROGRAMME_END - PROGRAMME_START).days + 1
    counts = [Scenario.cases_on(PROGRAMME_START + timedelta(days=i)) for i in range(days)]
    assert sum(n for _, n in counts) == FACTS["city"]["assistance_matters_handled"]
    person_times = sum(Scenario.people_served(k) for k in range(FACTS["city"]["assistance_matters_handled"]))
    assert person_times == FACTS["city"]["assistance_person_times"]


def test_canteen_volume_about_published_daily_figure(scenario):
    meals = scenario.meals(date(2023, 11, 7))
    published = FACTS["city"]["canteen_person_times_per_day"]
    assert abs(len(meals) - published) < 0.05 * published


def test_generation_is_byte_identical(scenario, tmp_path):
    day = date(2023, 11, 7)
    first = scenario.write_night(day, tmp_path / "a")
    second = Scenario().write_night(day, tmp_path / "b")

    def digests(root: Path, files: list[Path]) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digests(tmp_path / "a", first.files) == digests(tmp_path / "b", second.files)


def _published(key: str, scope: str) -> float:
    with (DBT_PROJECT_DIR / "seeds" / "published_figures.csv").open(encoding="utf-8") as f:
        return next(float(r["value"]) for r in csv.DictReader(f) if (r["figure_key"], r["scope_code"]) == (key, scope))


def test_registry_optional_columns_calibrated_to_published_figures(scenario):
    """Issue 23: the grid, party-organisation and local-arrangement columns add up to the published figures
    on the registry of any night (here the programme's last)."""
    rows = scenario.registry_rows(PROGRAMME_END)
    xd = [r for r in rows if r["district_code"] == "140105"]
    yz = [r for r in rows if r["district_code"] == "140106"]

    def total(rs, key):
        return sum(r.get(key) or 0 for r in rs)

    assert total(xd, "micro_grids") == _published("micro_grids", "140105")
    assert total(xd, "grid_assistants") == _published("grid_assistants", "140105")
    assert total(xd, "dual_model") == _published("xinyuan_model_replicated_to", "140105")
    assert all(r["grid_code"] and r["grid_code"].startswith(r["community_code"]) for r in rows)
    for key, figure in [("party_positions", "party_positions"), ("party_members", "party_members_registered"),
                        ("part_time_members", "part_time_committee_members"),
                        ("party_instructors", "property_party_instructors"),
                        ("property_party_branch", "property_company_party_branches"),
                        ("self_funding", "self_funding_no_property_compounds")]:
        assert total(yz, key) == _published(figure, "140106"), key
    secretaries = Counter(r["secretary_type"] for r in yz)
    assert secretaries["resident_member"] == _published("secretaries_resident_members", "140106")
    assert secretaries["community_cadre"] == _published("secretaries_community_cadres", "140106")
    with_org = [r for r in yz if r["party_org_type"] != "none"]
    assert round(sum(r["party_org_on_grid"] for r in with_org) / len(with_org), 2) == _published(
        "party_org_grid_alignment_rate", "140106")
    # party branches sit where a property company serves; self-funding where none does
    assert all(r["property_company"] for r in yz if r["property_party_branch"] or r["party_instructors"])
    assert not any(r["property_company"] for r in yz if r["self_funding"])
    miaoqian = [r for r in rows if r["street_code"] == "140106003"]
    assert total(miaoqian, "courtyards_merged") == _published("streets.miaoqian.courtyards_before", "miaoqian")
    assert sum(bool(r.get("courtyards_merged")) for r in miaoqian) == _published(
        "streets.miaoqian.compounds_after", "miaoqian")
    assert total([r for r in rows if r["street_code"] == "140106001"], "micro_positions") == _published(
        "streets.liuxiang.micro_positions", "liuxiang")
    assert total([r for r in rows if r["street_code"] == "140106002"], "in_service_members") == _published(
        "streets.wenmiao.in_service_members", "wenmiao")
    assert scenario.registry_rows(date(2023, 3, 1))[0]["grid_code"] == rows[0]["grid_code"]  # static attributes


def test_subsidy_transitions_over_by_the_programme_end_are_all_on_market_service(scenario):
    xd = [c for c in scenario.compounds if c.district_code == "140105" and c.subsidy_start]
    ended = [c for c in xd if c.subsidy_start <= date(2023, 4, 1)]  # six months over by 2023-10-01
    assert len(ended) == _published("subsidy_transitions_ending_soon_all_marketised", "140105")
    assert all(c.mode_on(PROGRAMME_END) == "market" for c in ended)
    assert all(c.mode_on(PROGRAMME_END) == "subsidy_transition" for c in xd if c not in ended)


def test_hot_and_urgent_issues_over_the_programme_period(scenario):
    """迎泽区' 1,340 hot and 2,930 urgent issues, handled by 852 compound party organisations at their compounds."""
    flags: Counter = Counter()
    orgs, districts = set(), set()
    for i in range((PROGRAMME_END - PROGRAMME_START).days + 1):
        day = PROGRAMME_START + timedelta(days=i)
        first, n = Scenario.cases_on(day)
        for j in range(n):
            if Scenario.issue_of(first + j) is None:
                continue
            received = scenario.case_lifecycle(day, j)[0]
            flags[received["issue_flag"]] += 1
            orgs.add(received["party_org_code"])
            assert received["party_org_code"] == received["compound_code"] and received["handler"] == "党员"
            districts |= {received["compound_code"][:6], received["point_code"][2:8]}
    assert flags == {"热点问题": _published("hot_issues_solved", "140106"),
                     "急难愁盼": _published("urgent_issues_solved", "140106")}
    assert len(orgs) == _published("compound_party_orgs_solving_issues", "140106")
    assert districts == {"140106"}


def test_canteen_beneficiaries_about_the_published_figure(scenario):
    """Each canteen's diners hold cards of its own: over the programme period a canteen sees its whole pool,
    and the city's pools together are about the published 235,000 beneficiaries."""
    canteen, other = scenario.canteens[0], scenario.canteens[1]
    days = [PROGRAMME_START + timedelta(days=i) for i in range((PROGRAMME_END - PROGRAMME_START).days + 1)]
    cards = {m["diner_card"] for day in days for m in scenario.canteen_meals(canteen, day)}
    assert not cards & {m["diner_card"] for m in scenario.canteen_meals(other, PROGRAMME_END)}
    assert len(cards) == 750
    published = _published("canteen_beneficiaries", "140100")
    assert abs(len(scenario.canteens) * len(cards) - published) <= 0.05 * published
