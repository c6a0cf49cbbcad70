"""Issue 14's "done when": one generated night of the Taiyuan scenario with every real-world shape laid over
it, run through the pipeline's own steps (load_feed per feed, validate_raw, build_marts, validate_marts,
publish), loads every genuine row and PUBLISHES.

Laid over the night, each from the generator's own records (so the expected marts stay the generator's):
a street office's workbook (instructions sheet, a sheet per community, merged community cells, 小计/合计
rows, placeholders, dimension A1, 20210504 dates, three rows that cannot be loaded); a canteen's CSV in
GB18030; a canteen's CSV with one stray byte (0xA0) on one line and a NUL in another (those two rows
rejected); a point's JSON Lines with the feed's, Chinese and Open311 keys line by line; a point's file as a
JSON array. And hostile extras, each refused with one ledger row and its reason: a link to a file outside
the landing root, a `CT… (1).csv` copy, a prefix name, a name that is not UTF-8, a 0-byte xlsx, a
zip-bomb-shaped xlsx, an HTML page saved as .csv.

Expected marts are computed from the generator's records minus the rows damaged and the reporters whose
file was displaced by a hostile one, never from the marts.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from scenario.generator import Night, Scenario
from tests.orchestration.test_publish_gate import run_night
from tests.support.realworld_files import (
    LOGIN_PAGE_HTML,
    damage_csv_lines,
    json_array_file,
    mixed_keys_jsonl,
    office_sheet_names,
    office_workbook,
    street_with_communities,
    zip_bomb_workbook,
)
from warehouse import conninfo, settings

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)
SECRET_MARK = "SECRET-OUTSIDE-THE-LANDING-ROOT"  # in the file the planted link points to
NOT_UTF8_NAME = b"\xb2\xe2\xca\xd4.csv"  # 测试.csv saved by a GBK system


def q(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass
class Laid:
    """What was laid over the generated night, and so what a correct pipeline must record."""

    night: Night
    office_street: str = ""
    gb18030_canteen: str = ""
    # ledger file_path -> (status, reason code or None) of every hostile extra
    hostile: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # (file name, reason code, row number, column) of every row that must be rejected
    rejected: set[tuple[str, str, int, str]] = field(default_factory=set)
    messages: dict[tuple[str, int], str] = field(default_factory=dict)  # (file, row) -> how its message starts
    lost_meals: set[str] = field(default_factory=set)  # record ids of the damaged canteen rows
    displaced: set[tuple[str, str]] = field(default_factory=set)  # (source, reporter): genuine file not there
    secrets: list[str] = field(default_factory=list)  # text of the linked file that must land nowhere


def _folder(root: Path, source: str) -> Path:
    return root / source / DAY.isoformat()


def _lay_streets(root: Path, laid: Laid) -> None:
    registry = laid.night.compounds
    office = street_with_communities(registry)
    rows = [r for r in registry if r["street_code"] == office]
    path = _folder(root, "streets") / f"{office}.xlsx"
    bad = office_workbook(rows, path)
    laid.office_street = office
    sheets = office_sheet_names(rows)
    columns = {"999": ("formula_error", "households"), "998": ("formula_no_value", "households"),
               "997": ("year_only", "party_org_since")}
    for code, (sheet, sheet_row) in bad.items():
        reason, column = columns[code[-3:]]
        row = sheets.index(sheet) * 10_000_000 + sheet_row  # file-unique row numbers, a block per sheet
        laid.rejected.add((path.name, reason, row, column))
        laid.messages[(path.name, row)] = f"{path.name}, row {row} (sheet {sheet}, row {sheet_row}), column {column}: "

    empty, bomb = sorted({r["street_code"] for r in registry} - {office})[:2]
    empty_path = _folder(root, "streets") / f"{empty}.xlsx"
    empty_path.write_bytes(b"")
    bomb_path = _folder(root, "streets") / f"{bomb}.xlsx"
    zip_bomb_workbook(path.with_name(f"{bomb}.xlsx"), bomb_path.with_suffix(".tmp"))
    bomb_path.with_suffix(".tmp").replace(bomb_path)
    assert bomb_path.stat().st_size < 1 << 20  # small on disk, tens of MB declared
    laid.hostile[str(empty_path)] = ("quarantined", "empty_file")
    laid.hostile[str(bomb_path)] = ("quarantined", "workbook_too_large")
    laid.displaced |= {("streets", empty), ("streets", bomb)}


def _lay_canteens(root: Path, outside: Path, laid: Laid) -> None:
    folder = _folder(root, "canteens")
    meals: dict[str, list[dict]] = {}
    for m in laid.night.meals:
        meals.setdefault(m["canteen_code"], []).append(m)
    busy = sorted((c for c, ms in meals.items() if len(ms) >= 20), key=lambda c: (-len(meals[c]), c))
    damaged, gb, html, linked, copied = busy[:5]

    # one stray byte ending file row 11 (its 支付方式), a NUL ending file row 6's 流水号
    path = folder / f"{damaged}.csv"
    offset = damage_csv_lines(path, stray_line=10, nul_line=5)
    laid.rejected |= {(path.name, "bad_encoding", 11, "payment_method"), (path.name, "bad_character", 6, "record_id")}
    laid.messages[(path.name, 11)] = f"byte {offset} of the file"
    laid.lost_meals |= {meals[damaged][9]["record_id"], meals[damaged][4]["record_id"]}

    laid.gb18030_canteen = gb
    path = folder / f"{gb}.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("gb18030"))

    path = folder / f"{html}.csv"
    path.write_text(LOGIN_PAGE_HTML, encoding="utf-8")
    laid.hostile[str(path)] = ("quarantined", "no_header")
    laid.displaced.add(("canteens", html))

    # a link to the canteen's real file kept outside the landing root, with a marked line added
    outside.mkdir(parents=True)
    target = outside / f"{linked}.csv"
    target.write_bytes((folder / f"{linked}.csv").read_bytes() + f"{SECRET_MARK},x,y\r\n".encode())
    (folder / f"{linked}.csv").unlink()
    (folder / f"{linked}.csv").symlink_to(target)
    laid.hostile[str(folder / f"{linked}.csv")] = ("quarantined", "symlink")
    laid.displaced.add(("canteens", linked))
    laid.secrets += [SECRET_MARK, *(m["record_id"] for m in meals[linked])]

    # extras beside a genuine file: a copy's name, a prefix of the codes, a name that is not UTF-8
    genuine = (folder / f"{copied}.csv").read_bytes()
    for name, reason in ((f"{copied} (1).csv", "copy_file_name"), ("C.csv", "unknown_reporter"),
                         (os.fsdecode(NOT_UTF8_NAME), "name_not_utf8")):
        (folder / name).write_bytes(genuine)
        laid.hostile[os.fsencode(str(folder / name)).decode("utf-8", "backslashreplace")] = ("quarantined", reason)


def _lay_points(root: Path, laid: Laid) -> tuple[str, str]:
    events: dict[str, list[dict]] = {}
    for e in laid.night.events:
        events.setdefault(e["point_code"], []).append(e)
    ranked = sorted(events, key=lambda c: (-len(events[c]), c))
    # a point whose file then holds lines of all three kinds of keys
    mixed = next(c for c in ranked if {"received", "closed"} <= {e["event"] for e in events[c]}
                 and sum(e["event"] not in ("received", "closed") for e in events[c]) >= 2)
    mixed_keys_jsonl(events[mixed], _folder(root, "assistance") / f"{mixed}.jsonl")
    array = next(c for c in ranked if c != mixed)
    path = _folder(root, "assistance") / f"{array}.jsonl"
    json_array_file(events[array], path)
    laid.hostile[str(path)] = ("loaded", None)  # read as the array it is
    return mixed, array


def _ledger_reason(row: dict) -> str | None:
    return row["error"].split(":")[0] if row["status"] == "quarantined" else None


def _scopes(registry: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """The registry's rows by (scope level, scope code), street and district, as the coverage marts group them."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in registry:
        out.setdefault(("street", r["street_code"]), []).append(r)
        out.setdefault(("district", r["district_code"]), []).append(r)
    return out


