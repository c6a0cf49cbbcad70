"""A province deployment's reference data (issue 21): the committed seeds under dbt_project/seeds/province/ are
scenario.province.seed_rows as generated, and GOV_SCOPE=shanxi puts them beside Taiyuan's for everything that
reads reference data (warehouse.reference.seed_rows: the checks, the emails; dbt: macros/reference.sql), while
the default scope reads Taiyuan's seeds alone, as before.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from expectations import suites
from reports import night
from scenario.province import CITIES, seed_rows
from warehouse import reference as ref
from warehouse import settings

pytestmark = pytest.mark.unit

KEYS = {"districts": "district_code", "streets": "street_code", "community_names": "community_code",
        "canteens": "canteen_code", "assistance_points": "point_code", "reporter_contacts": "reporter_code"}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_committed_province_seeds_are_the_generators_rows():
    generated = seed_rows()
    assert set(generated) == set(ref.PROVINCE_SEEDS) == set(KEYS)
    for name, rows in generated.items():
        path = ref.PROVINCE_SEEDS_DIR / f"province_{name}.csv"
        committed = _read(path)
        # the generator's rows as text, in its order (regenerate: python -m scenario.province)
        assert committed == [{k: str(v) for k, v in r.items()} for r in rows], path.name
        # same columns, in the same order, as Taiyuan's seed: dbt's union (macros/reference.sql) is by position
        assert list(committed[0]) == list(_read(ref.SEEDS_DIR / f"{name}.csv")[0]), path.name


def test_province_codes_are_unique_and_none_is_taiyuans():
    for name, key in KEYS.items():
        province = [r[key] for r in _read(ref.PROVINCE_SEEDS_DIR / f"province_{name}.csv")]
        taiyuan = {r[key] for r in _read(ref.SEEDS_DIR / f"{name}.csv")}
        assert len(province) == len(set(province)), name
        assert not taiyuan & set(province), name
    districts = {r["district_code"] for r in _read(ref.PROVINCE_SEEDS_DIR / "province_districts.csv")}
    assert {ref.city_of(d) for d in districts} == {c.code for c in CITIES[1:]}
    assert districts == {code for c in CITIES[1:] for code, _ in c.districts}


def test_scope_setting(monkeypatch):
    monkeypatch.delenv(settings.SCOPE_VAR, raising=False)
    assert settings.scope() == "taiyuan"
    monkeypatch.setenv(settings.SCOPE_VAR, " Shanxi ")
    assert settings.scope() == "shanxi"
    monkeypatch.setenv(settings.SCOPE_VAR, "jinzhong")
    with pytest.raises(ValueError, match="GOV_SCOPE"):
        settings.scope()


def test_reference_in_force_follows_the_scope(monkeypatch):
    monkeypatch.delenv(settings.SCOPE_VAR, raising=False)
    assert ref.seed_files("streets") == [ref.SEEDS_DIR / "streets.csv"]  # Taiyuan: the committed seed alone
    taiyuan_streets = {code for _, code, _ in ref.all_streets()}
    assert {r["street_code"] for r in ref.seed_rows("streets")} == taiyuan_streets
    assert set(suites.reference_codes("streets", "street_code")) == taiyuan_streets
    assert suites.cities() == ("140100",)
    assert ref.seed_files("officials") == ref.seed_files("officials", "shanxi")  # the city's officials only

    monkeypatch.setenv(settings.SCOPE_VAR, "shanxi")
    expected = taiyuan_streets | {r["street_code"] for r in seed_rows()["streets"]}
    assert {r["street_code"] for r in ref.seed_rows("streets")} == expected
    assert set(suites.reference_codes("streets", "street_code")) == expected
    assert suites.cities() == tuple(sorted(c.code for c in CITIES))
    points = {r["point_code"] for r in night.seed_rows("assistance_points")}
    assert {p["point_code"] for p in seed_rows()["assistance_points"]} < points


def test_dbt_enables_the_province_seeds_by_the_same_variable():
    project = (settings.DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8")
    macro = (settings.DBT_PROJECT_DIR / "macros" / "reference.sql").read_text(encoding="utf-8")
    condition = "env_var('GOV_SCOPE', 'taiyuan') | trim | lower == 'shanxi'"
    assert condition in project and condition in macro
