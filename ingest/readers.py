"""One reader per source format. Each yields (row number, [value per FeedSpec column]) in file order, or a
Rejection for a row that cannot even be parsed; a file that cannot be read at all raises
UnreadableFile. Header aliases, NFKC and typing happen later, in the shared FeedSpec path.

`read` gives those rows one by one. Its `batches()` gives the same rows, but the CSV reader hands
long runs of plain lines (no quotes, the same number of fields on every line, UTF-8) over as column-wise
`Batch`es of undecoded bytes: the loader encodes them a column at a time without a Python call per row.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import itertools
import json
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

from ingest import normalize as n
from ingest.feeds import FeedSpec, Rejection, safe_record

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


class UnreadableFile(Exception):
    """The whole file cannot be read (corrupt, wrong format, no recognisable header)."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


class NotUtf8(Exception):
    """A CSV read as UTF-8 without checking the file first (`read(..., unchecked_utf8=True)`) is not UTF-8."""


class Batch:
    """Consecutive data rows of a CSV file, `first_row` onwards, column-wise: `columns[k]` holds the
    UTF-8 bytes of FeedSpec column k on each row, exactly as the csv module would have split them.

    With `tail`, `columns` covers only the spec columns before `spec.tail_start`, and
    `tail[i]` holds row i's remaining fields as they are in the file, commas included: exactly
    `len(spec.columns) - spec.tail_start` of them (the reader checked). Those columns repeat a few
    combinations of values, so the encoder converts each distinct tail once for the whole file."""

    __slots__ = ("first_row", "columns", "tail")

    def __init__(self, first_row: int, columns: list[Sequence[bytes]], tail: Sequence[bytes] | None = None):
        self.first_row, self.columns, self.tail = first_row, columns, tail

    def __len__(self) -> int:
        return len(self.columns[0])

    def values(self, i: int) -> list[bytes]:
        """Row i's values, one per spec column, as bytes."""
        head = [column[i] for column in self.columns]
        return head if self.tail is None else head + self.tail[i].split(b",")

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        for i in range(len(self)):
            yield self.first_row + i, [v.decode() for v in self.values(i)]


class Rows:
    """The rows of one file, one by one; `batches()` may give runs of them as column-wise Batches."""

    def __init__(self, spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False):
        self.spec, self.path, self.encoding, self.unchecked_utf8 = spec, path, encoding, unchecked_utf8

    def batches(self) -> Iterator[RowOrRejection | Batch]:
        if self.spec.extension == "csv":
            return read_csv(self.spec, self.path, self.encoding, self.unchecked_utf8)
        if self.spec.extension == "xlsx":
            from ingest.workbook import WorkbookRows  # the workbook reader builds on this module's helpers

            self.workbook = WorkbookRows(self.spec, self.path)
            return iter(self.workbook)
        return read_jsonl(self.spec, self.path)

    workbook = None  # the WorkbookRows of an .xlsx file being read: its sheets and skipped rows

    def relabel(self, rejections: list[Rejection]) -> list[Rejection]:
        """The rejections of this file's rows (the encoder's too), naming the sheet of each in a workbook."""
        return rejections if self.workbook is None else self.workbook.relabel(rejections)

    def notes(self) -> list[str]:
        """What the reader skipped without it being a rejected row (sheets without the header, total rows)."""
        return [] if self.workbook is None else self.workbook.notes()

    def __iter__(self) -> Iterator[RowOrRejection]:
        for item in self.batches():
            if item.__class__ is Batch:
                yield from item.rows()
            else:
                yield item


def read(spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False) -> Rows:
    """The file's rows. A CSV reader needs the encoding: `encoding` (from `scan`) spares it its own pass
    to detect it; `unchecked_utf8` reads the file as UTF-8 (with or without a BOM) straight away and
    raises NotUtf8 at the first byte sequence that is not, which the caller must then be ready for."""
    return Rows(spec, path, encoding, unchecked_utf8)


