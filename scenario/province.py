"""The scenario's scopes (issue 21): `taiyuan`, the built-in city calibrated to the published figures, and
`shanxi`, the province that adopts the programme: its eleven prefecture-level cities with their real division
codes (140100 太原 … 141100 吕梁) and real districts, each city's volumes scaled by its population.

Taiyuan's part of a Shanxi night is the Taiyuan scenario's night, byte for byte (the same generator, the same
seed). The ten other cities come from the same code with their own divisions (their districts' real codes and
names; streets, communities and compounds numbered within them, as in Taiyuan), their own random streams and
their own volumes: compounds, communities, streets, canteens, assistance points and matters are Taiyuan's
scaled by the city's population, the ten cities together about ten Taiyuans (issue 21: ≈19,000 files,
≈140,000 canteen rows, ≈15,000 points a night). The programme's published figures (小店区' measures, 迎泽区'
party organisations and issues, the programme period's exact totals) are Taiyuan's alone: elsewhere the
generator's plausible defaults apply.

`seed_rows` gives the reference rows (dbt_project/seeds) the other cities' reporters need to be loaded and
placed: the loader reads only files named after a reporter of those seeds (ingest/landing.py).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from scenario.generator import (
    ASSISTANCE_POINTS,
    CANTEENS,
    DEFAULT_SEED,
    PROGRAMME_DAYS,
    PROGRAMME_MATTERS,
    PROGRAMME_PERSON_TIMES,
    Canteen,
    Compound,
    Night,
    Point,
    Scenario,
    spread,
)
from warehouse import reference as ref
from warehouse.settings import FEEDS

SCOPES = ("taiyuan", "shanxi")
DEFAULT_SCOPE = "taiyuan"


@dataclass(frozen=True)
class City:
    code: str
    name: str
    population: int  # resident population, 2020 census (ten thousands)
    districts: tuple[tuple[str, str], ...]  # (code, name) of its districts and counties (GB/T 2260)


TAIYUAN = City(ref.CITY_CODE, ref.CITY_NAME, 530, tuple((d.code, d.name) for d in ref.DISTRICTS))
OTHER_CITIES = (
    City("140200", "大同市", 311, (("140212", "新荣区"), ("140213", "平城区"), ("140214", "云冈区"), ("140215", "云州区"),
                                ("140221", "阳高县"), ("140222", "天镇县"), ("140223", "广灵县"), ("140224", "灵丘县"),
                                ("140225", "浑源县"), ("140226", "左云县"))),
    City("140300", "阳泉市", 132, (("140302", "城区"), ("140303", "矿区"), ("140311", "郊区"), ("140321", "平定县"),
                                ("140322", "盂县"))),
    City("140400", "长治市", 318, (("140403", "潞州区"), ("140404", "上党区"), ("140405", "屯留区"), ("140406", "潞城区"),
                                ("140423", "襄垣县"), ("140425", "平顺县"), ("140426", "黎城县"), ("140427", "壶关县"),
                                ("140428", "长子县"), ("140429", "武乡县"), ("140430", "沁县"), ("140431", "沁源县"))),
    City("140500", "晋城市", 219, (("140502", "城区"), ("140521", "沁水县"), ("140522", "阳城县"), ("140524", "陵川县"),
                                ("140525", "泽州县"), ("140581", "高平市"))),
    City("140600", "朔州市", 159, (("140602", "朔城区"), ("140603", "平鲁区"), ("140621", "山阴县"), ("140622", "应县"),
                                ("140623", "右玉县"), ("140681", "怀仁市"))),
    City("140700", "晋中市", 338, (("140702", "榆次区"), ("140703", "太谷区"), ("140721", "榆社县"), ("140722", "左权县"),
                                ("140723", "和顺县"), ("140724", "昔阳县"), ("140725", "寿阳县"), ("140727", "祁县"),
                                ("140728", "平遥县"), ("140729", "灵石县"), ("140781", "介休市"))),
    City("140800", "运城市", 477, (("140802", "盐湖区"), ("140821", "临猗县"), ("140822", "万荣县"), ("140823", "闻喜县"),
                                ("140824", "稷山县"), ("140825", "新绛县"), ("140826", "绛县"), ("140827", "垣曲县"),
                                ("140828", "夏县"), ("140829", "平陆县"), ("140830", "芮城县"), ("140881", "永济市"),
                                ("140882", "河津市"))),
    City("140900", "忻州市", 269, (("140902", "忻府区"), ("140921", "定襄县"), ("140922", "五台县"), ("140923", "代县"),
                                ("140924", "繁峙县"), ("140925", "宁武县"), ("140926", "静乐县"), ("140927", "神池县"),
                                ("140928", "五寨县"), ("140929", "岢岚县"), ("140930", "河曲县"), ("140931", "保德县"),
                                ("140932", "偏关县"), ("140981", "原平市"))),
    City("141000", "临汾市", 398, (("141002", "尧都区"), ("141021", "曲沃县"), ("141022", "翼城县"), ("141023", "襄汾县"),
                                ("141024", "洪洞县"), ("141025", "古县"), ("141026", "安泽县"), ("141027", "浮山县"),
                                ("141028", "吉县"), ("141029", "乡宁县"), ("141030", "大宁县"), ("141031", "隰县"),
                                ("141032", "永和县"), ("141033", "蒲县"), ("141034", "汾西县"), ("141081", "侯马市"),
                                ("141082", "霍州市"))),
    City("141100", "吕梁市", 340, (("141102", "离石区"), ("141121", "文水县"), ("141122", "交城县"), ("141123", "兴县"),
                                ("141124", "临县"), ("141125", "柳林县"), ("141126", "石楼县"), ("141127", "岚县"),
                                ("141128", "方山县"), ("141129", "中阳县"), ("141130", "交口县"), ("141181", "孝义市"),
                                ("141182", "汾阳市"))),
)
CITIES = (TAIYUAN, *OTHER_CITIES)
# the ten other cities together: nine Taiyuans of volume, shared out by population (issue 21's ten in all)
OTHER_CITIES_IN_TAIYUANS = 9.0
TAIYUAN_COMPOUNDS = sum(d.compounds for d in ref.DISTRICTS)
TAIYUAN_COMMUNITIES = sum(d.communities for d in ref.DISTRICTS)
TAIYUAN_STREETS = sum(len(d.streets) for d in ref.DISTRICTS)
STREET_WORDS = ("城关", "东关", "西关", "南关", "北关", "新建", "向阳", "解放", "建设", "和平", "胜利", "人民", "文化",
                "振兴", "朝阳", "永安", "迎宾", "府东", "府西", "新华", "站前", "开发", "工业", "滨河")


def scale_of(city: City) -> float:
    """The city's volumes in Taiyuans: 1 for Taiyuan, the others by population."""
    if city.code == TAIYUAN.code:
        return 1.0
    return OTHER_CITIES_IN_TAIYUANS * city.population / sum(c.population for c in OTHER_CITIES)