def _expected_cases(events: list[dict]) -> dict[tuple[str, str], dict]:
    """Per case (point, id), from the night's generated events: received and closed times, category."""
    cases: dict[tuple[str, str], dict] = {}
    for e in events:
        c = cases.setdefault((e["point_code"], e["service_request_id"]),
                             {"received_at": None, "closed_at": None, "service_code": e["service_code"],
                              "satisfaction": None})
        if e["event"] == "received":
            c["received_at"] = e["event_at"]
        elif e["event"] == "closed":
            c["closed_at"], c["satisfaction"] = e["event_at"], e["satisfaction"]
    return cases


def test_a_real_world_night_loads_every_genuine_row_and_publishes(fresh_warehouse, tmp_path, monkeypatch, caplog,
                                                                  capfd):
    wh, root = fresh_warehouse, tmp_path / "landing"
    monkeypatch.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
    monkeypatch.setenv("LANDING_DIR", str(root))
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="ingest")
    laid = Laid(night=Scenario().write_night(DAY, root))
    _lay_streets(root, laid)
    _lay_canteens(root, tmp_path / "outside", laid)
    mixed, array = _lay_points(root, laid)

    outcome = run_night(DAY, "real-world")

    ledger = q(wh, "select * from audit.load_ledger order by load_id")
    _check_ledger(ledger, laid)
    _check_rejections(wh, laid)
    assert outcome["status"] == "published", outcome
    assert [r["status"] for r in q(wh, "select status from audit.publish_log where service_date = %s", (DAY,))
            ] == ["published"]
    _check_canteens(wh, laid)
    _check_streets(wh, laid, ledger)
    _check_points(wh, laid, (mixed, array))
    # the displaced reporters show as missing, and nothing else does
    missing = q(wh, "select source, reporter_code from marts.mart_source_freshness where service_date = %s "
                    "and missing", (DAY,))
    assert {(r["source"], r["reporter_code"]) for r in missing} == laid.displaced
    out, err = capfd.readouterr()
    _check_link_not_followed(wh, laid, ledger, caplog.text + out + err)


