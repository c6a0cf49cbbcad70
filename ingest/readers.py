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
                try:
                    rows = list(item.rows())
                except UnicodeDecodeError as err:  # an unchecked read's batch is decoded here, not by the reader
                    raise NotUtf8(f"{self.path.name}: {err.reason}") from None
                yield from rows
            else:
                yield item


def read(spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False) -> Rows:
    """The file's rows. A CSV reader needs the encoding: `encoding` (from `scan`) spares it its own pass
    to detect it; `unchecked_utf8` reads the file as UTF-8 (with or without a BOM) straight away and
    raises NotUtf8 at the first byte sequence that is not, which the caller must then be ready for.
    A checked read (not `unchecked_utf8`) never fails on a byte: a line that does not decode in the
    file's encoding is a bad_encoding Rejection naming its row, column and byte offset."""
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
        if first.__class__ is not str or len(first) <= 12:  # a long first cell is data: skip the checks
            if _is_blank(out):
                continue  # blank rows separate sections; they carry no data
            if _is_total_row(values) and (out[0] in (None, "") or _is_total_row(out[:1])):
                if totals is not None:
                    totals.append(row_number)
                continue  # the 合计 row restates the data above it; a row with its own key is data
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
    # utf-8-sig (a BOM); utf-8 (the whole file decodes, or most of its lines do: `EncodingVote`);
    # gb18030 (most of its non-ASCII lines are not UTF-8); UNDECODABLE (neither, or NUL bytes throughout)
    encoding: str


SCAN_CHUNK = 1 << 20
THREADED_SCAN_BYTES = 4 << 20  # from this size on, hash in a second thread while this one checks UTF-8
UNDECODABLE = "undecodable"
VOTE_LINES = 20_000  # non-ASCII lines the encoding vote looks at: the first ones decide (bounded work)


class EncodingVote:
    """Which encoding a CSV that is not entirely UTF-8 is in, by its lines: of the lines that are not plain
    ASCII (at most the first VOTE_LINES of them), how many are UTF-8 and how many are not. A UTF-8 file
    with one stray byte (a GB18030 word pasted into one row) has one line against thousands: it stays UTF-8
    and that row is rejected. A GB18030 file has (nearly) none of its non-ASCII lines valid UTF-8: the
    header, every row with a Chinese word. NUL bytes on most lines are UTF-16 or a binary file.

    Chunks are fed in file order; only chunks that fail to decode as a whole are looked at line by line."""

    def __init__(self) -> None:
        self.carry = b""
        self.lines = self.utf8 = self.other = self.gb18030 = self.nul = 0

    def feed(self, chunk: bytes, final: bool = False) -> None:
        data = self.carry + chunk
        cut = len(data) if final else data.rfind(b"\n") + 1
        if cut == 0 and len(data) < SCAN_CHUNK:  # no line end yet: wait for it (bounded)
            self.carry = data
            return
        data, self.carry = (data[:cut], data[cut:]) if cut else (data, b"")
        if self.decided:
            return  # the first lines decided
        self.lines += data.count(b"\n") + (final and not data.endswith(b"\n") and bool(data))
        if data.isascii() and b"\x00" not in data:
            return
        lines = data.split(b"\n")
        if b"\x00" not in data:
            try:
                data.decode()
            except UnicodeDecodeError:
                pass
            else:
                self.utf8 += list(map(bytes.isascii, lines)).count(False)
                return
        for line in lines:
            self._vote(line)

    def _vote(self, line: bytes) -> None:
        if b"\x00" in line:
            self.nul += 1
        elif line.isascii():
            return
        else:
            try:
                line.decode()
            except UnicodeDecodeError:
                self.other += 1
                try:
                    line.decode("gb18030")
                    self.gb18030 += 1
                except UnicodeDecodeError:
                    pass
            else:
                self.utf8 += 1

    @property
    def decided(self) -> bool:
        """Whether the first VOTE_LINES non-ASCII lines have been seen: later chunks change nothing."""
        return self.utf8 + self.other + self.nul >= VOTE_LINES

    def encoding(self) -> str:
        """The file's encoding, given that it is not entirely valid UTF-8 (or holds NUL bytes)."""
        if self.nul * 2 > max(self.lines, 1):
            return UNDECODABLE
        if self.other <= self.utf8:
            return "utf-8"  # mostly UTF-8 (or only NUL lines wrong): the odd lines are rejected row by row
        if self.gb18030 * 2 >= self.other:
            return "gb18030"
        if (self.other - self.gb18030) * 2 > self.lines:
            return UNDECODABLE  # most of the file is neither
        return "utf-8"  # a few lines are neither (a stray byte): rejected row by row


