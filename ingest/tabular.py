"""What the CSV and workbook readers share: finding the header below any title rows (one or two rows,
merged cells), the file column of each feed column, and which rows are data (blank rows and 合计 / 小计
rows are not)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest import normalize as n
from ingest.feeds import FeedSpec
from ingest.rejections import Rejection, UnreadableFile

RowOrRejection = tuple[int, list[Any]] | Rejection  # values in FeedSpec.columns order
HEADER_SCAN_ROWS = 15  # a CSV's header is searched in its first lines (ingest.workbook searches deeper)
# A total or subtotal row, in any of its cells (after NFKC, without spaces and a trailing colon): one of
# these words, after at most a few characters (全街道合计, 东风社区小计, 本页合计) and before a unit or a
# bracket (合计金额, 小计(户)); or total / subtotal / grand total / sum.
TOTAL_ROW_LABELS = ("合计", "总计", "共计", "小计", "total", "subtotal", "grandtotal", "sum")
_TOTAL_ROW_RE = re.compile(
    r".{0,8}?(?:" + "|".join(w for w in TOTAL_ROW_LABELS if not w.isascii()) + r")(?:金额|数|户数|数量)?(?:\(.{0,10}\))?"
    + "|" + "|".join(w for w in TOTAL_ROW_LABELS if w.isascii()))
TOTAL_CELL_LENGTH = 16  # a longer text is data (a name, an address), not a total label


def is_total_row(values: list[Any]) -> bool:
    """A 合计 / 小计 / 总计 row: some short text cell of it is a total label (see TOTAL_ROW_LABELS). Cheap
    on data rows: only text cells of at most TOTAL_CELL_LENGTH characters, ASCII or holding 计, go
    through NFKC and the pattern."""
    for v in values:
        if isinstance(v, str) and len(v) <= TOTAL_CELL_LENGTH and ("计" in v or v.isascii()):
            text = re.sub(r"[\s:_-]+", "", str(n.nfkc(v) or "")).casefold()
            if text and _TOTAL_ROW_RE.fullmatch(text):
                return True
    return False


def is_blank(values: list[Any]) -> bool:
    for v in values:
        if v is not None and v != "" and not (isinstance(v, str) and v.isspace()):
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


def map_header(spec: FeedSpec, rows: Iterator[tuple[int, list[Any]]], path: Path,
                scan_rows: int = HEADER_SCAN_ROWS) -> tuple[dict[int, Any], Iterator[tuple[int, list[Any]]]]:
    """Find the header below any title rows, within the first `scan_rows` rows: the first row naming at
    least half the columns, taken together with the row below it when that row completes it (a two-row
    header with merged cells)."""
    needed = spec.header_needed
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
        if row_number >= scan_rows:
            break
        previous = values
    raise UnreadableFile("no_header", f"{path.name}: no header row naming the {spec.source} columns "
                         f"in the first {scan_rows} rows")


def records(spec: FeedSpec, path: Path, rows: Iterator[tuple[int, list[Any]]]) -> Iterator[RowOrRejection]:
    mapping, rows = map_header(spec, rows, path)
    yield from data_rows(column_order(spec, mapping, path), rows)


def column_order(spec: FeedSpec, mapping: dict[int, Any], path: Path) -> list[int | None]:
    """The file column of each spec column (None: not in the file)."""
    missing = [c.name for c in spec.columns if c.required and c not in mapping.values()]
    if missing:
        raise UnreadableFile("missing_columns", f"{path.name}: required columns missing: {', '.join(missing)}")
    position = {col.name: i for i, col in mapping.items()}
    return [position.get(col.name) for col in spec.columns]


def data_rows(order: list[int | None], rows: Iterator[tuple[int, list[Any]]],
               totals: list[int] | None = None) -> Iterator[RowOrRejection]:
    """The rows' values in spec order. A total row and a row blank in the spec's columns (a separator, a
    template row holding only its 序号) are not data: they are skipped, total rows' numbers appended to
    `totals` when given. A total row has a total label in some cell and no key of its own (the spec's
    first column, 小区编码 or 流水号, empty or the label itself): a 备注 of 已计入小计 leaves a compound
    a compound. A row whose first cell is long text is data: no checks."""
    width = len(order)
    identity = order == list(range(width))
    for row_number, values in rows:
        have = len(values)
        if identity and have >= width:
            out = values if have == width else values[:width]
        else:
            out = [values[i] if i is not None and i < have else None for i in order]
        first = values[0] if values else None
        if not isinstance(first, str) or len(first) <= 12:  # a long first cell is data: skip the checks
            if is_blank(out):
                continue  # blank rows separate sections; they carry no data
            if is_total_row(values) and (out[0] in (None, "") or is_total_row(out[:1])):
                if totals is not None:
                    totals.append(row_number)
                continue  # the 合计 row restates the data above it; a row with its own key is data
        yield row_number, out