def _check_ledger(ledger: list[dict], laid: Laid) -> None:
    """Nothing failed; each hostile extra has one row with its status and reason; every other file loaded."""
    assert [(x["file_path"], x["error"]) for x in ledger if x["status"] == "failed"] == []
    for path, expected in laid.hostile.items():
        rows = [x for x in ledger if x["file_path"] == path]
        assert [(x["status"], _ledger_reason(x)) for x in rows] == [expected], path
    quarantined = {x["file_path"] for x in ledger if x["status"] == "quarantined"}
    assert quarantined == {p for p, (status, _) in laid.hostile.items() if status == "quarantined"}
    assert all(x["status"] == "loaded" for x in ledger if x["file_path"] not in quarantined)


def _check_rejections(wh: conninfo.ConnInfo, laid: Laid) -> None:
    """Exactly the damaged rows are rejected, each naming its file, row and column."""
    rejected = q(wh, "select l.file_path, r.* from audit.rejected_rows r join audit.load_ledger l using (load_id)")
    assert {(Path(x["file_path"]).name, x["reason_code"], x["row_number"], x["column_name"]) for x in rejected
            } == laid.rejected
    assert len(rejected) == len(laid.rejected)
    for x in rejected:
        assert laid.messages.get((Path(x["file_path"]).name, x["row_number"]), "") in x["message"], x["message"]


def _check_canteens(wh: conninfo.ConnInfo, laid: Laid) -> None:
    """Person-times and money per canteen as generated, minus the damaged rows and the displaced files;
    the GB18030 canteen's text came through as text."""
    displaced = {code for source, code in laid.displaced if source == "canteens"}
    expected: dict[str, list[dict]] = {}
    for m in laid.night.meals:
        if m["canteen_code"] not in displaced and m["record_id"] not in laid.lost_meals:
            expected.setdefault(m["canteen_code"], []).append(m)
    got = {r["canteen_code"]: (r["person_times"], r["paid_yuan"], r["subsidy_yuan"]) for r in q(
        wh, "select canteen_code, person_times, paid_yuan, subsidy_yuan from marts.fct_canteen_day "
            "where service_date = %s", (DAY,))}
    assert got == {code: (len(ms), sum(Decimal(str(m["price_yuan"])) for m in ms),
                          sum(Decimal(str(m["subsidy_yuan"])) for m in ms)) for code, ms in expected.items()}
    gb = laid.gb18030_canteen
    assert sorted((r["record_id"], r["payment_method"]) for r in q(
        wh, "select record_id, payment_method from raw.canteens_meals where canteen_code = %s", (gb,))
    ) == sorted((m["record_id"], m["payment_method"]) for m in laid.night.meals if m["canteen_code"] == gb)