def scan(path: Path) -> FileScan:
    """Read the file once for its SHA-256 and its encoding. On a large file the hashing runs in a second
    thread (hashlib releases the GIL on large buffers) while this one decodes, so the pass costs about
    what the slower of the two costs, not their sum: the server has nothing to do until it ends."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    vote = EncodingVote()
    utf8, size, nul = True, 0, False
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
            if not bom:
                nul = nul or b"\x00" in chunk
                vote.feed(chunk)
                if utf8:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        utf8 = False
        if hashing is not None:
            hashing.result()
    if bom:
        return FileScan(digest.hexdigest(), size, "utf-8-sig")
    vote.feed(b"", final=True)
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    encoding = "utf-8" if utf8 and not nul else vote.encoding()
    return FileScan(digest.hexdigest(), size, encoding)


def content_sha256(path: Path) -> str:
    """The file's SHA-256 (hex) alone, without `scan`'s encoding check: for a second thread while the
    file's rows are being loaded (hashlib and file reads release the GIL)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_csv(spec: FeedSpec, path: Path, encoding: str | None = None, unchecked_utf8: bool = False
             ) -> Iterator[RowOrRejection | Batch]:
    """A canteen's CSV. `unchecked_utf8`: read as UTF-8 at full speed, NotUtf8 at the first byte that is
    not. Otherwise (`encoding` from `scan`, or scanned here) every line that does not decode in the file's
    encoding is one row rejected as bad_encoding, naming its byte offset, and the rest of the file loads."""
    try:
        f = path.open("rb")
    except OSError as err:
        raise UnreadableFile("unreadable_file", f"{path.name}: {err}") from None
    with f:
        _check_not_utf16(path, f.read(4))
        f.seek(0)
        if unchecked_utf8:
            encoding = "utf-8-sig" if f.read(3) == codecs.BOM_UTF8 else "utf-8"
            f.seek(0)
        else:
            encoding = encoding or scan(path).encoding
        if encoding == UNDECODABLE:
            raise UnreadableFile("bad_encoding", f"{path.name}: neither UTF-8 nor GB18030 (most lines are "
                                 "neither, or hold NUL bytes: UTF-16 or a binary file); save it as CSV UTF-8")
        undecoded = None if unchecked_utf8 else Undecoded()
        try:
            if encoding == "gb18030":
                rows = _rows(f, "gb18030", 1, undecoded)
                items = _records(spec, path, rows)
            else:  # UTF-8: checked by the server and NotUtf8 if unchecked, line by line (`undecoded`) if not
                if encoding == "utf-8-sig":
                    f.seek(len(codecs.BOM_UTF8))
                items = _csv_utf8(spec, path, f, undecoded)
            yield from items if undecoded is None else undecoded.reject(spec, path, encoding, items)
        except UnicodeDecodeError as err:
            if unchecked_utf8:
                raise NotUtf8(f"{path.name}: {err.reason}") from None
            raise  # pragma: no cover - a checked read decodes line by line: a fault of ours
        except csv.Error as err:
            raise UnreadableFile("bad_csv", f"{path.name}: {err}") from None
        except LineTooLong as err:
            raise UnreadableFile("line_too_long", f"{path.name}: a line longer than {MAX_LINE_BYTES >> 20} MiB "
                                 f"(at byte {err.offset}): not a CSV of meal records") from None


def looks_binary(first_line: bytes) -> bool:
    """NUL bytes in a tenth or more of a file's first line: UTF-16 without a BOM (a NUL beside every ASCII
    character) or a binary file, not a text line with one stray NUL (that one is a rejected row)."""
    return first_line.count(b"\x00") * 10 >= max(len(first_line), 1)


def _check_not_utf16(path: Path, start: bytes) -> None:
    """Excel's 'Unicode text' export is UTF-16 (with a BOM): no CSV of ours, quarantined at once."""
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnreadableFile("bad_encoding", f"{path.name}: a UTF-16 file (Excel 'Unicode text'); "
                             "save it as CSV UTF-8")


CHUNK_BYTES = 1 << 17  # a few hundred to a thousand rows: each batch's objects stay in the CPU caches
KNOWN_TAILS = 50_000  # distinct line tails remembered per file (bounded memory whatever the file)