class CityScenario(Scenario):
    """A city of the province other than Taiyuan: Taiyuan's generator with this city's divisions, volumes and
    random streams (its seed's streams are keyed by the city's code), and none of Taiyuan's published figures."""

    def __init__(self, city: City, seed: int = DEFAULT_SEED):
        super().__init__(seed)
        self.city = city
        self.scale = scale_of(city)
        self.n_canteens = round(CANTEENS * self.scale)
        self.n_points = round(ASSISTANCE_POINTS * self.scale)
        self.matters = round(PROGRAMME_MATTERS * self.scale)
        self.person_times = round(PROGRAMME_PERSON_TIMES * self.scale)
        self.id_number_prefix = city.districts[0][0]

    def _rng(self, *parts: object) -> random.Random:
        return super()._rng(self.city.code, *parts)

    @cached_property
    def districts(self) -> tuple[ref.District, ...]:  # type: ignore[override]
        rng = random.Random(f"{self.seed}:{self.city.code}:divisions")
        n = len(self.city.districts)
        weights = [rng.uniform(0.5, 1.5) for _ in range(n)]
        weights[0] *= 2  # the city's core district is its biggest
        streets = spread(max(n, round(TAIYUAN_STREETS * self.scale)) - n, n, rng, weights)
        communities = spread(round(TAIYUAN_COMMUNITIES * self.scale), n, rng, weights)
        compounds = spread(round(TAIYUAN_COMPOUNDS * self.scale), n, rng, weights)
        out = []
        for i, (code, name) in enumerate(self.city.districts):
            count = 1 + streets[i]
            names = tuple(f"{STREET_WORDS[k % len(STREET_WORDS)]}{'' if k < len(STREET_WORDS) else k}街道"
                          for k in range(count))
            out.append(ref.District(code, f"d{code}", name, max(compounds[i], 4 * max(communities[i], 3 * count)),
                                    max(communities[i], 3 * count), names))
        return tuple(out)

    def streets(self) -> list[tuple[ref.District, str, str]]:
        return [(d, ref.street_code(d, i), name) for d in self.districts for i, name in enumerate(d.streets)]

    @staticmethod
    def diner_card(canteen: Canteen, diner: int) -> str:
        # the street's own digits (Taiyuan's numbering keeps only the last five, which repeat across cities)
        return f"62{canteen.code[2:11]}{(int(canteen.code[-3:]) - 1) * 750 + diner:05d}"

    def request_id(self, day: date, case_index: int) -> str:
        return f"SR{day:%Y%m%d}C{self.city.code[2:4]}{case_index:06d}"

    def cases_on(self, day: date) -> tuple[int, int]:  # type: ignore[override]
        i = self.programme_day_index(day)
        first = (i * self.matters) // PROGRAMME_DAYS
        return first, ((i + 1) * self.matters) // PROGRAMME_DAYS - first

    def people_served(self, case_index: int) -> int:  # type: ignore[override]
        k = case_index
        return ((k + 1) * self.person_times) // self.matters - (k * self.person_times) // self.matters

    @staticmethod
    def issue_of(case_index: int) -> tuple[str, int] | None:
        return None  # 迎泽区' hot and urgent issues are Taiyuan's figures


