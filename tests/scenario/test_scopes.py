"""The scenario's scopes (scenario/province.py, issue 21): `taiyuan` writes the very bytes it wrote before scopes
existed, and `shanxi` is the province: eleven cities with their real division codes, about ten Taiyuans of volume
shared out by population, Taiyuan's part byte for byte the Taiyuan scenario, the programme figures Taiyuan's only.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from scenario.generator import Scenario
from scenario.province import CITIES, OTHER_CITIES, CityScenario, Province, scenario_for, seed_rows
from warehouse import reference as ref
from warehouse.settings import DBT_PROJECT_DIR

pytestmark = pytest.mark.unit

# a digest of every file of these nights (relative path and SHA-256 of its content, in path order), computed with
# the generator as committed before scopes existed (5e82f46): the default scope must keep writing exactly these
TAIYUAN_NIGHTS = {
    date(2023, 11, 7): (1735, "de70827d8db04a41208a007ffde5fca72da977e2dc988723cca7df6dda160622"),
    date(2023, 3, 15): (1735, "1433fcb53ffecfb95c298dc96064d46631ddfff27fe0b3d9d603378f8adb0e2f"),
}
DIVISION_CODES = {"140100": "太原市", "140200": "大同市", "140300": "阳泉市", "140400": "长治市", "140500": "晋城市",
                  "140600": "朔州市", "140700": "晋中市", "140800": "运城市", "140900": "忻州市", "141000": "临汾市",
                  "141100": "吕梁市"}


def night_digest(root: Path, files: list[Path]) -> tuple[int, str]:
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(root)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return len(files), h.hexdigest()


@pytest.mark.parametrize("day", sorted(TAIYUAN_NIGHTS))
def test_the_taiyuan_scope_writes_the_same_bytes_as_before_scopes(day, tmp_path):
    scenario = scenario_for("taiyuan")
    assert type(scenario) is Scenario
    night = scenario.write_night(day, tmp_path)
    assert night_digest(tmp_path, night.files) == TAIYUAN_NIGHTS[day]


@pytest.fixture(scope="module")
def province() -> Province:
    p = scenario_for("shanxi")
    assert isinstance(p, Province)
    return p


def test_shanxi_is_eleven_cities_with_their_division_codes(province):
    assert {c.code: c.name for c in CITIES} == DIVISION_CODES
    assert province.cities[0] is province.taiyuan and type(province.taiyuan) is Scenario
    for city in province.cities[1:]:
        assert isinstance(city, CityScenario)
        prefix = city.city.code[:4]
        assert {d.code[:4] for d in city.districts} == {prefix}
        assert {c.district_code for c in city.compounds} <= {d.code for d in city.districts}
        assert all(c.code.startswith(c.community_code) and c.community_code.startswith(c.street_code)
                   and c.street_code.startswith(c.district_code) for c in city.compounds)
        assert {c.district_code[:4] for c in city.canteens} == {prefix}
    # every reporter code once in the province: the landing zone's file names never collide
    assert len({c.code for c in province.canteens}) == len(province.canteens)
    assert len({p.code for p in province.points}) == len(province.points)
    assert len({c.code for c in province.compounds}) == len(province.compounds)


def test_shanxi_volumes_are_about_ten_taiyuans_by_population(province):
    taiyuan = province.taiyuan
    assert 9.5 <= len(province.canteens) / len(taiyuan.canteens) <= 10.5
    assert 9.5 <= len(province.points) / len(taiyuan.points) <= 10.5
    assert 9.5 <= len(province.compounds) / len(taiyuan.compounds) <= 10.5
    assert 13_000 <= len(province.points) <= 15_500
    # by population: a city of twice another's people has about twice its canteens
    by_people = sorted(province.cities[1:], key=lambda c: c.city.population)
    canteens_per_person = [len(c.canteens) / c.city.population for c in by_people]
    assert max(canteens_per_person) / min(canteens_per_person) < 1.05
    assert [len(c.canteens) for c in by_people] == sorted(len(c.canteens) for c in by_people)


def test_a_shanxi_night_has_taiyuan_s_files_byte_for_byte_and_nine_taiyuans_more(province, tmp_path):
    day = date(2023, 11, 7)
    feeds = ("canteens", "assistance")  # the workbooks cost minutes; their Taiyuan bytes are the digest's above
    whole = province.write_night(day, tmp_path / "shanxi", feeds)
    alone = Scenario().write_night(day, tmp_path / "taiyuan", feeds)
    mine = {p.relative_to(tmp_path / "shanxi"): p for p in whole.files}
    theirs = {p.relative_to(tmp_path / "taiyuan"): p for p in alone.files}
    assert set(theirs) <= set(mine)
    assert all(mine[k].read_bytes() == p.read_bytes() for k, p in theirs.items())
    assert 9.5 <= len(mine) / len(theirs) <= 10.5
    assert 120_000 <= len(whole.meals) <= 150_000
    # each case and each diner card is one city's: ids never collide across cities
    assert len({e["service_request_id"] for e in whole.events if e["event"] == "received"}) == sum(
        e["event"] == "received" for e in whole.events)
    cards = {}
    for m in whole.meals:
        assert cards.setdefault(m["diner_card"], m["canteen_code"][:6]) == m["canteen_code"][:6]


def test_the_programme_figures_are_taiyuan_s_only(province):
    day = date(2023, 6, 1)
    others = province.cities[1:]
    # 迎泽区' hot and urgent issues: none elsewhere
    assert not any("issue_flag" in e for city in others for e in city.events(day))
    assert any("issue_flag" in e for e in province.taiyuan.events(day))
    # the programme period's exact totals of matters are Taiyuan's; the others have their own, by population
    taiyuan_cases = sum(province.taiyuan.cases_on(d)[1] for d in _programme_days())
    assert taiyuan_cases == 53169
    for city in others:
        cases = sum(city.cases_on(d)[1] for d in _programme_days())
        assert cases == city.matters == round(53169 * city.scale)
    # the published measures of 小店区 are not replayed anywhere else
    assert Counter(c.measure for c in province.taiyuan.compounds if c.district_code == "140105")["subsidy_transition"] \
        == 150
    assert {d.key for city in others for d in city.districts}.isdisjoint({d.key for d in ref.DISTRICTS})


def _programme_days() -> list[date]:
    from datetime import timedelta

    return [ref.PROGRAMME_START + timedelta(days=i) for i in range((ref.PROGRAMME_END - ref.PROGRAMME_START).days + 1)]


def test_the_seed_rows_name_every_other_city_s_reporter_once(province):
    rows = seed_rows()
    others = province.cities[1:]
    assert {r["canteen_code"] for r in rows["canteens"]} == {c.code for city in others for c in city.canteens}
    assert {r["point_code"] for r in rows["assistance_points"]} == {p.code for city in others for p in city.points}
    assert {r["street_code"] for r in rows["streets"]} == {s for city in others for _, s, _ in city.streets()}
    assert {r["district_code"] for r in rows["districts"]} == {d.code for city in others for d, _, _ in city.streets()}
    placed = {r["community_code"] for r in rows["community_names"]}
    assert {c.community_code for city in others for c in city.compounds} == placed
    assert {r["community_code"] for r in rows["canteens"]} <= placed
    contacts = Counter(r["reporter_code"] for r in rows["reporter_contacts"])
    assert max(contacts.values()) == 1 and len(contacts) == len(rows["streets"]) + len(rows["canteens"]) + len(
        rows["assistance_points"])
    # the same columns as Taiyuan's seeds, and no code Taiyuan's seeds already have
    for name, new in rows.items():
        with (DBT_PROJECT_DIR / "seeds" / f"{name}.csv").open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            existing = list(reader)
        assert list(new[0]) == reader.fieldnames, name
        key = reader.fieldnames[0]
        assert {r[key] for r in existing}.isdisjoint(r[key] for r in new), name
    assert len(OTHER_CITIES) == 10