class Undecoded:
    """A checked read's lines that do not decode (their bad bytes become surrogate escapes, so the csv
    module still splits them): `pending` gets (file offset, byte) of a line's first bad byte just before
    the csv module reads that line, `mark` assigns it to the row being read then, `reject` turns that
    row into a bad_encoding rejection wherever it comes out of the reader."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, int]] = []
        self.rows: dict[int, tuple[int, int]] = {}

    def mark(self, rows: Iterator[tuple[int, list[Any]]]) -> Iterator[tuple[int, list[Any]]]:
        pending, marked = self.pending, self.rows
        for item in rows:
            if pending:
                marked[item[0]] = pending[0]
                pending.clear()
            yield item

    def reject(self, spec: FeedSpec, path: Path, encoding: str, items: Iterator[RowOrRejection | Batch]
               ) -> Iterator[RowOrRejection | Batch]:
        marked = self.rows
        for item in items:
            if marked and item.__class__ is tuple:
                where = marked.pop(item[0], None)
                rejection = None if where is None else _bad_encoding(spec, path, encoding, item, where)
                if rejection is not None:
                    yield rejection
                    continue
                if len(marked) > 1000:  # rows skipped by the reader (a 合计 row): forget them
                    for stale in [r for r in marked if r < item[0]]:
                        del marked[stale]
            yield item


def _bad_encoding(spec: FeedSpec, path: Path, encoding: str, item: tuple[int, list[Any]], where: tuple[int, int]
                  ) -> Rejection | None:
    """The rejection of a row read from a line that did not decode; None when the bytes that did not are
    in a column the feed does not read (an extra 备注): then the row's values are all good text."""
    row, values = item
    column = next((c.name for c, v in zip(spec.columns, values, strict=True)
                   if v.__class__ is str and not _encodable(v)), None)
    if column is None:
        return None
    label = "GB18030" if encoding == "gb18030" else "UTF-8"
    offset, byte = where
    return Rejection(row, column, "bad_encoding",
                     f"{path.name}, row {row}, column {column}: not {label} from byte {offset} of the file (0x{byte:02x})",
                     safe_record(dict(zip((c.name for c in spec.columns), values, strict=True)), spec.pii_columns))


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


MAX_LINE_BYTES = 1 << 20  # 1 MiB: a meal record takes about a hundred bytes; a longer line is no CSV of ours


class LineTooLong(Exception):
    """A physical line longer than MAX_LINE_BYTES: never read whole (bounded memory); the file is quarantined."""

    def __init__(self, offset: int):
        super().__init__(offset)
        self.offset = offset


def _whole_lines(f: io.BufferedReader, chunk: bytes, offset: int) -> tuple[bytes, bytes]:
    """`chunk` (read at file offset `offset`) completed to a line end, at most MAX_LINE_BYTES further: (whole
    lines, what to carry over to the next chunk). Neither CRLF nor a character is split between two chunks.
    A file of bare CRs (old Mac line ends) has no LF to stop at: it is cut after its last CR instead."""
    if chunk[-1:] == b"\n":
        return chunk, b""
    chunk += f.readline(MAX_LINE_BYTES)
    if chunk[-1:] == b"\n" or not f.peek(1):
        return chunk, b""
    cut = chunk.rfind(b"\r") + 1
    if cut == 0:
        raise LineTooLong(offset + len(chunk))
    return chunk[:cut], chunk[cut:]


def _decoded_lines(f: io.BufferedReader, encoding: str, pending: list[tuple[int, int]] | None = None
                   ) -> Iterator[str]:
    """The rest of `f` as text lines split as the csv module wants them (at CR, LF and CRLF, ends kept),
    read a chunk at a time (bounded memory: LineTooLong). Chunks that decode as a whole are split in C.
    Without `pending` (an unchecked read) a byte that does not decode raises UnicodeDecodeError; with it,
    a line that does not decode is given with its bad bytes as surrogate escapes, after noting where it
    broke in `pending`."""
    return itertools.chain.from_iterable(_decoded_chunks(f, encoding, pending))


def _decoded_chunks(f: io.BufferedReader, encoding: str, pending: list[tuple[int, int]] | None
                    ) -> Iterator[Iterator[str]]:
    offset, carry = f.tell(), b""
    while chunk := carry + f.read(CHUNK_BYTES):
        chunk, carry = _whole_lines(f, chunk, offset)
        try:
            text = chunk.decode(encoding)
        except UnicodeDecodeError:
            if pending is None:
                raise
            yield _undecoded_lines(chunk, offset, encoding, pending)
        else:
            yield io.StringIO(text, newline="")
        offset += len(chunk)


def _undecoded_lines(chunk: bytes, offset: int, encoding: str, pending: list[tuple[int, int]]) -> Iterator[str]:
    for line in chunk.splitlines(keepends=True):  # bytes split at CR, LF, CRLF only, as io does with newline=""
        try:
            text = line.decode(encoding)
        except UnicodeDecodeError as err:
            pending.append((offset + err.start, line[err.start]))
            text = line.decode(encoding, "surrogateescape")
        offset += len(line)
        yield text