def _is_total_row(values: list[Any]) -> bool:
    """A 合计 / 小计 / 总计 row: some short text cell of it is a total label (see TOTAL_ROW_LABELS). Cheap
    on data rows: only text cells of at most TOTAL_CELL_LENGTH characters, ASCII or holding 计, go
    through NFKC and the pattern."""
    for v in values:
        if v.__class__ is str and len(v) <= TOTAL_CELL_LENGTH and ("计" in v or v.isascii()):
            text = re.sub(r"[\s:_-]+", "", str(n.nfkc(v) or "")).casefold()
            if text and _TOTAL_ROW_RE.fullmatch(text):
                return True
    return False


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


def _map_header(spec: FeedSpec, rows: Iterator[tuple[int, list[Any]]], path: Path,
                scan_rows: int = HEADER_SCAN_ROWS) -> tuple[dict[int, Any], Iterator[tuple[int, list[Any]]]]:
    """Find the header below any title rows, within the first `scan_rows` rows: the first row naming at
    least half the columns, taken together with the row below it when that row completes it (a two-row
    header with merged cells)."""
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
        if row_number >= scan_rows:
            break
        previous = values
    raise UnreadableFile("no_header", f"{path.name}: no header row naming the {spec.source} columns "
                         f"in the first {scan_rows} rows")


def _records(spec: FeedSpec, path: Path, rows: Iterator[tuple[int, list[Any]]]) -> Iterator[RowOrRejection]:
    mapping, rows = _map_header(spec, rows, path)
    yield from _data_rows(_column_order(spec, mapping, path), rows)


def _column_order(spec: FeedSpec, mapping: dict[int, Any], path: Path) -> list[int | None]:
    """The file column of each spec column (None: not in the file)."""
    missing = [c.name for c in spec.columns if c.required and c not in mapping.values()]
    if missing:
        raise UnreadableFile("missing_columns", f"{path.name}: required columns missing: {', '.join(missing)}")
    position = {col.name: i for i, col in mapping.items()}
    return [position.get(col.name) for col in spec.columns]


def _data_rows(order: list[int | None], rows: Iterator[tuple[int, list[Any]]],
               totals: list[int] | None = None) -> Iterator[RowOrRejection]:
    """The rows' values in spec order. A total row (in any column) and a row blank in the spec's columns
    (a separator, a template row holding only its 序号) are not data: they are skipped, total rows'
    numbers appended to `totals` when given. A row whose first cell is long text is data: no checks."""
    width = len(order)
    identity = order == list(range(width))
    for row_number, values in rows:
        have = len(values)
        if identity and have >= width:
            out = values if have == width else values[:width]
        else:
            out = [values[i] if i is not None and i < have else None for i in order]
        first = values[0] if values else None
        if first.__class__ is not str or len(first) <= 12:  # a long first cell is data: skip the checks
            if _is_blank(out):
                continue  # blank rows separate sections; they carry no data
            if _is_total_row(values):
                if totals is not None:
                    totals.append(row_number)
                continue  # the 合计 row restates the data above it
        yield row_number, out


