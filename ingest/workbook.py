"""The street offices' registry workbooks (.xlsx), as they really come: Tencent Docs / WPS exports that
declare a one-cell sheet, 社区 and 物业 columns merged down a community's compounds, one sheet per
community behind a 填报说明 sheet, 小计 / 合计 rows, formulas saved without their values.

What the reader does, in order:
- the zip is checked before anything opens it: more than MAX_UNCOMPRESSED_BYTES declared uncompressed,
  more than MAX_PARTS parts, or a part other than a worksheet or a picture (those openpyxl holds whole:
  shared strings, styles) of more than MAX_LOADED_PART_BYTES quarantines it as `workbook_too_large`.
  Python's zipfile never gives more bytes of a part than the part declares (a part lying about its
  size fails its CRC check), so what is read stays within what was checked;
- every worksheet is read, cell by cell as stored, whatever its <dimension> says; a sheet with no
  registry header in its first HEADER_SCAN_ROWS rows is skipped and recorded (`sheets_skipped`,
  `notes()`, a log line); a file where no sheet has one is quarantined (`no_header`);
- a merged range gives its value to every cell of it (read-only openpyxl does not expose merged
  ranges: they are found in the sheet's XML first, one streaming pass of byte searches);
- blank rows and total rows are skipped (ingest.tabular.data_rows), total rows counted (`total_rows`);
- a row with an Excel error (#REF!, #N/A, #DIV/0! ...) or a formula without a saved value in one of
  the registry's columns is rejected, `formula_error` or `formula_no_value`, naming the column.

Row numbers are unique within the file: sheet k of the workbook (1-based, every sheet counted) numbers
its row r as (k - 1) * SHEET_ROWS + r, so a one-sheet workbook keeps the row numbers a clerk sees, and
row 4 of the third sheet is 20000004. Messages name the sheet and its own row number:
"<file>, row 20000004 (sheet 西河社区, row 4), column households: ...", and a rejected row's raw_record
carries `_sheet` and `_sheet_row`.
"""

from __future__ import annotations

import logging
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest import pii
from ingest.feeds import FeedSpec
from ingest.rejections import Rejection, UnreadableFile, safe_record
from ingest.tabular import RowOrRejection, column_order, data_rows, is_blank, map_header

log = logging.getLogger(__name__)

HEADER_SCAN_ROWS = 60  # exports put long preambles (填报说明, 指标解释) above the header
MAX_UNCOMPRESSED_BYTES = 32 << 20  # a street's registry of 1,200 compounds unpacks to well under 2 MB
# openpyxl holds some parts whole in memory (shared strings, styles: ~10 times their size); worksheets it
# streams (about 100 bytes a row stay behind), media it does not read
MAX_LOADED_PART_BYTES = 8 << 20
_STREAMED_PARTS = ("xl/worksheets/", "xl/media/")
MAX_PARTS = 1000
SHEET_ROWS = 10_000_000  # more than the 1,048,576 rows a sheet can have
MAX_SHEETS = 200  # row numbers stay within a PostgreSQL integer
MAX_MERGED_RANGES = 20_000
MAX_COLUMNS = 16_384  # XFD, the last column a sheet can have
SCAN_CHUNK = 1 << 20

