"""Reference data of the Taiyuan scenario: divisions (real codes and, where known, real street names).

Division codes follow GB/T 2260 and the statistical division codes: district = 6 digits,
street = district + 3, community = street + 3, compound = community + 3.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from warehouse import settings


@dataclass(frozen=True)
class District:
    code: str
    key: str
    name: str
    compounds: int
    communities: int
    streets: tuple[str, ...]


# Compounds and communities of 小店区 and 迎泽区 are the published figures (seed-facts.yaml);
# the others are plausible sizes for the scenario.
DISTRICTS: tuple[District, ...] = (
    District("140105", "xiaodian", "小店区", 1157, 84,
             ("坞城街道", "营盘街道", "北营街道", "平阳路街道", "黄陵街道", "小店街道", "龙城街道")),
    District("140106", "yingze", "迎泽区", 1297, 91,
             ("柳巷街道", "文庙街道", "庙前街道", "迎泽街道", "桥东街道", "老军营街道")),
    District("140107", "xinghualing", "杏花岭区", 1080, 78,
             ("巨轮街道", "三桥街道", "鼓楼街道", "杏花岭街道", "坝陵桥街道", "大东关街道")),
    District("140108", "jiancaoping", "尖草坪区", 760, 60,
             ("尖草坪街道", "光社街道", "上兰街道", "南寨街道", "迎新街街道")),
    District("140109", "wanbailin", "万柏林区", 1120, 80,
             ("千峰街道", "下元街道", "和平街道", "万柏林街道", "兴华街道", "西铭街道")),
    District("140110", "jinyuan", "晋源区", 420, 36, ("义井街道", "罗城街道", "晋源街道", "金胜镇")),
    District("140121", "qingxu", "清徐县", 260, 24, ("清源镇", "徐沟镇", "东于镇")),
    District("140122", "yangqu", "阳曲县", 150, 14, ("黄寨镇", "大盂镇")),
    District("140123", "loufan", "娄烦县", 110, 10, ("娄烦镇", "静游镇")),
    District("140181", "gujiao", "古交市", 300, 26, ("东曲街道", "西曲街道", "桃园街道", "屯兰街道")),
)

CITY_CODE = "140100"
CITY_NAME = "太原市"

PROPERTY_MODES = {
    "市场化物业": "market",
    "红色物业帮建": "red_property",
    "驻地单位协建": "unit_assisted",
    "财政补贴过渡": "subsidy_transition",
    "社区兜底": "community_fallback",
    "单位自管": "self_managed",
    "无": "none",
}
PARTY_ORG_TYPES = {"党支部": "branch", "党小组": "group", "联合党支部": "joint_branch", "无": "none"}
OWNERS_COMMITTEES = {"业委会": "owners_committee", "物管会": "property_committee", "无": "none"}
# 小区党组织书记: a party member living in the compound, a community cadre, or someone else (e.g. a unit's member)
SECRETARY_TYPES = {"居民党员": "resident_member", "社区干部": "community_cadre", "其他": "other"}
# a case the compound's party organisation handled as a hot issue (热点问题) or an urgent one (急难愁盼)
ISSUE_FLAGS = {"热点问题": "hot", "急难愁盼": "urgent"}
MEALS = {"早": "breakfast", "午": "lunch", "晚": "dinner"}
DINER_CATEGORIES = {"老年人": "elderly", "儿童": "child", "残疾人": "disabled", "居民": "resident"}
PAYMENT_METHODS = ("微信", "支付宝", "现金", "就餐卡")
CASE_EVENTS = ("received", "dispatched", "resolved", "escalated", "dept_resolved", "closed", "reopened")
SERVICE_CODES = ("代缴费用", "维修", "疏通下水道", "送药送医", "证照代办", "矛盾调解", "环境卫生", "其他")
CHANNELS = ("上门", "电话", "微信群", "小程序", "平安太原APP")
HANDLERS = ("党员", "网格员", "物业", "社工", "部门")
DEPARTMENTS = ("住建局", "城管局", "水务局", "供热公司", "公安分局", "市场监管局", "民政局")


def street_code(district: District, index: int) -> str:
    return f"{district.code}{index + 1:03d}"


def all_streets() -> list[tuple[District, str, str]]:
    """(district, street_code, street_name) for every street of the city."""
    return [(d, street_code(d, i), name) for d in DISTRICTS for i, name in enumerate(d.streets)]


def district_by_code(code: str) -> District:
    for d in DISTRICTS:
        if d.code == code:
            return d
    raise KeyError(code)

# the programme period the published figures cover (seed-facts.yaml): the scenario generates it, the
# reconciliation and the city email compare its cumulative figures over it
PROGRAMME_START = date(2023, 1, 1)
PROGRAMME_END = date(2023, 10, 31)  # inclusive


# reference seeds a province deployment extends with the ten other cities' rows (dbt_project/seeds/province/
# province_<name>.csv, written by scenario.province.write_seeds); officials and published figures stay Taiyuan's
PROVINCE_SEEDS = ("districts", "streets", "community_names", "canteens", "assistance_points", "reporter_contacts")
SEEDS_DIR = settings.DBT_PROJECT_DIR / "seeds"
PROVINCE_SEEDS_DIR = SEEDS_DIR / "province"


def seed_files(name: str, scope: str | None = None) -> list[Path]:
    """The files of a reference seed in force: the committed one, and in a `shanxi` deployment (GOV_SCOPE) the
    province's rows beside it, the same union dbt builds (macros/reference.sql)."""
    files = [SEEDS_DIR / f"{name}.csv"]
    if (scope or settings.scope()) == "shanxi" and name in PROVINCE_SEEDS:
        files.append(PROVINCE_SEEDS_DIR / f"province_{name}.csv")
    return files


def seed_rows(name: str, scope: str | None = None) -> list[dict[str, str]]:
    """The rows of a reference seed in force (seed_files), as text."""
    rows: list[dict[str, str]] = []
    for path in seed_files(name, scope):
        with path.open(encoding="utf-8", newline="") as f:
            rows.extend(csv.DictReader(f))
    return rows


def city_of(district_code: str) -> str:
    """The prefecture-level city of a district (GB/T 2260: its first four digits and 00)."""
    return f"{district_code[:4]}00"
