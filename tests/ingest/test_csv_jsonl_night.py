"""Canteen CSVs and point JSON Lines as reporters really send them, laid over a generated night and
loaded into a real PostgreSQL (issue 14): a stray GB18030 word, a NUL byte, UTF-16 files, a genuine
GB18030 file, `\\u0000` escapes, lines nested 50,000 deep, duplicate keys, a JSON array, Chinese keys.
No file is `failed`; every genuine row loads; each bad row is rejected with its reason. Expected counts
come from the generator's records, never from the loader.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import loader
from scenario.generator import Scenario
from tests.support.realworld_files import ZH_KEYS, event_line

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)


def q(wh, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def test_odd_csv_and_jsonl_files_among_a_generated_night(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    night = Scenario().write_night(DAY, tmp_path, feeds=("canteens", "assistance"))
    folder = {s: tmp_path / s / DAY.isoformat() for s in ("canteens", "assistance")}
    expected: dict[str, tuple] = {}  # file name -> (status, rows read, loaded, rejected, reasons)

    # ---- canteens: five files of the night, each made odd in one way
    meals: dict[str, int] = Counter(m["canteen_code"] for m in night.meals)
    busy = sorted((code for code, n in meals.items() if n >= 20), key=lambda c: (-meals[c], c))[:5]
    stray, nul, utf16, gb, utf16_no_bom = (folder["canteens"] / f"{code}.csv" for code in busy)

    content = stray.read_bytes()
    lines = content.split(b"\r\n")
    lines[10] = lines[10].rpartition(b",")[0] + b"," + "现金".encode("gb18030")  # file row 11's payment method
    assert not _utf8(lines[10])
    stray.write_bytes(b"\r\n".join(lines))
    stray_offset = len(b"\r\n".join(lines[:10])) + 2 + _first_bad_byte(lines[10])
    expected[stray.name] = ("loaded", meals[busy[0]], meals[busy[0]] - 1, 1, {"bad_encoding": 1})

    lines = nul.read_bytes().split(b"\r\n")
    lines[5] = lines[5].replace(b",", b"\x00,", 1)  # a NUL at the end of the record id
    nul.write_bytes(b"\r\n".join(lines))
    expected[nul.name] = ("loaded", meals[busy[1]], meals[busy[1]] - 1, 1, {"bad_character": 1})

    utf16.write_bytes(utf16.read_text(encoding="utf-8").encode("utf-16"))
    expected[utf16.name] = ("quarantined", 0, 0, 0, {})
    gb.write_bytes(gb.read_text(encoding="utf-8").encode("gb18030"))
    expected[gb.name] = ("loaded", meals[busy[3]], meals[busy[3]], 0, {})
    utf16_no_bom.write_bytes(utf16_no_bom.read_text(encoding="utf-8").encode("utf-16-le"))
    expected[utf16_no_bom.name] = ("quarantined", 0, 0, 0, {})

    # ---- assistance: five points' files
    events: dict[str, list[dict]] = {}
    for e in night.events:
        events.setdefault(e["point_code"], []).append(e)
    points = sorted((c for c, evs in events.items() if len(evs) >= 2), key=lambda c: (-len(events[c]), c))[:5]
    odd_lines, as_array, chinese, utf16_point, malformed = (folder["assistance"] / f"{code}.jsonl" for code in points)

    evs = events[points[0]]
    first = json.loads(event_line(evs[0]))
    bad = [
        json.dumps({**first, "status_notes": "a\u0000b"}),
        event_line(evs[0])[:-1].encode() + b', "handler": "\x00"}',
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        '{"service_request_id": "X1", "event": "received", "event": "closed"}',
        json.dumps({**first, "status_notes": {"text": "x"}}),
    ]
    body = [event_line(e).encode() for e in evs]
    odd_lines.write_bytes(b"\n".join([body[0], *(b if isinstance(b, bytes) else b.encode() for b in bad), *body[1:]])
                          + b"\n")
    expected[odd_lines.name] = ("loaded", len(evs) + 5, len(evs), 5,
                                {"bad_character": 2, "json_too_deep": 1, "duplicate_key": 1, "nested_value": 1})

    evs = events[points[1]]
    as_array.write_text(json.dumps([json.loads(event_line(e)) for e in evs], indent=2, ensure_ascii=False),
                        encoding="utf-8")
    expected[as_array.name] = ("loaded", len(evs), len(evs), 0, {})

    evs = events[points[2]]
    chinese.write_text("".join(event_line(e, ZH_KEYS) + "\n" for e in evs), encoding="utf-8")
    expected[chinese.name] = ("loaded", len(evs), len(evs), 0, {})

    utf16_point.write_bytes(utf16_point.read_text(encoding="utf-8").encode("utf-16"))
    expected[utf16_point.name] = ("quarantined", 0, 0, 0, {})

    evs = events[points[4]]
    cut = '{"service_request_id": "X2", "point_code": "' + points[4] + '", "姓名": "张三", "电话": "13812345678", "ev'
    malformed.write_text("".join(event_line(e) + "\n" for e in evs) + cut + "\n", encoding="utf-8")
    expected[malformed.name] = ("loaded", len(evs) + 1, len(evs), 1, {"malformed_json": 1})

    results = [r for source in ("canteens", "assistance") for r in loader.load_night(wh, tmp_path, source, DAY)]
    assert len(results) == len(night.files)
    assert not [r for r in results if r.status == "failed"]
    for r in results:
        status, read, loaded, rejected, reasons = expected.get(r.path.name, ("loaded", None, None, 0, {}))
        assert (r.status, r.rows_rejected) == (status, rejected), r.path.name
        if read is not None:
            assert (r.rows_read, r.rows_loaded) == (read, loaded), r.path.name
        got = Counter(x["reason_code"] for x in q(wh, "select reason_code from audit.rejected_rows where load_id = %s",
                                                    (r.load_id,)))
        assert got == Counter(reasons), r.path.name
        if status == "quarantined":
            ledger = q(wh, "select error from audit.load_ledger where load_id = %s", (r.load_id,))[0]
            assert ledger["error"].startswith("bad_encoding:") and r.path.name in ledger["error"]

    # every genuine row is there: all the night's meals but the two rejected and the quarantined files'
    lost_meals = 2 + meals[busy[2]] + meals[busy[4]]
    assert q(wh, "select count(*) as n from raw.canteens_meals")[0]["n"] == len(night.meals) - lost_meals
    assert q(wh, "select count(*) as n from raw.assistance_case_events")[0]["n"] == len(night.events) - len(
        events[points[3]])
    # the genuine GB18030 file's text came through as text, and the Chinese keys as their columns
    gb_meals = [m for m in night.meals if m["canteen_code"] == busy[3]]
    assert sorted(r["payment_method"] for r in q(
        wh, "select payment_method from raw.canteens_meals where canteen_code = %s", (busy[3],))) == sorted(
        m["payment_method"] for m in gb_meals)
    got = q(wh, "select service_request_id, event, event_at from raw.assistance_case_events where point_code = %s",
            (points[2],))
    assert sorted((g["service_request_id"], g["event"], g["event_at"]) for g in got) == sorted(
        (e["service_request_id"], e["event"], e["event_at"]) for e in events[points[2]])
    # the rejections say where, and keep nothing personal
    [row] = q(wh, "select r.* from audit.rejected_rows r join audit.load_ledger l using (load_id) "
                  "where l.file_path like %s", (f"%{stray.name}",))
    assert (row["row_number"], row["column_name"]) == (11, "payment_method")
    assert f"byte {stray_offset} of the file" in row["message"]
    [row] = q(wh, "select r.* from audit.rejected_rows r join audit.load_ledger l using (load_id) "
                  "where l.file_path like %s", (f"%{malformed.name}",))
    assert row["row_number"] == len(events[points[4]]) + 1
    assert row["raw_record"]["service_request_id"] == "X2" and row["raw_record"]["_other_keys"] == ["姓名", "电话"]
    text = json.dumps(row["raw_record"], ensure_ascii=False) + row["message"]
    assert "张三" not in text and "13812345678" not in text


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _first_bad_byte(line: bytes) -> int:
    try:
        line.decode()
    except UnicodeDecodeError as err:
        return err.start
    raise AssertionError("valid UTF-8")
