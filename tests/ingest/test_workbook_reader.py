"""Unit tests of the street-office workbook reader (ingest.workbook) on workbooks built here, shaped like
real 台账 files: merged data cells, lying sheet dimensions, several sheets, total rows, placeholders,
dates as offices write them, formulas and Excel errors, long preambles, zip bombs. No database.

Each test writes the workbook with openpyxl (and rewrites its XML with zipfile where openpyxl cannot
write the shape) and asserts the exact rows read, their values and the reasons of what is rejected.
"""

from __future__ import annotations

import re
import time
import tracemalloc
import zipfile
import zlib
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook

from ingest import normalize as n
from ingest import readers, tabular, workbook
from ingest.copy_encoder import NULL, RowEncoder
from ingest.copy_fast import FastBatchEncoder
from ingest.feeds import STREETS
from ingest.rejections import Rejection, UnreadableFile
from scenario.generator import STREET_HEADERS
from warehouse.reference import PROPERTY_MODES

pytestmark = pytest.mark.unit

STREET = "140105001"
COMMUNITY = STREET + "001"
OTHER_COMMUNITY = STREET + "002"


def code(i: int, community: str = COMMUNITY) -> str:
    return f"{community}{i:03d}"


def row(i: int, community: str = COMMUNITY, **changes) -> list:
    """A registry row in STREET_HEADERS order; `changes` by column name."""
    values = {"compound_code": code(i, community), "name": f"幸福{i}小区", "community_code": community,
              "households": 100 + i, "building_area_m2": 5000.5, "buildings": 3, "property_mode": "市场化物业",
              "property_company": "晋阳物业", "subsidy_start_month": None, "party_org_type": "党支部",
              "party_org_since": "2021-05-04", "owners_committee": "业委会", "building_heads": 3,
              "unit_heads": 6, "service_station": "有"}
    values.update(changes)
    return list(values.values())


def save(wb: Workbook, tmp_path: Path) -> Path:
    path = tmp_path / f"{STREET}.xlsx"
    wb.save(path)
    return path


def one_sheet(rows: list[list], title: str = "小区台账", above: list[list] = ()) -> Workbook:
    wb = Workbook()
    ws = wb.active
    ws.title = title
    for r in above:
        ws.append(r)
    ws.append(STREET_HEADERS)
    for r in rows:
        ws.append(r)
    return wb


