"""One reader per source format. Each yields (row number, {column: value}) in file order, or a
Rejection for a row that cannot even be parsed; a file that cannot be read at all raises
UnreadableFile. Header aliases, NFKC and typing happen later, in the shared FeedSpec path.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest import normalize as n
from ingest.feeds import FeedSpec, Rejection, safe_record

RowOrRejection = tuple[int, dict[str, Any]] | Rejection
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
    first = next((str(n.nfkc(v)) for v in values if v not in (None, "")), "")
    return first.replace(" ", "").casefold() in TOTAL_ROW_LABELS


def _map_header(spec: FeedSpec, rows: Iterator[tuple[int, list[Any]]], path: Path
                ) -> tuple[dict[int, Any], Iterator[tuple[int, list[Any]]]]:
    """Find the header row below any title rows: the first row naming at least half the columns."""
    needed = max(3, len(spec.columns) // 2)
    for row_number, values in rows:
        mapping = spec.header_map(values)
        if len(mapping) >= needed:
            return mapping, rows
        if row_number >= HEADER_SCAN_ROWS:
            break
    raise UnreadableFile("no_header", f"{path.name}: no header row naming the {spec.source} columns "
                         f"in the first {HEADER_SCAN_ROWS} rows")


def _records(spec: FeedSpec, path: Path, rows: Iterator[tuple[int, list[Any]]]) -> Iterator[RowOrRejection]:
    mapping, rows = _map_header(spec, rows, path)
    missing = [c.name for c in spec.columns if c.required and c not in mapping.values()]
    if missing:
        raise UnreadableFile("missing_columns", f"{path.name}: required columns missing: {', '.join(missing)}")
    for row_number, values in rows:
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in values):
            continue  # blank rows separate sections; they carry no data
        if _is_total_row(values):
            continue  # the 合计 row restates the data above it
        yield row_number, {col.name: values[i] if i < len(values) else None for i, col in mapping.items()}


def read_xlsx(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises many kinds for a damaged workbook
        raise UnreadableFile("unreadable_workbook", f"{path.name}: not a readable .xlsx workbook ({err})") from None
    try:
        ws = wb["小区台账"] if "小区台账" in wb.sheetnames else wb.worksheets[0]
        rows = ((i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1))
        yield from _records(spec, path, _fill_merged_header(rows))
    finally:
        wb.close()


def _fill_merged_header(rows: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, list[Any]]]:
    # read-only mode reports a merged cell's value in its first cell only; header matching
    # does not need the rest, and data rows are never merged in a registry.
    yield from rows


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
            rows = ((i, row) for i, row in enumerate(csv.reader(f), start=1))
            yield from _records(spec, path, rows)
        except UnicodeDecodeError as err:
            raise UnreadableFile("bad_encoding", f"{path.name}: neither UTF-8 nor GB18030 ({err.reason})") from None
        except csv.Error as err:
            raise UnreadableFile("bad_csv", f"{path.name}: {err}") from None


_PII_JSON_RE = re.compile(r'("requester_(?:name|phone|id_number)"\s*:\s*)"[^"]*"?')


def read_jsonl(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    known = {c.name for c in spec.columns}
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
            yield row_number, {k: v for k, v in obj.items() if k in known}