def _rows(f: io.BufferedReader, encoding: str, first_row: int, undecoded: Undecoded | None
          ) -> Iterator[tuple[int, list[Any]]]:
    """The rest of `f` through the csv module, numbered from `first_row`."""
    if undecoded is None:
        return enumerate(csv.reader(_decoded_lines(f, encoding)), start=first_row)
    return undecoded.mark(enumerate(csv.reader(_decoded_lines(f, encoding, undecoded.pending)), start=first_row))


def _chunk_rows(chunk: bytes, offset: int, first_row: int, undecoded: Undecoded | None) -> list[tuple[int, list]]:
    """One chunk of whole UTF-8 lines through the csv module (a chunk the plain path did not take)."""
    if undecoded is not None:
        try:
            chunk.decode()
        except UnicodeDecodeError:
            lines = _undecoded_lines(chunk, offset, "utf-8", undecoded.pending)
            return list(undecoded.mark(enumerate(csv.reader(lines), start=first_row)))
    return list(enumerate(csv.reader(io.StringIO(chunk.decode(), newline="")), start=first_row))


def _csv_utf8(spec: FeedSpec, path: Path, f: io.BufferedReader, undecoded: Undecoded | None = None
              ) -> Iterator[RowOrRejection | Batch]:
    """A UTF-8 CSV: the header (and any rows among the first lines) through the csv module, then the
    file in chunks of whole lines. A chunk of plain lines becomes one Batch; any other chunk (blank or
    short lines, a 合计 row, a bare CR) goes through the csv module row by row, and from the first quote
    character (or a line too long to complete a chunk) on, the rest of the file does (a quoted field may
    hold line breaks).

    With `undecoded` (a checked read), a chunk that does not decode as UTF-8 goes through the csv module
    too, line by line: the plain path only ever sees valid UTF-8, the same as an unchecked read's."""
    start = f.tell()
    head: list[bytes] = []
    while len(head) <= HEADER_SCAN_ROWS and (line := f.readline(MAX_LINE_BYTES)):
        head.append(line)
        if line[-1:] != b"\n":
            break  # the end of the file, or a line too long for the plain path
    joined = b"".join(head)
    if head and looks_binary(head[0]):
        raise UnreadableFile("bad_encoding", f"{path.name}: NUL bytes throughout the first line: UTF-16 or a "
                             "binary file, not a CSV text file; save it as CSV UTF-8")
    if b'"' in joined or joined.count(b"\r") != joined.count(b"\r\n") or (head and head[-1][-1:] != b"\n") or (
            undecoded is not None and not _encodable_bytes(joined)):
        f.seek(start)  # the header area itself needs the csv module
        yield from _records(spec, path, _rows(f, "utf-8", 1, undecoded))
        return
    head_rows = list(enumerate(csv.reader(io.StringIO(joined.decode(), newline="")), start=1))
    mapping, rest = _map_header(spec, iter(head_rows), path)
    order = _column_order(spec, mapping, path)
    yield from _data_rows(order, rest)
    row = len(head_rows) + 1
    if None in order:  # a spec column missing from the file: the row path fills it with None
        yield from _data_rows(order, _rows(f, "utf-8", row, undecoded))
        return
    tail_start, known_tails = spec.tail_start, set()
    while True:
        offset = f.tell()
        chunk = f.read(CHUNK_BYTES)
        if not chunk:
            return
        if chunk[-1:] != b"\n":
            chunk += f.readline(MAX_LINE_BYTES)
        if b'"' in chunk or (chunk[-1:] != b"\n" and f.peek(1)):
            f.seek(offset)
            yield from _data_rows(order, _rows(f, "utf-8", row, undecoded))
            return
        batch = None
        if undecoded is None or _encodable_bytes(chunk):
            batch = _plain_batch(chunk, order, row, tail_start, known_tails)
        if batch is not None:
            row += len(batch)
            yield batch
        else:
            rows = _chunk_rows(chunk, offset, row, undecoded)
            row += len(rows)
            yield from _data_rows(order, iter(rows))


def _encodable_bytes(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 (a C-level check: only checked reads pay for it)."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


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


def read_jsonl(spec: FeedSpec, path: Path) -> Iterator[RowOrRejection]:
    """An assistance point's JSON Lines (or JSON array) file: see ingest.jsonlines."""
    from ingest.jsonlines import read_jsonl as read_events  # it builds on this module's UnreadableFile

    return read_events(spec, path)
