"""One reader per source format. Each yields (row number, [value per FeedSpec column]) in file order, or a
Rejection for a row that cannot even be parsed; a file that cannot be read at all raises
UnreadableFile. Header aliases, NFKC and typing happen later, in the shared FeedSpec path.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest import normalize as n
from ingest.feeds import FeedSpec, Rejection, safe_record

RowOrRejection = tuple[int, list[Any]] | Rejection  # values in FeedSpec.columns order
HEADER_SCAN_ROWS = 15
TOTAL_ROW_LABELS = ("合计", "总计", "小计", "total")


class UnreadableFile(Exception):
    """The whole file cannot be read (corrupt, wrong format, no recognisable header)."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


def read(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    reader = {"xlsx": read_xlsx, "csv": read_csv, "jsonl": read_jsonl}[spec.extension]
    return reader(spec, path)


def _is_total_row(values: list[Any]) -> bool:
    for v in values:
        if v is not None and v != "":
            break
    else:
        return False
    if v.__class__ is not str or len(v) > 12:
        return False
    return re.sub(r"\s+", "", str(n.nfkc(v) or "")).casefold() in TOTAL_ROW_LABELS


def _is_blank(values: list[Any]) -> bool:
    for v in values:
        if v is not None and v != "" and not (v.__class__ is str and v.isspace()):
            return False
    return True


def _stacked(upper: list[Any], lower: list[Any]) -> list[Any]:
    """A two-row header as one row. Read-only openpyxl gives a merged cell's value in its top-left
    cell only: a vertically merged name sits in the upper row with nothing below it; a horizontally
    merged group title (党组织情况 over three columns) names no column itself: the lower row's
    cells under it do, and a lower-row name wins over anything above it."""
    width = max(len(upper), len(lower))
    out: list[Any] = []
    for i in range(width):
        top = upper[i] if i < len(upper) else None
        below = lower[i] if i < len(lower) else None
        if below not in (None, ""):
            out.append(below)
        elif top not in (None, ""):
            out.append(top)
        else:
            out.append(None)
    return out


def _map_header(spec: FeedSpec, rows: Iterator[tuple[int, list[Any]]], path: Path
                ) -> tuple[dict[int, Any], Iterator[tuple[int, list[Any]]]]:
    """Find the header below any title rows: the first row naming at least half the columns, taken
    together with the row below it when that row completes it (a two-row header with merged cells)."""
    needed = max(3, len(spec.columns) // 2)
    previous: list[Any] | None = None
    for row_number, values in rows:
        mapping = spec.header_map(values)
        if previous is not None:
            stacked = spec.header_map(_stacked(previous, values))
            if len(stacked) > len(mapping):
                mapping = stacked
        if len(mapping) >= needed:
            nxt = next(rows, None)
            if nxt is None:
                return mapping, iter(())
            below = spec.header_map(_stacked(values, nxt[1]))
            if len(below) > len(mapping):
                return below, rows  # the next row finished a two-row header
            return mapping, itertools.chain([nxt], rows)
        if row_number >= HEADER_SCAN_ROWS:
            break
        previous = values
    raise UnreadableFile("no_header", f"{path.name}: no header row naming the {spec.source} columns "
                         f"in the first {HEADER_SCAN_ROWS} rows")


def _records(spec: FeedSpec, path: Path, rows: Iterator[tuple[int, list[Any]]]) -> Iterator[RowOrRejection]:
    mapping, rows = _map_header(spec, rows, path)
    missing = [c.name for c in spec.columns if c.required and c not in mapping.values()]
    if missing:
        raise UnreadableFile("missing_columns", f"{path.name}: required columns missing: {', '.join(missing)}")
    position = {col.name: i for i, col in mapping.items()}
    order = [position.get(col.name) for col in spec.columns]  # file column of each spec column
    width = len(order)
    identity = order == list(range(width))
    for row_number, values in rows:
        first = values[0] if values else None
        if first.__class__ is not str or len(first) <= 12:  # a long first cell is data: skip the checks
            if _is_blank(values):
                continue  # blank rows separate sections; they carry no data
            if _is_total_row(values):
                continue  # the 合计 row restates the data above it
        have = len(values)
        if identity and have >= width:
            yield row_number, values if have == width else values[:width]
        else:
            yield row_number, [values[i] if i is not None and i < have else None for i in order]


def read_xlsx(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many kinds for a damaged workbook
        raise UnreadableFile("unreadable_workbook", f"{path.name}: not a readable .xlsx workbook "
                             f"({type(err).__name__})") from None
    try:
        ws = wb["小区台账"] if "小区台账" in wb.sheetnames else wb.worksheets[0]
        rows = ((i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1))
        yield from _records(spec, path, _guarded(rows, path))
    finally:
        wb.close()


def _guarded(rows: Iterator[tuple[int, list[Any]]], path: Path) -> Iterator[tuple[int, list[Any]]]:
    """A workbook that opens but breaks while its sheet is read (truncated XML) is unreadable too."""
    try:
        yield from rows
    except UnreadableFile:
        raise
    except Exception as err:
        raise UnreadableFile("unreadable_workbook", f"{path.name}: the sheet cannot be read "
                             f"({type(err).__name__})") from None


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) when the whole file decodes as UTF-8, else GB18030."""
    with path.open("rb") as f:
        head = f.read(3)
        if head == codecs.BOM_UTF8:
            return "utf-8-sig"
        f.seek(0)
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            while chunk := f.read(1 << 20):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8"
        except UnicodeDecodeError:
            return "gb18030"


def read_csv(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    encoding = _detect_encoding(path)
    try:
        f = path.open(encoding=encoding, newline="")
    except OSError as err:
        raise UnreadableFile("unreadable_file", f"{path.name}: {err}") from None
    with f:
        try:
            yield from _records(spec, path, enumerate(csv.reader(f), start=1))
        except UnicodeDecodeError as err:
            raise UnreadableFile("bad_encoding", f"{path.name}: neither UTF-8 nor GB18030 ({err.reason})") from None
        except csv.Error as err:
            raise UnreadableFile("bad_csv", f"{path.name}: {err}") from None


_PII_JSON_RE = re.compile(r'("requester_(?:name|phone|id_number)"\s*:\s*)"[^"]*"?')


def read_jsonl(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    names = [c.name for c in spec.columns]
    with path.open("rb") as f:
        for row_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if row_number == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                yield Rejection(row_number, None, "bad_encoding", f"{path.name}, row {row_number}: not UTF-8",
                                {"line": "<not UTF-8>"})
                continue
            if not line:
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                shown = _PII_JSON_RE.sub(r'\1"<redacted>"', line)[:500]
                yield Rejection(row_number, None, "malformed_json",
                                f"{path.name}, row {row_number}: not a complete JSON object ({err})",
                                safe_record({"line": shown}, {}))
                continue
            yield row_number, [obj.get(name) for name in names]