EXCEL_ERRORS = frozenset({"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA",
                          "#SPILL!", "#CALC!", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"})


class _NoSavedValue:
    """A formula cell saved without its result (written by a program that does not calculate)."""

    def __repr__(self) -> str:
        return "<formula without a saved value>"


NO_SAVED_VALUE = _NoSavedValue()
_BAD_CELLS = EXCEL_ERRORS | {NO_SAVED_VALUE}


@dataclass
class Sheet:
    name: str
    position: int  # 1-based, among all the workbook's sheets
    width: int = MAX_COLUMNS  # columns worth reading: up to the last registry column once the header is known

    @property
    def offset(self) -> int:
        return (self.position - 1) * SHEET_ROWS


class WorkbookRows:
    """The data rows of one workbook, every registry sheet in turn, as (file-unique row number, values in
    FeedSpec order) or a Rejection; `relabel` names the sheet in the encoder's rejections of them."""

    def __init__(self, spec: FeedSpec, path: Path):
        self.spec, self.path = spec, path
        self.sheets_read: list[Sheet] = []
        self.sheets_skipped: list[str] = []
        self._names: dict[int, str] = {}  # position -> sheet name
        self._totals: list[int] = []  # file-unique row numbers of the total rows skipped

    @property
    def total_rows(self) -> int:
        return len(self._totals)

    def __iter__(self) -> Iterator[RowOrRejection]:
        check_archive(self.path)
        from openpyxl import load_workbook

        try:
            wb = load_workbook(self.path, read_only=True, data_only=True)
        except Exception as err:  # openpyxl raises many kinds for a damaged workbook
            raise _unreadable(self.path, f"not a readable .xlsx workbook ({type(err).__name__})") from None
        try:
            yield from self._sheets(wb)
        finally:
            wb.close()
        for note in self.notes():
            log.info("%s", note)

    def _sheets(self, wb: Any) -> Iterator[RowOrRejection]:
        names = wb.sheetnames
        if len(names) > MAX_SHEETS:
            raise UnreadableFile("too_many_sheets", f"{self.path.name}: {len(names)} sheets, more than the "
                                   f"{MAX_SHEETS} the reader takes")
        for position, name in enumerate(names, start=1):
            self._names[position] = name
            ws = wb[name]
            if not hasattr(ws, "_get_source"):  # a chart sheet
                self.sheets_skipped.append(name)
                continue
            sheet = Sheet(name, position)
            yield from self._sheet(wb, ws, sheet)
        if not self.sheets_read:
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise UnreadableFile("no_header", pii.scrub_free_text(  # sheet names are free text
                f"{self.path.name}: no sheet has a header row naming the {self.spec.source} columns in its "
                f"first {HEADER_SCAN_ROWS} rows (sheets: {shown})"))

    def _sheet(self, wb: Any, ws: Any, sheet: Sheet) -> Iterator[RowOrRejection]:
        rows = _guarded(_cells(wb, ws, sheet, self.path), self.path, sheet)
        try:
            mapping, rest = map_header(self.spec, rows, self.path, HEADER_SCAN_ROWS)
        except UnreadableFile as err:
            if err.reason_code != "no_header":
                raise
            self.sheets_skipped.append(sheet.name)
            return
        try:
            order = column_order(self.spec, mapping, self.path)
        except UnreadableFile as err:  # the sheet looks like the registry but cannot be read as it
            raise UnreadableFile(err.reason_code, pii.scrub_free_text(str(err).replace(
                f"{self.path.name}:", f"{self.path.name}, sheet {sheet.name}:", 1))) from None
        self.sheets_read.append(sheet)
        sheet.width = max(i for i in order if i is not None) + 1
        totals: list[int] = []
        offset = sheet.offset
        for row_number, values in data_rows(order, rest, totals):
            if _BAD_CELLS.isdisjoint(values):
                yield offset + row_number, values
            else:
                yield self._bad_cell(sheet, row_number, values)
        self._totals += [offset + t for t in totals]

    def _bad_cell(self, sheet: Sheet, row_number: int, values: list[Any]) -> Rejection:
        """The rejection of a row holding an Excel error or a formula without a value in a registry column."""
        column, value = next((c, v) for c, v in zip(self.spec.columns, values, strict=True)
                             if v is NO_SAVED_VALUE or (isinstance(v, str) and v in EXCEL_ERRORS))
        if value is NO_SAVED_VALUE:
            reason, detail = "formula_no_value", (
                "the cell holds a formula with no saved value (the file was written by a program that does not "
                "calculate formulas): open it in Excel or WPS and save it again, or type the value")
        else:
            reason, detail = "formula_error", (
                f"the cell holds the Excel error {value} (a formula that cannot be calculated, e.g. one pointing "
                "at a deleted cell): correct the formula or type the value")
        number = sheet.offset + row_number
        record = dict(zip((c.name for c in self.spec.columns), values, strict=True))
        record = safe_record({k: _shown(v) for k, v in record.items()}, self.spec.pii_columns)
        message = f"{self._where(number)}, column {column.name}: {detail}"
        return Rejection(number, column.name, reason, pii.scrub_free_text(message),
                         {**record, "_sheet": sheet.name, "_sheet_row": row_number})

    def _where(self, number: int) -> str:
        """'<file>, row N (sheet S)' on the first sheet, '<file>, row N (sheet S, row n)' on the others."""
        position, row_number = divmod(number, SHEET_ROWS)
        name = self._names.get(position + 1, "?")
        own = f", row {row_number}" if position else ""
        return f"{self.path.name}, row {number} (sheet {name}{own})"

    def relabel(self, rejections: list[Rejection]) -> list[Rejection]:
        """The encoder's rejections of this workbook's rows, their messages and records naming the sheet."""
        out = []
        for rej in rejections:
            prefix = f"{self.path.name}, row {rej.row_number}"
            if rej.message.startswith(prefix) and not rej.message.startswith(prefix + " (sheet "):
                position, row_number = divmod(rej.row_number, SHEET_ROWS)
                message = pii.scrub_free_text(self._where(rej.row_number)) + rej.message[len(prefix):]
                record = {**rej.raw_record, "_sheet": self._names.get(position + 1), "_sheet_row": row_number}
                rej = Rejection(rej.row_number, rej.column, rej.reason_code, message, record)
            out.append(rej)
        return out

    def notes(self) -> list[str]:
        """What was skipped without being a rejected row: sheets without the header, total rows."""
        out = []
        if self.sheets_skipped:
            out.append(f"{self.path.name}: sheets without the {self.spec.source} header, not read: "
                       f"{', '.join(self.sheets_skipped)}")
        if self._totals:
            shown = ", ".join(map(str, self._totals[:10])) + (" ..." if len(self._totals) > 10 else "")
            out.append(f"{self.path.name}: {len(self._totals)} total rows (合计/小计) skipped, not data: rows {shown}")
        return out


def _shown(value: Any) -> Any:
    """A cell as the rejected row's record keeps it (safe_record makes every other value text)."""
    return repr(value) if value is NO_SAVED_VALUE else value


def _unreadable(path: Path, detail: str) -> UnreadableFile:
    return UnreadableFile("unreadable_workbook", f"{path.name}: {detail}")


def check_archive(path: Path) -> None:
    """Quarantine a file that is no zip, or whose parts would unpack to more than the limit (a zip bomb:
    a 200 KB file can declare 500 MB), before any XML of it is parsed."""
    try:
        with zipfile.ZipFile(path) as zf:
            parts = zf.infolist()
    except Exception as err:  # BadZipFile, OSError, a damaged central directory
        raise _unreadable(path, _not_a_zip(path, err)) from None
    declared = sum(p.file_size for p in parts)
    if declared > MAX_UNCOMPRESSED_BYTES or len(parts) > MAX_PARTS:
        raise UnreadableFile("workbook_too_large", (
            f"{path.name}: the workbook unpacks to {declared / (1 << 20):.0f} MB in {len(parts)} parts, more "
            f"than the limit of {MAX_UNCOMPRESSED_BYTES >> 20} MB and {MAX_PARTS} parts (a street's registry "
            "needs a few MB): save it again without pictures or attachments"))
    loaded = max((p for p in parts if not p.filename.startswith(_STREAMED_PARTS)), key=lambda p: p.file_size,
                 default=None)
    if loaded is not None and loaded.file_size > MAX_LOADED_PART_BYTES:
        raise UnreadableFile("workbook_too_large", (
            f"{path.name}: its part {loaded.filename} unpacks to {loaded.file_size / (1 << 20):.1f} MB, more than "
            f"the limit of {MAX_LOADED_PART_BYTES >> 20} MB for a part read whole (a street's registry needs "
            "well under 1 MB): save it again as a new workbook"))


OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (Excel 97-2003), .et, and password-protected .xlsx


def _not_a_zip(path: Path, err: Exception) -> str:
    try:
        with path.open("rb") as f:
            magic = f.read(len(OLE2_MAGIC))
    except OSError:
        magic = b""
    if magic == OLE2_MAGIC:
        return ("an Excel 97-2003 (.xls) or WPS (.et) file, or a workbook protected by a password, not an .xlsx "
                "workbook: save it as an Excel workbook (.xlsx) without a password")
    return f"not a readable .xlsx workbook ({type(err).__name__})"


def _guarded(rows: Iterator[tuple[int, list[Any]]], path: Path, sheet: Sheet) -> Iterator[tuple[int, list[Any]]]:
    """A workbook that opens but breaks while a sheet is read (truncated XML, a part failing its CRC
    check, a cell reference out of range) is unreadable too."""
    try:
        yield from rows
    except UnreadableFile:
        raise
    except Exception as err:
        raise _unreadable(path, f"sheet {sheet.name} cannot be read ({type(err).__name__})") from None


def _cells(wb: Any, ws: Any, sheet: Sheet, path: Path) -> Iterator[tuple[int, list[Any]]]:
    """(row number, values) of every row the sheet stores, merged ranges filled, as far as the cells go:
    the sheet's declared dimension is never consulted (it lies in Tencent Docs / WPS exports)."""
    merges = _MergeFill(_merged_ranges(ws, path))
    with ws._get_source() as src:
        # openpyxl's read-only sheet, without its dimension-bound row padding, with formulas marked
        parser = _cell_parser()(src, ws._shared_strings, data_only=True, epoch=wb.epoch,
                                date_formats=wb._date_formats, timedelta_formats=wb._timedelta_formats)
        for row_number, cells in parser.parse():
            if not cells:
                continue
            limit = sheet.width
            values = [None] * min(max(c["column"] for c in cells), limit)
            for c in cells:
                if c["column"] <= limit:
                    values[c["column"] - 1] = c["value"]
            if merges:
                values = merges.fill(row_number, values, limit, path)
            yield row_number, values


_PARSER = None


def _cell_parser() -> type:
    """openpyxl's sheet parser, a formula cell without a saved value read as NO_SAVED_VALUE rather than
    as an empty cell (data_only gives None for both). A formula whose result is empty text is saved as
    t="str" with an empty <v>: that cell is empty indeed."""
    global _PARSER
    if _PARSER is None:
        from openpyxl.worksheet._reader import FORMULA_TAG, WorkSheetParser

        class Parser(WorkSheetParser):
            def parse_cell(self, element: Any) -> dict:
                cell = super().parse_cell(element)
                if cell["value"] is None and cell["data_type"] != "str" and element.find(FORMULA_TAG) is not None:
                    cell["value"] = NO_SAVED_VALUE
                return cell

        _PARSER = Parser
    return _PARSER


_MERGE_RE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Za-z]{1,3})(\d{1,7})(?::([A-Za-z]{1,3})(\d{1,7}))?"')