def read_xlsx(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    """A street office's workbook: see ingest.workbook."""
    return iter(read(spec, path))


@dataclass(frozen=True)
class FileScan:
    """What one pass over a file's bytes tells before its load: the content hash (the ledger's
    idempotency key), the size, and the encoding a CSV reader should assume."""

    sha256: str
    size: int
    encoding: str  # utf-8-sig (a BOM), utf-8 (the whole file decodes), else gb18030


SCAN_CHUNK = 1 << 20
THREADED_SCAN_BYTES = 4 << 20  # from this size on, hash in a second thread while this one checks UTF-8


def scan(path: Path) -> FileScan:
    """Read the file once for its SHA-256 and its encoding. On a large file the hashing runs in a second
    thread (hashlib releases the GIL on large buffers) while this one decodes, so the pass costs about
    what the slower of the two costs, not their sum: the server has nothing to do until it ends."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, size = True, 0
    with path.open("rb") as f, ThreadPoolExecutor(max_workers=1) as pool:
        bom = f.read(3) == codecs.BOM_UTF8
        f.seek(0)
        threaded = path.stat().st_size >= THREADED_SCAN_BYTES
        hashing = None
        while chunk := f.read(SCAN_CHUNK):
            size += len(chunk)
            if threaded:
                if hashing is not None:
                    hashing.result()
                hashing = pool.submit(digest.update, chunk)
            else:
                digest.update(chunk)
            if utf8 and not bom:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
        if hashing is not None:
            hashing.result()
    if utf8 and not bom:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    return FileScan(digest.hexdigest(), size, "utf-8-sig" if bom else "utf-8" if utf8 else "gb18030")


def content_sha256(path: Path) -> str:
    """The file's SHA-256 (hex) alone, without `scan`'s encoding check: for a second thread while the
    file's rows are being loaded (hashlib and file reads release the GIL)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_csv(spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False
             ) -> Iterator[RowOrRejection | Batch]:
    try:
        f = path.open("rb")
    except OSError as err:
        raise UnreadableFile("unreadable_file", f"{path.name}: {err}") from None
    with f:
        if unchecked_utf8:
            encoding = "utf-8-sig" if f.read(3) == codecs.BOM_UTF8 else "utf-8"
            f.seek(0)
        else:
            encoding = encoding or scan(path).encoding
        try:
            if encoding == "gb18030":
                yield from _records(spec, path, enumerate(csv.reader(_text(f, encoding)), start=1))
            else:  # the whole file is valid UTF-8 (checked by `scan`, or by the server and NotUtf8 if unchecked)
                if encoding == "utf-8-sig":
                    f.seek(len(codecs.BOM_UTF8))
                yield from _csv_utf8(spec, path, f)
        except UnicodeDecodeError as err:
            if unchecked_utf8:
                raise NotUtf8(f"{path.name}: {err.reason}") from None
            raise UnreadableFile("bad_encoding", f"{path.name}: neither UTF-8 nor GB18030 ({err.reason})") from None
        except csv.Error as err:
            raise UnreadableFile("bad_csv", f"{path.name}: {err}") from None


CHUNK_BYTES = 1 << 17  # a few hundred to a thousand rows: each batch's objects stay in the CPU caches
KNOWN_TAILS = 50_000  # distinct line tails remembered per file (bounded memory whatever the file)


def _text(f: io.BufferedReader, encoding: str) -> io.TextIOWrapper:
    """The rest of the binary file `f` as text, lines split the way the csv module wants them."""
    return io.TextIOWrapper(f, encoding=encoding, newline="")


def _csv_utf8(spec: FeedSpec, path: Path, f: io.BufferedReader) -> Iterator[RowOrRejection | Batch]:
    """A UTF-8 CSV: the header (and any rows among the first lines) through the csv module, then the
    file in chunks of whole lines. A chunk of plain lines becomes one Batch; any other chunk (blank or
    short lines, a 合计 row, a bare CR) goes through the csv module row by row, and from the first quote
    character on, the rest of the file does (a quoted field may hold line breaks)."""
    start = f.tell()
    head: list[bytes] = []
    while len(head) <= HEADER_SCAN_ROWS and (line := f.readline()):
        head.append(line)
    joined = b"".join(head)
    if b'"' in joined or joined.count(b"\r") != joined.count(b"\r\n"):
        f.seek(start)  # the header area itself needs the csv module
        yield from _records(spec, path, enumerate(csv.reader(_text(f, "utf-8")), start=1))
        return
    head_rows = list(enumerate(csv.reader(io.StringIO(joined.decode(), newline="")), start=1))
    mapping, rest = _map_header(spec, iter(head_rows), path)
    order = _column_order(spec, mapping, path)
    yield from _data_rows(order, rest)
    row = len(head_rows) + 1
    if None in order:  # a spec column missing from the file: the row path fills it with None
        yield from _data_rows(order, enumerate(csv.reader(_text(f, "utf-8")), start=row))
        return
    tail_start, known_tails = spec.tail_start, set()
    while True:
        offset = f.tell()
        chunk = f.read(CHUNK_BYTES)
        if not chunk:
            return
        if chunk[-1:] != b"\n":
            chunk += f.readline()
        if b'"' in chunk:
            f.seek(offset)
            yield from _data_rows(order, enumerate(csv.reader(_text(f, "utf-8")), start=row))
            return
        batch = _plain_batch(chunk, order, row, tail_start, known_tails)
        if batch is not None:
            row += len(batch)
            yield batch
        else:
            rows = list(enumerate(csv.reader(io.StringIO(chunk.decode(), newline="")), start=row))
            row += len(rows)
            yield from _data_rows(order, iter(rows))


