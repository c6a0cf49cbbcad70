"""How the sources' files are written: one writer per file format, shared by the clean scenario and its messy variants.

A street office's registry is an .xlsx workbook (saved byte-stable: openpyxl stamps the save time into the zip
entries and docProps/core.xml, so the same registry saved twice would look like a revised file to the loader's
content hash); a canteen's meals a CSV; an assistance point's case events JSON Lines."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from warehouse import reference as ref

MODE_ZH = {v: k for k, v in ref.PROPERTY_MODES.items()}
PARTY_ZH = {v: k for k, v in ref.PARTY_ORG_TYPES.items()}
COMMITTEE_ZH = {v: k for k, v in ref.OWNERS_COMMITTEES.items()}

# the registry's optional columns (issue 23, ingest/feeds.py STREETS): header, row key
STREET_PROGRAMME_COLUMNS = (
    ("所属网格", "grid_code"), ("微网格数", "micro_grids"), ("网格助理数", "grid_assistants"),
    ("党组织建在网格上", "party_org_on_grid"), ("党组织阵地数", "party_positions"),
    ("党组织书记类型", "secretary_type"), ("兼职委员数", "part_time_members"), ("党员数", "party_members"),
    ("物业党支部", "property_party_branch"), ("物业党建指导员数", "party_instructors"),
    ("双组双建双监督", "dual_model"), ("自筹自管", "self_funding"), ("合并院落数", "courtyards_merged"),
    ("微阵地数", "micro_positions"), ("在职党员报到数", "in_service_members"),
)
STREET_HEADERS = [
    "小区编码", "小区名称", "所属社区", "户数", "建筑面积(㎡)", "楼栋数", "物业服务方式", "物业企业",
    "过渡补贴起始月", "党组织类型", "党组织成立日期", "业委会/物管会", "楼栋长数", "单元长数", "党群服务站",
    *(zh for zh, _ in STREET_PROGRAMME_COLUMNS),
]
CANTEEN_HEADERS = [
    "流水号", "食堂编码", "就餐时间", "餐次", "人群类别", "就餐卡号", "年龄", "实付金额", "补贴金额", "支付方式",
]


def street_row_values(r: dict) -> list:
    """A registry row as a street office's workbook holds it (STREET_HEADERS order, Chinese labels)."""
    return [
        r["compound_code"], r["name"], r["community_code"], r["households"], r["building_area_m2"],
        r["buildings"], MODE_ZH[r["property_mode"]], r["property_company"] or None,
        r["subsidy_start_month"].strftime("%Y-%m") if r["subsidy_start_month"] else None,
        PARTY_ZH[r["party_org_type"]],
        r["party_org_since"].isoformat() if r["party_org_since"] else None,
        COMMITTEE_ZH[r["owners_committee"]], r["building_heads"], r["unit_heads"],
        "有" if r["service_station"] else "无",
        *(_programme_cell(r.get(key)) for _, key in STREET_PROGRAMME_COLUMNS),
    ]


SECRETARY_ZH = {v: k for k, v in ref.SECRETARY_TYPES.items()}


def _programme_cell(value: object) -> object:
    """An optional column's cell: 是/否 for a flag, the Chinese label of a secretary type, blank for None."""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, str):
        return SECRETARY_ZH.get(value, value)
    return value

ZH_CATEGORY = {v: k for k, v in ref.DINER_CATEGORIES.items()}


# ---------------------------------------------------------------- workbooks

def street_workbook(title: str, header: bool = False) -> tuple[Any, Any]:
    """A new workbook whose first sheet is `title` (with STREET_HEADERS as its first row when `header`)."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = title
    if header:
        ws.append(STREET_HEADERS)
    return wb, ws


FIXED_ZIP_TIME = (2023, 1, 1, 0, 0, 0)
FIXED_STAMP = "2023-01-01T00:00:00Z"


def save_stable(workbook: Any, path: Path) -> None:
    """Save `workbook` so that the same content gives the same bytes."""
    workbook.save(path)
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in entries:
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rb"\g<1>" + FIXED_STAMP.encode() + rb"\2",
                              data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, data)


# ---------------------------------------------------------------- CSV

def meal_values(r: dict) -> list[str]:
    """A meal record as a canteen's CSV holds it (CANTEEN_HEADERS order, Chinese labels)."""
    return [r["record_id"], r["canteen_code"], r["served_at"].strftime("%Y-%m-%d %H:%M:%S"), r["meal"],
            ZH_CATEGORY[r["diner_category"]], r["diner_card"], str(r["age"]), f"{r['price_yuan']:.2f}",
            f"{r['subsidy_yuan']:.2f}", r["payment_method"]]


def canteen_csv_text(rows: list[list[str]]) -> str:
    """A canteen CSV: the header, then `rows` (each in CANTEEN_HEADERS order)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CANTEEN_HEADERS)
    w.writerows(rows)
    return out.getvalue()


# ---------------------------------------------------------------- JSON Lines

def event_line(e: dict) -> str:
    """A case event as an assistance point's JSON Lines file holds it (one line, no newline)."""
    return json.dumps({**e, "event_at": e["event_at"].isoformat()}, ensure_ascii=False)