def _column(letters: bytes) -> int:
    number = 0
    for ch in letters.upper():
        number = number * 26 + ch - 64
    return number


def _merged_ranges(ws: Any, path: Path) -> list[tuple[int, int, int, int]]:
    """The sheet's merged ranges (min_row, min_col, max_row, max_col), sorted by first row, from byte
    searches over the sheet's XML in chunks (<mergeCells> follows the cells, so it is known only at
    the end of a pass: this is a pass of its own). No element spans a '<', so a chunk is searched up
    to its last '<' and the rest carried over."""
    ranges = []
    carry = b""
    with ws._get_source() as src:
        while True:
            chunk = src.read(SCAN_CHUNK)
            data = carry + chunk
            cut = data.rfind(b"<") if chunk else len(data)
            if cut < 0:
                cut = len(data)
            if b"mergeCell" in data:
                for m in _MERGE_RE.finditer(data, 0, cut):
                    c0, r0, c1, r1 = m.groups()
                    if c1 is None or (c0, r0) == (c1, r1):
                        continue  # a one-cell range changes nothing
                    ranges.append((int(r0), _column(c0), int(r1), _column(c1)))
                    if len(ranges) > MAX_MERGED_RANGES:
                        raise UnreadableFile("bad_merged_cells", f"{path.name}: more than {MAX_MERGED_RANGES} "
                                               f"merged ranges on sheet {ws.title}")
            if not chunk:
                break
            carry = data[cut:]
    return sorted((min(a, c), min(b, d), max(a, c), max(b, d)) for a, b, c, d in ranges)


