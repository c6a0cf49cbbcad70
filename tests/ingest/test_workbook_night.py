"""A street office's real-shaped workbook laid over a generated night, loaded into a real PostgreSQL:
an instructions sheet first, one sheet per community, the community column merged down each block,
a 小计 row after each block and a 全街道合计 row at the end, placeholders, dates as 20210504 and
2021.5.4, every sheet declaring the dimension A1 (Tencent Docs / WPS), and three bad rows (an Excel
error, a formula without a saved value, a year for a date). Every genuine row loads, with the values of
the generator's registry; the three are rejected naming sheet, row and column.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import loader
from scenario.generator import Scenario
from tests.support.realworld_files import office_workbook, street_with_communities

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)


def q(wh, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def test_an_office_workbook_over_a_generated_night_loads_every_genuine_row(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    scenario = Scenario()
    registry = scenario.registry_rows(DAY)
    scenario.write_night(DAY, tmp_path, feeds=("streets",))
    street = street_with_communities(registry)
    expected = {r["compound_code"]: r for r in registry if r["street_code"] == street}
    path = tmp_path / "streets" / DAY.isoformat() / f"{street}.xlsx"
    bad = office_workbook(list(expected.values()), path)

    results = {r.path: r for r in loader.load_night(wh, tmp_path, "streets", DAY)}
    r = results[path]
    assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == (
        "loaded", len(expected) + 3, len(expected), 3)
    assert all(x.status == "loaded" for x in results.values())
    assert sum(x.rows_loaded for x in results.values()) == len(registry)
    # the instructions sheet and the total rows (a 小计 per community, one 全街道合计) are recorded, not lost
    notes = q(wh, "select notes from audit.load_ledger where load_id = %s", (r.load_id,))[0]["notes"]
    communities = len({e["community_code"] for e in expected.values()})
    assert "not read: 填报说明" in notes
    assert f"{communities + 1} total rows (合计/小计) skipped" in notes

    loaded = q(wh, "select * from raw.streets_compounds where _load_id = %s", (r.load_id,))
    assert len({x["_row_number"] for x in loaded}) == len(loaded)  # unique across the sheets
    got = {x["compound_code"]: x for x in loaded}
    assert got.keys() == expected.keys()
    for code, e in expected.items():
        g = got[code]
        assert g["community_code"] == e["community_code"]  # the merged cell, on every row of its block
        assert g["property_company"] == (e["property_company"] or None)
        assert g["party_org_since"] == e["party_org_since"]
        assert g["households"] == e["households"]
        assert Decimal(str(g["building_area_m2"])) == Decimal(str(e["building_area_m2"]))
        assert g["property_mode"] == e["property_mode"]

    rejected = q(wh, "select * from audit.rejected_rows where load_id = %s order by row_number", (r.load_id,))
    assert Counter(x["reason_code"] for x in rejected) == {"formula_error": 1, "formula_no_value": 1, "year_only": 1}
    columns = {"formula_error": "households", "formula_no_value": "households", "year_only": "party_org_since"}
    for x in rejected:
        code = x["raw_record"]["compound_code"]
        sheet, sheet_row = bad[code]
        position = ["填报说明", *sorted(f"社区{c[-3:]}" for c in {e["community_code"] for e in expected.values()})
                    ].index(sheet) + 1
        assert x["row_number"] == (position - 1) * 10_000_000 + sheet_row
        assert x["column_name"] == columns[x["reason_code"]]
        assert x["message"].startswith(f"{path.name}, row {x['row_number']} (sheet {sheet}, row {sheet_row}), "
                                       f"column {x['column_name']}: ")
        assert (x["raw_record"]["_sheet"], x["raw_record"]["_sheet_row"]) == (sheet, sheet_row)