def _check_streets(wh: conninfo.ConnInfo, laid: Laid, ledger: list[dict]) -> None:
    """Coverage per street and district as the generator's registry without the displaced streets; the
    office workbook's compounds each with the generator's values (merged community cells, placeholders for
    no property company, 20210504 / 2021.5.4 dates), its instructions sheet and total rows recorded."""
    streets_out = {code for source, code in laid.displaced if source == "streets"}
    registry = [r for r in laid.night.compounds if r["street_code"] not in streets_out]
    scopes = _scopes(registry)
    got = {(r["scope_level"], r["scope_code"]): (r["compounds"], r["compounds_market"],
                                                 r["compounds_without_property_service"], r["communities"])
           for r in q(wh, "select * from marts.mart_property_coverage where service_date = %s", (DAY,))}
    assert got == {scope: (len(rows), sum(r["property_mode"] == "market" for r in rows),
                           sum(r["property_mode"] == "none" for r in rows), len({r["community_code"] for r in rows}))
                   for scope, rows in scopes.items()}
    got = {(r["scope_level"], r["scope_code"]): (r["compounds_with_party_org"], r["building_heads"],
                                                 r["unit_heads"], r["service_stations"])
           for r in q(wh, "select * from marts.mart_party_coverage where service_date = %s", (DAY,))}
    assert got == {scope: (sum(r["party_org_type"] != "none" for r in rows), sum(r["building_heads"] for r in rows),
                           sum(r["unit_heads"] for r in rows), sum(r["service_station"] for r in rows))
                   for scope, rows in scopes.items()}

    office = {r["compound_code"]: r for r in registry if r["street_code"] == laid.office_street}
    columns = ("community_code", "households", "buildings", "property_mode", "property_company", "party_org_type",
               "party_org_since", "building_heads", "unit_heads", "service_station")
    got = {r["compound_code"]: r for r in q(wh, "select * from marts.dim_compound where street_code = %s",
                                            (laid.office_street,))}
    assert got.keys() == office.keys()
    for code, r in office.items():
        assert {c: got[code][c] for c in columns} == {c: r[c] or None if c == "property_company" else r[c]
                                                      for c in columns}, code
        assert Decimal(str(got[code]["building_area_m2"])) == Decimal(str(r["building_area_m2"]))
    [notes] = [x["notes"] for x in ledger if x["file_path"].endswith(f"/{laid.office_street}.xlsx")]
    communities = len({r["community_code"] for r in office.values()})
    assert "not read: 填报说明" in notes and f"{communities + 1} total rows (合计/小计) skipped" in notes


def _check_points(wh: conninfo.ConnInfo, laid: Laid, odd_points: tuple[str, ...]) -> None:
    """Cases per point as generated; the mixed-keys and the array point's cases with their times."""
    cases = _expected_cases(laid.night.events)
    got = q(wh, "select point_code, service_request_id, received_at, closed_at, service_code, satisfaction "
                "from marts.fct_assistance_case")
    assert Counter(r["point_code"] for r in got) == Counter(point for point, _ in cases)
    for point in odd_points:
        assert {(r["point_code"], r["service_request_id"]): {k: r[k] for k in cases[(point, r["service_request_id"])]}
                for r in got if r["point_code"] == point} == {k: v for k, v in cases.items() if k[0] == point}


def _check_link_not_followed(wh: conninfo.ConnInfo, laid: Laid, ledger: list[dict], logs: str) -> None:
    """The linked file's content is nowhere: not in raw, audit, the logs, nor any file the night wrote
    (dbt's logs and target, GX's results and data docs, the outbox)."""
    stored = json.dumps(q(wh, "select * from audit.rejected_rows"), default=str, ensure_ascii=False) + json.dumps(
        ledger, default=str, ensure_ascii=False)
    assert "load summary" in logs  # the logs were captured
    assert [s for s in laid.secrets if s in stored or s in logs] == []
    assert q(wh, "select count(*) as n from raw.canteens_meals where record_id = any(%s)", (laid.secrets,)
             )[0]["n"] == 0
    written = [p for p in settings.local_dir().rglob("*") if p.is_file() and not p.is_symlink()]
    # the marked line only: the linked file's record ids are the scenario's, so another test's own landing
    # folder (the session's LANDING_DIR) holds them legitimately
    assert written and [p for p in written if _holds_any(p, [SECRET_MARK])] == []


def _holds_any(path: Path, texts: list[str]) -> bool:
    data = path.read_bytes()
    return any(t.encode() in data for t in texts)
