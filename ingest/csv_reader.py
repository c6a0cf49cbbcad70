"""The canteens' CSV reader: encoding (UTF-8, with or without a BOM, or GB18030; a line that does not
decode is one rejected row naming its byte offset), line ends (LF, CRLF, bare CR), the header below any
title rows, bounded memory (a line longer than MAX_LINE_BYTES quarantines the file).

Long runs of plain lines come out as column-wise Batches (ingest.csv_batches); everything else through
the csv module, row by row."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.csv_batches import Batch, plain_batch
from ingest.encoding import UNDECODABLE, NotUtf8, looks_binary, scan
from ingest.feeds import FeedSpec
from ingest.rejections import Rejection, UnreadableFile, safe_record
from ingest.tabular import HEADER_SCAN_ROWS, RowOrRejection, column_order, data_rows, map_header, records


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
                items = records(spec, path, rows)
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



def _check_not_utf16(path: Path, start: bytes) -> None:
    """Excel's 'Unicode text' export is UTF-16 (with a BOM): no CSV of ours, quarantined at once."""
    if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnreadableFile("bad_encoding", f"{path.name}: a UTF-16 file (Excel 'Unicode text'); "
                             "save it as CSV UTF-8")


CHUNK_BYTES = 1 << 17  # a few hundred to a thousand rows: each batch's objects stay in the CPU caches


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
            if marked and isinstance(item, tuple):
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
                   if isinstance(v, str) and not _encodable(v)), None)
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
    file in chunks of whole lines (`_chunks`).

    With `undecoded` (a checked read), a chunk that does not decode as UTF-8 goes through the csv module
    too, line by line: the fast path only ever sees valid UTF-8, the same as an unchecked read's."""
    start = f.tell()
    head = _head_lines(path, f)
    joined = b"".join(head)
    if b'"' in joined or joined.count(b"\r") != joined.count(b"\r\n") or (head and head[-1][-1:] != b"\n") or (
            undecoded is not None and not _encodable_bytes(joined)):
        f.seek(start)  # the header area itself needs the csv module
        yield from records(spec, path, _rows(f, "utf-8", 1, undecoded))
        return
    head_rows = list(enumerate(csv.reader(io.StringIO(joined.decode(), newline="")), start=1))
    mapping, rest = map_header(spec, iter(head_rows), path)
    order = column_order(spec, mapping, path)
    yield from data_rows(order, rest)
    if None in order:  # a spec column missing from the file: the row path fills it with None
        yield from data_rows(order, _rows(f, "utf-8", len(head_rows) + 1, undecoded))
        return
    yield from _chunks(spec, f, order, len(head_rows) + 1, undecoded)


def _head_lines(path: Path, f: io.BufferedReader) -> list[bytes]:
    """The lines where the header may be (HEADER_SCAN_ROWS and one more), as bytes; fewer at the end of the
    file or at a line too long for the fast path."""
    head: list[bytes] = []
    while len(head) <= HEADER_SCAN_ROWS and (line := f.readline(MAX_LINE_BYTES)):
        head.append(line)
        if line[-1:] != b"\n":
            break  # the end of the file, or a line too long for the fast path
    if head and looks_binary(head[0]):
        raise UnreadableFile("bad_encoding", f"{path.name}: NUL bytes throughout the first line: UTF-16 or a "
                             "binary file, not a CSV text file; save it as CSV UTF-8")
    return head


def _chunks(spec: FeedSpec, f: io.BufferedReader, order: list[int], row: int, undecoded: Undecoded | None
            ) -> Iterator[RowOrRejection | Batch]:
    """The rest of the file from data row `row` on, in chunks of whole lines. A chunk of plain lines
    becomes one Batch (ingest.csv_batches); any other chunk (blank or short lines, a 合计 row, a bare CR)
    goes through the csv module row by row, and from the first quote character (or a line too long to
    complete a chunk) on, the rest of the file does (a quoted field may hold line breaks)."""
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
            yield from data_rows(order, _rows(f, "utf-8", row, undecoded))
            return
        batch = None
        if undecoded is None or _encodable_bytes(chunk):
            batch = plain_batch(chunk, order, row, tail_start, known_tails)
        if batch is not None:
            row += len(batch)
            yield batch
        else:
            rows = _chunk_rows(chunk, offset, row, undecoded)
            row += len(rows)
            yield from data_rows(order, iter(rows))


def _encodable_bytes(data: bytes) -> bool:
    """Whether `data` is valid UTF-8 (a C-level check: only checked reads pay for it)."""
    if data.isascii():
        return True
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True