def _plain_batch(chunk: bytes, order: list[int], first_row: int, tail_start: int | None = None,
                 known_tails: set[bytes] | None = None) -> Batch | None:
    """Whole lines without quotes as a column-wise Batch, when splitting at commas gives exactly what the
    csv module gives and what `_data_rows` would pass on: every line has the same number of fields (at
    least as many as the header mapping needs, extra ones ignored), no NUL or bare CR, and every first
    field is longer than any blank or 合计 label (so no row would be skipped).

    With `tail_start` (FeedSpec.tail_start) and the file's columns in the spec's order, each line is
    split only at its first `tail_start` commas and the rest stays whole (Batch.tail): fewer, larger
    objects, and the encoder converts each distinct tail once."""
    if b"\x00" in chunk:
        return None
    if b"\r" in chunk:  # CRLF line ends (csv.writer's default): no bare CR or LF
        parts = chunk.split(b"\r\n")
        lines = len(parts) - 1  # single-byte counts are cheap, a two-byte pattern's count is not
        if chunk.count(b"\n") != lines or chunk.count(b"\r") != lines:
            return None
    else:
        parts = chunk.split(b"\n")
    if parts[-1] == b"":
        parts.pop()  # the last line of the file may have no line end
    if not parts:
        return None
    if tail_start is not None and known_tails is not None and order == list(range(len(order))):
        batch = _tail_batch(parts, len(order), tail_start, first_row, known_tails)
        if batch is not None:
            return batch
    commas = parts[0].count(b",")
    if commas < max(order) or set(map(bytes.count, parts, repeat(b","))) != {commas}:
        return None
    flat = b",".join(parts).split(b",")
    width = commas + 1
    first = flat[0::width]
    if min(map(len, first)) <= 12 or not b"".join(first).isascii():
        return None
    return Batch(first_row, [flat[i::width] for i in order])


def _tail_batch(lines: list[bytes], width: int, tail_start: int, first_row: int, known: set[bytes]
                ) -> Batch | None:
    """`_plain_batch` for lines of exactly `width` fields in the spec's order, split at their first
    `tail_start` commas only; None when some line has another number of fields (then the caller splits
    the chunk field by field, which copes with extra columns). `known`: tails of this file already
    checked to hold the right number of fields (a few thousand distinct ones in a large file)."""
    rows = list(map(bytes.split, lines, repeat(b","), repeat(tail_start)))
    if sum(map(len, rows)) != (tail_start + 1) * len(rows):
        return None  # a line with fewer fields
    *columns, tail = zip(*rows, strict=True)  # equal lengths: checked above
    if not known.issuperset(tail):
        commas = width - 1 - tail_start
        new = set(tail).difference(known)
        if any(t.count(b",") != commas for t in new):
            return None
        if len(known) + len(new) > KNOWN_TAILS:
            known.clear()
        known.update(new)
    first = columns[0]
    if min(map(len, first)) <= 12 or not b"".join(first).isascii():
        return None
    return Batch(first_row, columns, tail)


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