def rewrite(path: Path, part: str, change) -> None:
    """Rewrite one part of the xlsx (its XML as text) with `change`."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info, data in entries:
            if info.filename == part:
                new = change(data.decode()).encode()
                assert new != data, "the rewrite changed nothing"
                data = new
            dst.writestr(info.filename, data)


def load(path: Path):
    """(loaded rows by compound code as raw-table dicts, rejections, row numbers read, the Rows object)."""
    rows = readers.read(STREETS, path)
    enc = RowEncoder(STREETS, STREET, path.name)
    loaded, rejections, numbers = {}, [], []
    for item in rows:
        if isinstance(item, Rejection):
            rejections.append(item)
            numbers.append(item.row_number)
            continue
        numbers.append(item[0])
        out = enc.encode(*item)
        if isinstance(out, Rejection):
            rejections.append(out)
        else:
            got = dict(zip(STREETS.raw_columns, out, strict=True))
            loaded[got["compound_code"]] = got
    return loaded, rows.relabel(rejections), numbers, rows


# ---------------------------------------------------------------- merged cells


def test_vertically_merged_data_cells_give_every_row_the_value(tmp_path):
    wb = one_sheet([row(1), row(2, community_code=None, property_mode=None, property_company=None),
                    row(3, community_code=None, property_mode=None, property_company=None), row(4)],
                   above=[["坞城街道小区台账"]])
    ws = wb.active
    ws["G3"] = "红色物业帮建"
    ws["H3"] = "红帮物业"
    for column in "CGH":
        ws.merge_cells(f"{column}3:{column}5")  # rows 3-5: compounds 1-3 of one community
    ws.merge_cells("A1:O1")
    path = save(wb, tmp_path)
    loaded, rejections, numbers, _ = load(path)
    assert rejections == []
    assert numbers == [3, 4, 5, 6]
    for i in (1, 2, 3):
        got = loaded[code(i)]
        assert (got["community_code"], got["property_mode"], got["property_company"]) == (
            COMMUNITY, "red_property", "红帮物业")
    assert (loaded[code(4)]["property_mode"], loaded[code(4)]["property_company"]) == ("market", "晋阳物业")


def test_a_merge_reaching_past_the_data_fills_no_blank_row(tmp_path):
    wb = one_sheet([row(1), row(2, community_code=None)])
    wb.active.merge_cells("C2:C6")  # the clerk merged further down than the data goes
    loaded, rejections, numbers, _ = load(save(wb, tmp_path))
    assert rejections == [] and numbers == [2, 3]
    assert loaded[code(2)]["community_code"] == COMMUNITY


def test_a_wide_merge_starting_before_the_header_is_known_is_cut_to_the_registry_columns(tmp_path):
    wb = one_sheet([row(1, community_code=None), row(2, community_code=None)], above=[["台账"]])
    ws = wb.active
    width = len(STREET_HEADERS)
    ws["C3"], ws.cell(3, width + 1).value = COMMUNITY, "核实中"
    # row 3, the first data row, is read while the header is still being looked for (a two-row header?)
    ws.merge_cells("C3:C4")
    # a remark over 17 columns right of the registry's (the optional ones included)
    ws.merge_cells(start_row=3, start_column=width + 1, end_row=4, end_column=width + 17)
    loaded, rejections, numbers, _ = load(save(wb, tmp_path))
    assert rejections == [] and numbers == [3, 4]
    assert [loaded[code(i)]["community_code"] for i in (1, 2)] == [COMMUNITY] * 2


def test_overlapping_merged_ranges_quarantine_the_file(tmp_path):
    wb = one_sheet([row(1), row(2)])
    path = save(wb, tmp_path)
    rewrite(path, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(
        "</sheetData>", '</sheetData><mergeCells count="17">' + '<mergeCell ref="A2:P3"/>' * 17 + "</mergeCells>"))
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "bad_merged_cells"


# ---------------------------------------------------------------- sheet dimensions


@pytest.mark.parametrize("declared", ["A1", "A1:C3"])
def test_a_lying_sheet_dimension_does_not_cut_rows(tmp_path, declared):
    path = save(one_sheet([row(i) for i in range(1, 8)]), tmp_path)
    rewrite(path, "xl/worksheets/sheet1.xml",
            lambda xml: re.sub(r'<dimension ref="[^"]*"', f'<dimension ref="{declared}"', xml))
    loaded, rejections, numbers, _ = load(path)
    assert rejections == []
    assert numbers == list(range(2, 9))
    assert sorted(loaded) == [code(i) for i in range(1, 8)]
    assert loaded[code(7)]["service_station"] == "t"  # column O, beyond the declared C


# ---------------------------------------------------------------- several sheets


def several_sheets() -> Workbook:
    wb = Workbook()
    guide = wb.active
    guide.title = "填报说明"
    guide.append(["填报说明"])
    guide.append(["1. 每个社区一个工作表；2. 小区编码为15位。"])
    for title, community, bad in (("东风社区", COMMUNITY, None), ("西河社区", OTHER_COMMUNITY, 2)):
        ws = wb.create_sheet(title)
        ws.append([f"{title}小区台账"])
        ws.append(STREET_HEADERS)
        for i in (1, 2, 3):
            ws.append(row(i, community, households="约300" if i == bad else 100 + i))
    wb.create_sheet("Sheet3")  # an empty default sheet
    return wb


def test_every_sheet_with_the_header_is_read_and_the_others_are_recorded(tmp_path):
    path = save(several_sheets(), tmp_path)
    loaded, rejections, numbers, rows = load(path)
    # sheet k of the workbook (1-based) numbers its rows (k - 1) * 10,000,000 + its own row number
    assert numbers == [10_000_003, 10_000_004, 10_000_005, 20_000_003, 20_000_004, 20_000_005]
    assert sorted(loaded) == sorted([code(i) for i in (1, 2, 3)] + [code(1, OTHER_COMMUNITY), code(3, OTHER_COMMUNITY)])
    [bad] = rejections
    assert (bad.row_number, bad.column, bad.reason_code) == (20_000_004, "households", "bad_integer")
    assert bad.message.startswith(f"{path.name}, row 20000004 (sheet 西河社区, row 4), column households: ")
    assert bad.raw_record["_sheet"] == "西河社区" and bad.raw_record["_sheet_row"] == 4
    assert [s.name for s in rows.workbook.sheets_read] == ["东风社区", "西河社区"]
    assert rows.workbook.sheets_skipped == ["填报说明", "Sheet3"]
    notes = rows.notes()
    assert any("填报说明" in note and "Sheet3" in note for note in notes)


def test_first_sheet_rows_keep_their_own_numbers_and_name_the_sheet(tmp_path):
    path = save(one_sheet([row(1), row(2, households="约300")]), tmp_path)
    _, [bad], numbers, _ = load(path)
    assert numbers == [2, 3]
    assert bad.message.startswith(f"{path.name}, row 3 (sheet 小区台账), column households: ")


def test_no_sheet_with_the_header_quarantines_the_file_naming_the_sheets(tmp_path):
    wb = Workbook()
    wb.active.title = "填报说明"
    wb.active.append(["说明"])
    wb.create_sheet("汇总").append(["社区", "小区数"])
    path = save(wb, tmp_path)
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "no_header"
    assert "填报说明" in str(err.value) and "汇总" in str(err.value) and path.name in str(err.value)


def test_a_registry_sheet_missing_required_columns_quarantines_the_file(tmp_path):
    wb = several_sheets()
    ws = wb["西河社区"]
    ws["G2"] = "物业情况"  # 物业服务方式 (required) is not named on this sheet
    path = save(wb, tmp_path)
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "missing_columns"
    assert "西河社区" in str(err.value) and "property_mode" in str(err.value)


# ---------------------------------------------------------------- total rows


TOTALS = ["合计", "合计：", "合  计", "总计", "共计", "小计", "全街道合计", "合计金额", "东风社区小计", "Total"]


def test_total_rows_in_any_column_are_skipped_and_counted(tmp_path):
    rows, expected = [], []
    for i, label in enumerate(TOTALS, start=1):
        rows.append(row(i))
        expected.append(code(i))
        total = [None] * len(STREET_HEADERS)
        total[i % 3] = label  # the label in column A, B or C
        total[3] = 500
        rows.append(total)
    path = save(one_sheet(rows), tmp_path)
    loaded, rejections, numbers, reader = load(path)
    assert rejections == []
    assert numbers == list(range(2, 2 + 2 * len(TOTALS), 2))  # only the data rows
    assert sorted(loaded) == sorted(expected)
    assert reader.workbook.total_rows == len(TOTALS)
    assert any(f"{len(TOTALS)} total rows" in note for note in reader.notes())


def test_a_row_with_its_own_compound_code_is_data_whatever_its_remark_says(tmp_path):
    wb = one_sheet([row(1) + ["已计入小计"], row(2) + ["合计"], [None, "小计", None, 201, None, None, None, None,
                                                                None, None, None, None, None, None, None, "合计"]])
    wb.active["P1"] = "备注"
    loaded, rejections, numbers, reader = load(save(wb, tmp_path))
    assert numbers == [2, 3] and sorted(loaded) == [code(1), code(2)] and rejections == []
    assert reader.workbook.total_rows == 1


def test_a_compound_whose_name_merely_contains_a_total_word_is_data():
    assert not tabular.is_total_row(["140105001001001", "合计小区东院", 3])
    assert tabular.is_total_row([None, "小计：", 3])
    assert tabular.is_total_row(["合 计", None])


# ---------------------------------------------------------------- placeholders


@pytest.mark.parametrize("placeholder", ["-", "/", "—", "无", "空", "N/A", "－", "n/a"])
def test_placeholders_are_empty(placeholder):
    assert n.to_text(placeholder) is None
    assert n.to_int(placeholder) is None
    assert n.to_decimal(placeholder) is None
    assert n.to_date(placeholder) is None


def test_placeholder_rule_keeps_none_as_a_value_of_enums_and_booleans():
    assert n.to_enum("无", PROPERTY_MODES) == "none"
    assert n.to_enum("-", PROPERTY_MODES) is None
    assert n.to_bool("无") is False
    assert n.to_bool("—") is None


def test_placeholders_in_optional_cells_load_as_empty(tmp_path):
    path = save(one_sheet([
        row(1, property_company="-", households="/", building_area_m2="—", subsidy_start_month="空",
            party_org_since="N/A", party_org_type="无", buildings="－", service_station="无"),
        row(2, property_mode="-"),  # required: a placeholder is no value
    ]), tmp_path)
    loaded, [missing], _, _ = load(path)
    got = loaded[code(1)]
    assert [got[c] for c in ("property_company", "households", "building_area_m2", "subsidy_start_month",
                             "party_org_since", "buildings")] == [NULL] * 6
    assert (got["party_org_type"], got["service_station"]) == ("none", "f")
    assert (missing.row_number, missing.column, missing.reason_code) == (3, "property_mode", "missing_value")


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize("value, expected", [
    (20220305, date(2022, 3, 5)),
    (20220305.0, date(2022, 3, 5)),
    ("20220305", date(2022, 3, 5)),
    ("2022.3.5", date(2022, 3, 5)),
    ("2022-3-5", date(2022, 3, 5)),
    (44625, date(2022, 3, 5)),  # Excel serial
    ("44625", date(2022, 3, 5)),
    ("2022年3月", date(2022, 3, 1)),
    (202203, date(2022, 3, 1)),
])
def test_dates_as_offices_write_them(value, expected):
    assert n.to_date(value) == expected


@pytest.mark.parametrize("value", [2019, 2019.0, "2019", "2019年"])
@pytest.mark.parametrize("month_only", [False, True])
def test_a_year_alone_is_rejected_not_read_as_an_excel_serial(value, month_only):
    with pytest.raises(n.CellError) as err:
        n.to_date(value, month_only=month_only)
    assert err.value.reason_code == "year_only"
    assert "2019" in str(err.value)


def test_not_a_calendar_date_in_eight_digits():
    with pytest.raises(n.CellError) as err:
        n.to_date(20220231)
    assert err.value.reason_code == "bad_date"


def test_dates_in_a_workbook(tmp_path):
    spellings = [20220305, "20220305", "2022.3.5", "2022-3-5", 44625, "2022年3月"]
    rows = [row(i, party_org_since=v) for i, v in enumerate(spellings, start=1)]
    rows.append(row(9, party_org_since=2019))
    rows.append(row(10, subsidy_start_month=2019, property_mode="财政补贴过渡"))
    loaded, rejections, _, _ = load(save(one_sheet(rows), tmp_path))
    assert [loaded[code(i)]["party_org_since"] for i in range(1, 7)] == ["2022-03-05"] * 5 + ["2022-03-01"]
    assert [(r.row_number, r.column, r.reason_code) for r in rejections] == [
        (8, "party_org_since", "year_only"), (9, "subsidy_start_month", "year_only")]


# ---------------------------------------------------------------- formulas and Excel errors


def test_formulas_without_a_value_and_excel_errors_are_rejected_saying_so(tmp_path):
    wb = one_sheet([row(1), row(2), row(3), row(4), row(5), row(6), row(7)])
    ws = wb.active
    ws["D3"] = "=SUM(100,2)"  # openpyxl writes the formula without a cached value
    ws["E4"] = "#REF!"  # an error value (t="e")
    ws["D5"] = "#N/A"
    ws["B6"] = "#N/A"  # the name: today it would load as a compound called #N/A
    ws.cell(2, len(STREET_HEADERS) + 1).value = "#REF!"  # outside the registry columns: no reason to reject the row
    path = save(wb, tmp_path)
    # compound 6: a formula whose cached value is #DIV/0!; compound 7: a formula with its cached value
    rewrite(path, "xl/worksheets/sheet1.xml", lambda xml: re.sub(
        r'<c r="D8"[^>]*>.*?</c>', '<c r="D8"><f>SUM(D2:D7)</f><v>321</v></c>', re.sub(
            r'<c r="D7"[^>]*>.*?</c>', '<c r="D7" t="e"><f>D6/0</f><v>#DIV/0!</v></c>', xml)))
    loaded, rejections, numbers, _ = load(path)
    assert numbers == [2, 3, 4, 5, 6, 7, 8]
    assert sorted(loaded) == [code(1), code(7)]
    assert loaded[code(7)]["households"] == "321"
    got = [(r.row_number, r.column, r.reason_code) for r in rejections]
    assert got == [(3, "households", "formula_no_value"), (4, "building_area_m2", "formula_error"),
                   (5, "households", "formula_error"), (6, "name", "formula_error"),
                   (7, "households", "formula_error")]
    assert "formula" in rejections[0].message and "no saved value" in rejections[0].message
    assert "#REF!" in rejections[1].message and "#DIV/0!" in rejections[4].message
    assert rejections[0].message.startswith(f"{path.name}, row 3 (sheet 小区台账), column households: ")


def test_a_formula_whose_saved_result_is_empty_text_is_an_empty_cell(tmp_path):
    path = save(one_sheet([row(1), row(2)]), tmp_path)
    rewrite(path, "xl/worksheets/sheet1.xml", lambda xml: re.sub(
        r'<c r="H2"[^>]*>.*?</c>', '<c r="H2" t="str"><f>IF(G2="无","","x")</f><v></v></c>', re.sub(
            r'<c r="H3"[^>]*>.*?</c>', '<c r="H3"><f t="shared" ref="H3:H3" si="0">H2</f></c>', xml)))
    loaded, rejections, _, _ = load(path)
    assert loaded[code(1)]["property_company"] == NULL
    assert [(r.row_number, r.column, r.reason_code) for r in rejections] == [(3, "property_company", "formula_no_value")]


# ---------------------------------------------------------------- header position


def test_header_below_a_long_preamble_is_found(tmp_path):
    preamble = [[f"说明第{i}行"] for i in range(1, 30)]
    loaded, rejections, numbers, _ = load(save(one_sheet([row(1), row(2)], above=preamble), tmp_path))
    assert numbers == [31, 32] and sorted(loaded) == [code(1), code(2)] and rejections == []


def test_header_search_is_bounded(tmp_path):
    preamble = [[f"说明第{i}行"] for i in range(1, workbook.HEADER_SCAN_ROWS + 1)]
    path = save(one_sheet([row(1)], above=preamble), tmp_path)
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "no_header"
    assert f"first {workbook.HEADER_SCAN_ROWS} rows" in str(err.value)


# ---------------------------------------------------------------- size limits


def test_a_zip_bomb_is_quarantined_before_it_is_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "MAX_UNCOMPRESSED_BYTES", 20 << 20)
    path = save(one_sheet([row(1)]), tmp_path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("xl/media/image1.bin", "w") as part:
        chunk = b"\0" * (1 << 20)
        for _ in range(25):  # 25 MB of zeros: about 25 KB compressed
            part.write(chunk)
    assert path.stat().st_size < 200_000
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "workbook_too_large"
    assert path.name in str(err.value) and "20 MB" in str(err.value)


def test_a_part_read_whole_has_its_own_limit(tmp_path, monkeypatch):
    path = save(one_sheet([row(1)]), tmp_path)
    with zipfile.ZipFile(path) as zf:  # the largest part openpyxl reads whole (theme, styles, strings)
        largest = max((i for i in zf.infolist() if not i.filename.startswith("xl/worksheets/")),
                      key=lambda i: i.file_size)
    monkeypatch.setattr(workbook, "MAX_LOADED_PART_BYTES", largest.file_size - 1)
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "workbook_too_large" and largest.filename in str(err.value)
    monkeypatch.setattr(workbook, "MAX_LOADED_PART_BYTES", largest.file_size)
    assert [rn for rn, _ in readers.read(STREETS, path)] == [2]


def _lie_about_sizes(path: Path, part: str, declared: int) -> None:
    """Patch the uncompressed size that the zip's local header and central directory give for `part`."""
    data = bytearray(path.read_bytes())
    name = part.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[start + offset:start + offset + 4] = declared.to_bytes(4, "little")
            start += 4
    path.write_bytes(bytes(data))