class _MergeFill:
    """Gives each cell of a merged range the value of its top-left cell, row by row as the rows stream by.
    Only rows with content of their own are filled: a merge reaching below the data makes no rows."""

    def __init__(self, ranges: list[tuple[int, int, int, int]]):
        self.ranges, self.next, self.active = ranges, 0, []

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def fill(self, row: int, values: list[Any], limit: int, path: Path) -> list[Any]:
        ranges = self.ranges
        while self.next < len(ranges) and ranges[self.next][0] <= row:
            r0, c0, r1, c1 = ranges[self.next]
            self.next += 1
            if r1 >= row and c0 <= limit:
                top_left = values[c0 - 1] if r0 == row and c0 <= len(values) else None
                self.active.append((r1, c0, c1, top_left))
        self.active = [a for a in self.active if a[0] >= row]
        # the header, once found, narrows `limit`: ranges are cut to it here, not when they start
        spans = [(c0, min(c1, limit), value) for _, c0, c1, value in self.active if c0 <= limit]
        # ranges that do not overlap cover distinct cells of a row: more than its width means they do
        # (Excel never writes that), and would make each row cost more than its cells
        if sum(c1 - c0 + 1 for c0, c1, _ in spans) > limit:
            raise UnreadableFile("bad_merged_cells", f"{path.name}: overlapping merged ranges at row {row}")
        if is_blank(values):
            return values
        for c0, c1, value in spans:
            if value is None:
                continue
            if len(values) < c1:
                values += [None] * (c1 - len(values))
            values[c0 - 1:c1] = [value] * (c1 - c0 + 1)
        return values
