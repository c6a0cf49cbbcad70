"""Builders of files shaped the way street offices, canteens and points really send them (issue 14),
written from the generator's own records so that a test's expected values stay the generator's.
Shared by tests/ingest/test_workbook_night.py and tests/end_to_end/test_real_world_night.py; no test lives here.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from openpyxl import Workbook

from ingest.feeds import ASSISTANCE
from scenario.generator import STREET_HEADERS, street_row_values

# the feed's Chinese key of each column that has one (工单号, 事件, …)
ZH_KEYS = {c.name: c.aliases[0] for c in ASSISTANCE.columns if c.aliases and any(ord(ch) > 127 for ch in c.aliases[0])}


# ---------------------------------------------------------------- streets


def street_with_communities(registry: list[dict], at_least: int = 3) -> str:
    """The first street (by code) whose compounds lie in at least `at_least` communities."""
    by_street: dict[str, set[str]] = {}
    for r in registry:
        by_street.setdefault(r["street_code"], set()).add(r["community_code"])
    return min(s for s, communities in by_street.items() if len(communities) >= at_least)


def office_workbook(rows: list[dict], path: Path) -> dict[str, tuple[str, int]]:
    """Write a street's registry the way an office does: an instructions sheet (填报说明) first, one sheet
    per community under a merged title row, the community column merged over each block, placeholders
    (-, 无, /) for no property company, dates as 20210504 numbers or 2021.5.4 text, a 小计 row after each
    block and a 全街道合计 row at the end, every sheet declaring `<dimension ref="A1"/>`. The first
    community's block also gets three rows that cannot be loaded (an Excel error, a formula without a
    saved value, a year for a date) for new compounds `community + 999/998/997`.
    Returns those bad rows: compound code -> (sheet, row in the sheet)."""
    wb = Workbook()
    guide = wb.active
    guide.title = "填报说明"
    guide.append(["填报说明：每个社区一个工作表，小区编码填15位，日期写年月日。"])
    communities = sorted({r["community_code"] for r in rows})
    bad: dict[str, tuple[str, int]] = {}
    for k, community in enumerate(communities):
        ws = wb.create_sheet(f"社区{community[-3:]}")
        ws.append([f"社区{community[-3:]}小区台账"])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(STREET_HEADERS))
        ws.append(STREET_HEADERS)
        block = [r for r in rows if r["community_code"] == community]
        first = ws.max_row + 1
        for i, r in enumerate(block):
            v = street_row_values(r)
            if i:
                v[2] = None  # merged below
            v[7] = v[7] or ["-", "无", "/"][i % 3]  # no property company
            since = r["party_org_since"]
            if since:
                v[10] = int(since.strftime("%Y%m%d")) if i % 2 else f"{since.year}.{since.month}.{since.day}"
            ws.append(v)
        if k == 0:  # three rows that cannot be loaded, inside the merged block
            for suffix, column, value in (("999", 3, "#REF!"), ("998", 3, "=SUM(D3:D5)"), ("997", 10, 2019)):
                v = street_row_values(block[0])
                v[0], v[1], v[2] = community + suffix, f"新增小区{suffix}", None
                v[column] = value
                ws.append(v)
                bad[community + suffix] = (ws.title, ws.max_row)
        ws.merge_cells(start_row=first, start_column=3, end_row=ws.max_row, end_column=3)
        ws.append([None, "小计", None, sum(r["households"] for r in block)])
    ws.append(["全街道合计", None, None, sum(r["households"] for r in rows)])
    wb.save(path)
    _rewrite_parts(path, lambda name, data: re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1"', data)
                   if name.startswith("xl/worksheets/sheet") else data)
    return bad


def office_sheet_names(rows: list[dict]) -> list[str]:
    """The sheets of office_workbook(rows) in their order (a row number's sheet is its place here)."""
    return ["填报说明", *(f"社区{c[-3:]}" for c in sorted({r["community_code"] for r in rows}))]


def zip_bomb_workbook(genuine: Path, path: Path, unpacked_bytes: int = 40 << 20) -> None:
    """The genuine workbook with a picture part of `unpacked_bytes` zeros: a file of a few hundred KB that
    declares tens of MB (a zip bomb's shape)."""
    with zipfile.ZipFile(genuine) as src:
        parts = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in parts:
            dst.writestr(name, data)
        with dst.open("xl/media/image1.png", "w", force_zip64=True) as part:
            chunk = bytes(1 << 20)
            for _ in range(unpacked_bytes >> 20):
                part.write(chunk)


def _rewrite_parts(path: Path, change) -> None:
    with zipfile.ZipFile(path) as src:
        parts = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in parts:
            dst.writestr(name, change(name, data))


# ---------------------------------------------------------------- canteens

# what a browser saves when a download link has expired and the platform shows its login page
LOGIN_PAGE_HTML = ("<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n"
                   "<title>智慧食堂管理平台 - 登录</title>\n</head>\n<body>\n"
                   "<form action=\"/login\" method=\"post\"><input name=\"username\"><input name=\"password\" "
                   "type=\"password\"><button>登录</button></form>\n<p>会话已过期，请重新登录后导出报表。</p>\n"
                   "</body>\n</html>\n")


def damage_csv_lines(path: Path, stray_line: int, nul_line: int) -> int:
    """In a canteen CSV (CRLF lines, header = line 0): one stray byte (0xA0, a Windows-1252 no-break space,
    neither UTF-8 nor GB18030) ends line `stray_line`'s last field (支付方式), and a NUL ends line
    `nul_line`'s first field (流水号). Returns the stray byte's offset in the file."""
    lines = path.read_bytes().split(b"\r\n")
    lines[stray_line] += b"\xa0"
    lines[nul_line] = lines[nul_line].replace(b",", b"\x00,", 1)
    path.write_bytes(b"\r\n".join(lines))
    try:
        lines[stray_line].decode()
    except UnicodeDecodeError as err:
        return len(b"\r\n".join(lines[:stray_line])) + 2 + err.start
    raise AssertionError("the stray line still decodes as UTF-8")


# ---------------------------------------------------------------- assistance points


def event_record(e: dict) -> dict:
    """A generated event as the point's JSON Lines hold it."""
    return {**e, "event_at": e["event_at"].isoformat()}


def event_line(e: dict, keys: dict[str, str] | None = None) -> str:
    record = event_record(e)
    if keys:
        record = {keys.get(k, k): v for k, v in record.items()}
    return json.dumps(record, ensure_ascii=False)


def open311_record(e: dict) -> dict:
    """The same event as an Open311 GeoReport v2 record: a receipt as status `open` at
    `requested_datetime`, a closing as status `closed` at `updated_datetime` (neither with an `event`),
    any other stage as its event at `updated_datetime`; the notes as `description`, the phone as `phone`,
    the name as `last_name` + `first_name`, a receipt's category as `service_name`."""
    record = event_record(e)
    event, at = record.pop("event"), record.pop("event_at")
    if event == "received":
        record.update(status="open", requested_datetime=at, service_name=record.pop("service_code"))
    elif event == "closed":
        record.update(status="closed", updated_datetime=at)
    else:
        record.update(event=event, updated_datetime=at)
    if "status_notes" in record:
        record["description"] = record.pop("status_notes")
    if "requester_phone" in record:
        record["phone"] = record.pop("requester_phone")
    if "requester_name" in record:
        name = record.pop("requester_name")
        record.update(last_name=name[0], first_name=name[1:])
    return record


def mixed_keys_jsonl(events: list[dict], path: Path) -> None:
    """A point's events as a mix of systems sends them: receipts and closings as Open311 records (the
    states GeoReport describes), the other stages alternately with the feed's keys and its Chinese keys."""
    lines, others = [], 0
    for e in events:
        if e["event"] in ("received", "closed"):
            lines.append(json.dumps(open311_record(e), ensure_ascii=False))
        else:
            lines.append(event_line(e, ZH_KEYS if others % 2 else None))
            others += 1
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def json_array_file(events: list[dict], path: Path) -> None:
    """A point's events as one pretty-printed JSON array (an export 'as JSON') instead of JSON Lines."""
    path.write_text(json.dumps([event_record(e) for e in events], indent=2, ensure_ascii=False), encoding="utf-8")