def test_a_zip_lying_about_its_sizes_is_read_no_further_than_it_declares(tmp_path):
    path = save(one_sheet([row(1)]), tmp_path)
    part = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(path) as zf:
        entries = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
    sheet = dict(entries)[part]
    assert sheet.endswith(b"</worksheet>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            if name != part:
                zf.writestr(name, data)
        with zf.open(part, "w") as out:  # 300 MB of XML whitespace inside the sheet, about 300 KB compressed
            out.write(sheet[:-len(b"</worksheet>")])
            pad = b" " * (1 << 20)
            for _ in range(300):
                out.write(pad)
            out.write(b"</worksheet>")
    _lie_about_sizes(path, part, len(sheet))  # it says it holds only the small sheet
    assert zlib.crc32(b"") == 0 and path.stat().st_size < 2_000_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(UnreadableFile) as err:
            list(readers.read(STREETS, path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.reason_code == "unreadable_workbook"
    assert peak < 50 << 20 and time.monotonic() - started < 30


def test_not_a_zip_at_all_is_unreadable(tmp_path):
    path = tmp_path / f"{STREET}.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "unreadable_workbook"


def test_the_encoders_fast_paths_leave_placeholders_to_the_row_path():
    """A placeholder is no value (to_text gives None) on every path of the encoder: the column-wise checks
    of plain ASCII text pass it to the row path, which rejects it in a required column."""
    from ingest.feeds import CANTEENS

    good = ["R2023110600000001", "CT140105001001", "2023-11-06 12:00:00", "午", "老年人", "", "70", "9.00", "3.00",
            "微信"]
    placeholder = ["-", *good[1:]]
    enc = RowEncoder(CANTEENS, "CT140105001001", "CT140105001001.csv")
    by_row = enc.encode(2, placeholder)
    assert (by_row.column, by_row.reason_code) == ("record_id", "missing_value")
    columns = [[a.encode(), b.encode()] for a, b in zip(good, placeholder, strict=True)]
    _, rejected, [plain] = FastBatchEncoder(RowEncoder(CANTEENS, "CT140105001001", "x.csv")).encode(1, columns)
    assert rejected == [1] and (plain.column, plain.reason_code) == ("record_id", "missing_value")


def test_an_xls_or_password_protected_file_says_what_it_is(tmp_path):
    path = tmp_path / f"{STREET}.xlsx"
    path.write_bytes(workbook.OLE2_MAGIC + bytes(4096))  # the compound-file container of .xls and encrypted .xlsx
    with pytest.raises(UnreadableFile) as err:
        list(readers.read(STREETS, path))
    assert err.value.reason_code == "unreadable_workbook"
    assert "(.xls)" in str(err.value) and "password" in str(err.value)


# ---------------------------------------------------------------- the optional programme columns (issue 23)

BASE_HEADERS = STREET_HEADERS[:15]  # the registry as DESIGN.md section 5 lists it, without the optional columns
PROGRAMME = {  # the optional columns, in STREET_HEADERS order, as an office fills them in
    "grid_code": "14010500100101", "micro_grids": 2, "grid_assistants": "３", "party_org_on_grid": "是",
    "party_positions": 1, "secretary_type": "居民党员", "part_time_members": 2, "party_members": 9,
    "property_party_branch": "有", "party_instructors": 1, "dual_model": "√", "self_funding": "否",
    "courtyards_merged": 3, "micro_positions": 0, "in_service_members": 12,
}


def programme_row(i: int, **changes) -> list:
    return row(i) + list({**PROGRAMME, **changes}.values())


def test_the_optional_columns_load_with_merged_cells_full_width_digits_and_placeholders(tmp_path):
    wb = one_sheet([programme_row(1), programme_row(2, grid_code=None, party_instructors="-", secretary_type="/",
                                                    in_service_members="无", dual_model="无"),
                    programme_row(3, grid_code=None, micro_grids="２", courtyards_merged="—")],
                   above=[["坞城街道小区（院落）台账"]])
    ws = wb.active
    grid = STREET_HEADERS.index("所属网格") + 1
    ws.merge_cells(start_row=3, start_column=grid, end_row=5, end_column=grid)  # one grid over three compounds
    loaded, rejections, numbers, _ = load(save(wb, tmp_path))
    assert rejections == [] and numbers == [3, 4, 5]
    first, second, third = (loaded[code(i)] for i in (1, 2, 3))
    assert [r["grid_code"] for r in (first, second, third)] == ["14010500100101"] * 3
    assert (first["micro_grids"], first["grid_assistants"], first["party_org_on_grid"]) == ("2", "3", "t")
    assert (first["secretary_type"], first["part_time_members"], first["party_members"]) == ("resident_member", "2", "9")
    assert (first["property_party_branch"], first["party_instructors"], first["dual_model"]) == ("t", "1", "t")
    assert (first["self_funding"], first["courtyards_merged"], first["in_service_members"]) == ("f", "3", "12")
    # placeholders: empty counts and types; 无 in a yes/no column is a "no"
    assert [second[c] for c in ("party_instructors", "secretary_type", "in_service_members")] == [NULL] * 3
    assert second["dual_model"] == "f"
    assert (third["micro_grids"], third["courtyards_merged"]) == ("2", NULL)


def test_a_workbook_without_the_optional_columns_stays_valid(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.title = "小区台账"
    ws.append(BASE_HEADERS)
    ws.append(row(1))
    loaded, rejections, _, _ = load(save(wb, tmp_path))
    assert rejections == []
    got = loaded[code(1)]
    assert got["households"] == "101"
    assert [got[c] for c in PROGRAMME] == [NULL] * len(PROGRAMME)


def test_the_optional_columns_under_their_english_aliases_in_any_order(tmp_path):
    wb = Workbook()
    ws = wb.active
    ws.append(["compound_code", "name", "property_mode", "Secretary_Type", "dual model", "GRID_CODE", "in_service_members"])
    ws.append([code(1), "幸福1小区", "market", "community_cadre", "yes", "G-07", "５"])
    loaded, rejections, _, _ = load(save(wb, tmp_path))
    assert rejections == []
    got = loaded[code(1)]
    assert (got["secretary_type"], got["dual_model"], got["grid_code"], got["in_service_members"]) == (
        "community_cadre", "t", "G-07", "5")


def test_bad_values_in_the_optional_columns_reject_the_row_naming_the_column(tmp_path):
    path = save(one_sheet([
        programme_row(1),
        programme_row(2, secretary_type="物业经理"),  # not one of 居民党员 / 社区干部 / 其他
        programme_row(3, micro_grids="约5"),  # a clerk's estimate
        programme_row(4, party_members=-3),
        programme_row(5, dual_model="推广中"),
        programme_row(6, courtyards_merged=2.5),
    ]), tmp_path)
    loaded, rejections, _, _ = load(path)
    assert sorted(loaded) == [code(1)]
    got = [(r.row_number, r.column, r.reason_code) for r in rejections]
    assert got == [(3, "secretary_type", "bad_enum"), (4, "micro_grids", "bad_integer"),
                   (5, "party_members", "negative_value"), (6, "dual_model", "bad_boolean"),
                   (7, "courtyards_merged", "bad_integer")]
    assert rejections[0].message.startswith(f"{path.name}, row 3 (sheet 小区台账), column secretary_type: ")
    assert "居民党员" in rejections[0].message  # says what is accepted
    assert rejections[0].raw_record["secretary_type"] == "物业经理"  # the row is kept, with its reason


def test_a_header_naming_half_the_original_columns_is_still_the_header(tmp_path):
    """The optional columns do not raise the bar for recognising a header: an office's workbook naming 7
    of the 15 original columns was read before them and still is."""
    assert STREETS.header_needed == 7
    wb = Workbook()
    ws = wb.active
    ws.append(["小区台账"])
    ws.append(["小区编码", "小区名称", "所属社区", "户数", "物业服务方式", "党组织类型", "楼栋长数"])
    ws.append([code(1), "幸福1小区", COMMUNITY, 120, "市场化物业", "党支部", 4])
    loaded, rejections, numbers, _ = load(save(wb, tmp_path))
    assert rejections == [] and numbers == [3]
    assert (loaded[code(1)]["households"], loaded[code(1)]["grid_code"]) == ("120", NULL)
