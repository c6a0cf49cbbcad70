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
