"""The COPY encoder: one landed row (values in FeedSpec.columns order) becomes the raw table's row in
PostgreSQL COPY text format, or a Rejection naming file, row, column and reason.

`RowEncoder.encode` is the one path every row can take: each value through its column's converter
(ingest.feeds), personal data hashed or masked (ingest.pii), written as COPY text (`copy_text`); then
the row's reporter code is checked against the file's reporter and its key against the file's earlier
rows. Runs of plain CSV lines take a column-wise fast path instead (ingest.copy_fast), which gives what
this path gives (tests/ingest/test_copy_fast_path.py).
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from datetime import date
from typing import Any, AnyStr

from ingest import normalize as n
from ingest import pii
from ingest.feeds import Column, FeedSpec
from ingest.rejections import Rejection, safe_record, storable_text

NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r\x00]")
CACHE_LIMIT = 50_000  # memoised conversions per column and file (bounded memory whatever the file)


def copy_text(value: Any) -> str:
    """A typed value in PostgreSQL COPY text format."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        if _COPY_SPECIAL.search(value) is None:
            return value
        if "\x00" in value:
            raise n.CellError("bad_character", "contains a NUL character")
        return value.translate(_COPY_ESCAPES)
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return str(value)


def from_reporter(code: AnyStr, reporter: AnyStr, null: AnyStr) -> bool:
    """Whether a row's reporter code (its COPY text, str or bytes alike) belongs to the file's reporter: the
    same code, a code within the reporter's (a compound of a street), or none."""
    return code == null or code.startswith(reporter) or reporter.startswith(code)


class ColumnEncoder:
    """One feed column's value as its raw columns' COPY text: one text per output column (a personal
    column has two, its hash and its mask: ingest.pii.output_columns), or CellError with the reason."""

    def __init__(self, column: Column, kind: str | None):
        self.column, self.kind, self.name = column, kind, column.name
        self.width = 1 if kind is None else len(pii.output_columns(column.name, kind))
        # a repetitive column (codes, enums, amounts) has few distinct values in a file: each converted once
        self.memo: dict[str, tuple[str, ...]] | None = {} if column.repetitive else None

    def convert(self, value: Any) -> tuple[str, ...]:
        """The value through the column's converter, without the memo."""
        typed = self.column.convert(value)
        if typed is None:
            if self.column.required:
                raise n.CellError("missing_value", "a value is required")
            return (NULL,) * self.width
        if self.kind is None:
            return (copy_text(typed),)
        return tuple(map(copy_text, pii.output_values(self.name, self.kind, typed)))

    def encode(self, value: Any) -> tuple[str, ...]:
        memo = self.memo
        if memo is None or not isinstance(value, str):  # a workbook's numbers and dates: not memoised
            return self.convert(value)
        out = memo.get(value)
        if out is None:
            out = self.convert(value)  # a CellError is not memoised: the row path names it every time
            if len(memo) >= CACHE_LIMIT:
                memo.clear()
            memo[value] = out
        return out


class FileKeys:
    """The keys of one file's rows so far, for duplicate_record: 64-bit hashes of their UTF-8 COPY text
    (bounded memory; a key is a tuple of its columns' texts, or one text for a one-column key, and is
    compared as the plain path writes it).

    `top` bounds every one-column key registered. The fast path (ingest.copy_fast) registers a batch whose
    keys ascend strictly from above `top` without a lookup (`add_ascending`): files number their records
    in order, so such a batch cannot repeat a key; its hashes wait in 8-byte arrays until a later row needs
    the set (`hashes`)."""

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._ascending: list[array] = []
        self.top = b""

    def hashes(self) -> set[int]:
        if self._ascending:
            for run in self._ascending:
                self._seen.update(run)
            self._ascending.clear()
        return self._seen

    def add(self, key: Sequence[bytes]) -> bool:
        """Register one row's key; False when an earlier row of the file had it."""
        h = hash(key[0]) if len(key) == 1 else hash(tuple(key))
        seen = self.hashes()
        if h in seen:
            return False
        seen.add(h)
        if len(key) == 1:
            self.top = max(self.top, key[0])
        return True

    def add_ascending(self, keys: Sequence[bytes]) -> None:
        """Register one-column keys that ascend strictly from above `top` (the caller checked)."""
        self._ascending.append(array("q", map(hash, keys)))
        self.top = keys[-1]

    def add_batch(self, hashes: list[int], bad: set[int]) -> None:
        """Register the keys of a batch's rows that are not in `bad`; a key the file had already marks its
        row bad (its rejection, duplicate_record, comes from `RowEncoder.encode`)."""
        seen = self.hashes()
        if not bad and len(set(hashes)) == len(hashes) and seen.isdisjoint(hashes):
            seen.update(hashes)
            return
        for i, h in enumerate(hashes):
            if i in bad:
                continue
            if h in seen:
                bad.add(i)
            else:
                seen.add(h)


class RowEncoder:
    """Per-file encoding: `encode` turns a record (values in `spec.columns` order) into the raw table's
    row in COPY text format (`spec.raw_columns` order), or a Rejection."""

    def __init__(self, spec: FeedSpec, reporter: str, file_name: str):
        self.spec, self.reporter, self.file_name = spec, reporter, file_name
        self.columns = [ColumnEncoder(c, spec.pii_columns.get(c.name)) for c in spec.columns]
        self.names = [c.name for c in spec.columns]
        raw = spec.raw_columns
        self._reporter_index = raw.index(spec.reporter_column)
        self._key_index = [raw.index(k) for k in spec.key]
        self.keys = FileKeys()

    def encode(self, row_number: int, values: list[Any]) -> list[str] | Rejection:
        fields: list[str] = []
        for column, value in zip(self.columns, values, strict=True):
            try:
                fields += column.encode(value)
            except n.CellError as err:
                return self.reject(row_number, column.name, err.reason_code, str(err), values)
        code = fields[self._reporter_index]
        if not from_reporter(code, self.reporter, NULL):
            return self.reject(row_number, self.spec.reporter_column, "wrong_reporter",
                               f"{code} does not belong to reporter {self.reporter} named by the file", values)
        if self._key_index and not self.keys.add([fields[i].encode() for i in self._key_index]):
            shown = ", ".join(f"{k}={fields[i]}" for k, i in zip(self.spec.key, self._key_index, strict=True))
            return self.reject(row_number, self.spec.key[0], "duplicate_record",
                               f"same {shown} as an earlier row of this file", values)
        return fields

    def reject(self, row_number: int, column: str | None, reason_code: str, detail: str, values: list[Any]
               ) -> Rejection:
        where = f"{self.file_name}, row {row_number}" + (f", column {column}" if column else "")
        record = dict(zip(self.names, values, strict=True))
        return Rejection(row_number, column, reason_code, storable_text(pii.scrub_free_text(f"{where}: {detail}")),
                         safe_record(record, self.spec.pii_columns))

    def normalise(self, row_number: int, record: dict[str, Any]) -> tuple[dict | None, Rejection | None]:
        """A record given as {column: value}, encoded as {raw column: COPY text}."""
        out = self.encode(row_number, [record.get(name) for name in self.names])
        if isinstance(out, Rejection):
            return None, out
        return dict(zip(self.spec.raw_columns, out, strict=True)), None