class Province:
    """Shanxi: Taiyuan's scenario and the ten other cities', written into the same landing zone."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self.seed = seed
        self.taiyuan = Scenario(seed)
        self.cities: list[Scenario] = [self.taiyuan, *(CityScenario(c, seed) for c in OTHER_CITIES)]

    @property
    def compounds(self) -> list[Compound]:
        return [c for city in self.cities for c in city.compounds]

    @property
    def canteens(self) -> list[Canteen]:
        return [c for city in self.cities for c in city.canteens]

    @property
    def points(self) -> list[Point]:
        return [p for city in self.cities for p in city.points]

    def registry_rows(self, day: date) -> list[dict]:
        return [r for city in self.cities for r in city.registry_rows(day)]

    def meals(self, day: date) -> list[dict]:
        return [r for city in self.cities for r in city.meals(day)]

    def events(self, day: date) -> list[dict]:
        return [e for city in self.cities for e in city.events(day)]

    def write_night(self, day: date, landing: Path, feeds: Collection[str] = FEEDS) -> Night:
        night = Night(day=day)
        for city in self.cities:
            part = city.write_night(day, landing, feeds)
            night.compounds += part.compounds
            night.meals += part.meals
            night.events += part.events
            night.files += part.files
        return night


def scenario_for(scope: str = DEFAULT_SCOPE, seed: int | None = None) -> Scenario | Province:
    """The scenario of a scope (`gov-warehouse generate --scope`): `taiyuan` or `shanxi`."""
    seed = DEFAULT_SEED if seed is None else seed
    if scope == "taiyuan":
        return Scenario(seed)
    if scope == "shanxi":
        return Province(seed)
    raise ValueError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")


def setup_note(scope: str) -> str | None:
    """What `gov-warehouse generate --scope` tells the user a scope's night needs of the deployment: a
    province's reporters are known to the loader, dbt, the checks and the emails only with GOV_SCOPE=shanxi."""
    if scope != "shanxi":
        return None
    return ("a province night: set GOV_SCOPE=shanxi for gov-warehouse run / make run and every Airflow process "
            "(the other cities' reference seeds, dbt_project/seeds/province/; docs/deploy.md \"A province\")")


def seed_rows(seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """The reference rows the ten other cities add to dbt_project/seeds (same columns as Taiyuan's rows there):
    districts, streets, communities, canteens, assistance points and the reporters' contacts."""
    out: dict[str, list[dict]] = {k: [] for k in ("districts", "streets", "community_names", "canteens",
                                                  "assistance_points", "reporter_contacts")}
    for city_code in (c.code for c in OTHER_CITIES):
        city = CityScenario(next(c for c in OTHER_CITIES if c.code == city_code), seed)
        street_names = {code: name for _, code, name in city.streets()}
        for d in city.districts:
            out["districts"].append({"district_code": d.code, "district_key": d.key, "district_name": d.name})
        for d, code, name in city.streets():
            out["streets"].append({"street_code": code, "street_name": name, "district_code": d.code})
            out["reporter_contacts"].append({"reporter_code": code, "reporter_kind": "street", "reporter_name": name,
                                             "email": f"{code.lower()}@reporters.{city_code}.example"})
        communities: dict[str, list[str]] = {}
        for c in city.compounds:
            if c.community_code not in communities.get(c.street_code, []):
                communities.setdefault(c.street_code, []).append(c.community_code)
        for street, codes in communities.items():
            for k, code in enumerate(codes):
                out["community_names"].append({"community_code": code,
                                               "community_name": f"{street_names[street][:-2]}第{k + 1}社区",
                                               "street_code": street, "district_code": street[:6]})
        for c in city.canteens:
            own = communities[c.street_code]
            out["canteens"].append({"canteen_code": c.code, "canteen_name": c.name, "street_code": c.street_code,
                                    "district_code": c.district_code,
                                    "community_code": own[(int(c.code[-3:]) - 1) % len(own)]})
            out["reporter_contacts"].append({"reporter_code": c.code, "reporter_kind": "canteen",
                                             "reporter_name": c.name,
                                             "email": f"{c.code.lower()}@reporters.{city_code}.example"})
        for p in city.points:
            out["assistance_points"].append({"point_code": p.code, "street_code": p.street_code,
                                             "district_code": p.district_code, "canteen_code": p.canteen_code or ""})
            out["reporter_contacts"].append({"reporter_code": p.code, "reporter_kind": "point",
                                             "reporter_name": f"{street_names[p.street_code]}帮代办点{int(p.code[-3:])}号",
                                             "email": f"{p.code.lower()}@reporters.{city_code}.example"})
    return out


def write_seeds(directory: Path = ref.PROVINCE_SEEDS_DIR, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write seed_rows as the province's seed files (province_<name>.csv, the columns of Taiyuan's seed), which a
    `shanxi` deployment (GOV_SCOPE) adds to the committed seeds. Committed; tests/scenario/test_province_seeds.py
    holds them equal to seed_rows, so regenerate (`python -m scenario.province`) after changing the generator."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in seed_rows(seed).items():
        path = directory / f"province_{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_seeds():
        print(written_path)
