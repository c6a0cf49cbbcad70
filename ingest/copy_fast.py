"""The COPY encoder's fast path: a CSV reader's Batch of plain lines (ingest.csv_batches) encoded a column
at a time, as UTF-8 bytes, instead of row by row.

Why it exists: a canteen's night is a million rows, and the plain path (copy_encoder.RowEncoder.encode)
pays a Python call per value, which alone would put the loader below half of raw COPY's rate
(bench/ingest.py). What it does instead:
- a repetitive column (codes, enums, amounts, card numbers) looks its values up in a memo of bytes -> COPY
  bytes: each distinct value is converted once, by the plain path's ColumnEncoder;
- a text column and a timestamp column are checked whole with C-level bytes operations (`_fast_text`,
  `_fast_timestamp`); when a check declines, the column goes value by value through the plain path;
- the trailing run of repetitive fields that the reader left unsplit (FeedSpec.tail_start) is memoised
  as a whole, one entry per distinct combination;
- reporter codes are checked once per distinct code, keys through copy_encoder.FileKeys.

Every row that fails anywhere is encoded again by the plain path, whose Rejection is the one kept: the
rejections are the plain path's own. The accepted rows' text is the plain path's too, except timestamps,
passed on as written (YYYY-MM-DD HH:MM:SS, local time, read by the server with TimeZone Asia/Shanghai)
where the plain path writes ISO 8601 with the offset: the same instant (tests/ingest/test_copy_fast_path.py).
A key column must therefore not be a timestamp (keys are compared as text): no CSV feed's is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import islice
from operator import itemgetter
from typing import NamedTuple

from ingest import normalize as n
from ingest.copy_encoder import CACHE_LIMIT, NULL, ColumnEncoder, RowEncoder, from_reporter
from ingest.feeds import as_text
from ingest.rejections import Rejection

# the output of a value the plain path rejects: never real COPY text (a NUL in a value is rejected)
_REJECTED = b"\x00rejected"
_NULL_BYTES = NULL.encode()


class EncodedBatch(NamedTuple):
    columns: list[Sequence[bytes]]  # one per source column, UTF-8 COPY text (a personal column's outputs
    # joined by a tab); with a tail, the last one holds each row's tail columns joined by tabs
    rejected: list[int]  # indexes of the rejected rows (their entries in `columns` are no COPY text)
    rejections: list[Rejection]  # theirs, from the plain path


class FastBatchEncoder:
    """The fast path of one file's RowEncoder (`plain`): its memos are per file, its keys the file's."""

    def __init__(self, plain: RowEncoder):
        self.plain = plain
        self.columns = [_FastColumn(c) for c in plain.columns]
        spec = plain.spec
        self._reporter = plain.names.index(spec.reporter_column)
        self._keys = [plain.names.index(k) for k in spec.key]
        self._reporter_bytes = plain.reporter.encode()
        self._tails = _Memo()  # a line's tail as in the file -> its columns' COPY text joined by tabs

    def encode(self, first_row: int, columns: list[Sequence[bytes]], tail: Sequence[bytes] | None = None
               ) -> EncodedBatch:
        """Rows `first_row`, `first_row + 1`, ... given as columns of UTF-8 bytes, one per source column;
        with `tail` (csv_batches.Batch), the columns before `spec.tail_start` and each row's tail."""
        bad: set[int] = set()
        # with a tail, `columns` stops at spec.tail_start: the columns after it are the tail's
        out = [fast.encode(values, bad) for fast, values in zip(self.columns, columns, strict=False)]
        if tail is not None:
            out.append(self._tails.column(tail, lambda t: self._encode_tail(t, len(columns)), bad))
        codes = out[self._reporter]
        wrong = {c for c in set(codes) if c is not _REJECTED and not from_reporter(c, self._reporter_bytes, _NULL_BYTES)}
        if wrong:
            bad.update(i for i, c in enumerate(codes) if c in wrong)
        if self._keys:
            self._register_keys([out[i] for i in self._keys], bad)
        rejected = sorted(bad)
        return EncodedBatch(out, rejected, [self._rejection(first_row, i, columns, tail) for i in rejected])

    def _register_keys(self, key_columns: list[Sequence[bytes]], bad: set[int]) -> None:
        keys = self.plain.keys
        if len(key_columns) > 1:
            keys.add_batch(list(map(hash, zip(*key_columns, strict=True))), bad)
            return
        column = key_columns[0]
        if not column:
            return
        # records numbered in order: keys ascending from above every earlier key cannot repeat one
        if not bad and column[0] > keys.top and all(map(bytes.__lt__, column, islice(column, 1, None))):
            keys.add_ascending(column)
            return
        keys.add_batch(list(map(hash, column)), bad)
        keys.top = max(keys.top, max(column))  # rejected rows' keys too: a bound need not be tight

    def _encode_tail(self, tail: bytes, start: int) -> bytes:
        """One distinct tail: its fields through their columns' memos, as tab-joined COPY text, or
        _REJECTED when any field is rejected (the plain path then names the column)."""
        outs = []
        for fast, value in zip(self.columns[start:], tail.split(b","), strict=True):
            out = fast.encode_one(value)
            if out is _REJECTED:
                return _REJECTED
            outs.append(out)
        return b"\t".join(outs)

    def _rejection(self, first_row: int, i: int, columns: list[Sequence[bytes]], tail: Sequence[bytes] | None
                   ) -> Rejection:
        values = [column[i] for column in columns] + (tail[i].split(b",") if tail is not None else [])
        out = self.plain.encode(first_row + i, [v.decode() for v in values])
        if not isinstance(out, Rejection):  # pragma: no cover - the two paths disagree
            raise AssertionError(f"{self.plain.file_name}, row {first_row + i}: fast and plain paths disagree")
        return out


class _Memo:
    """bytes -> COPY bytes (or _REJECTED) for the values of one column, or of the tails, of one file;
    `rejected` says whether it holds any _REJECTED, so that a column of memoised values is only searched
    for rejected rows when it can have some."""

    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.rejected = False

    def column(self, values: Sequence[bytes], encode: Callable[[bytes], bytes], bad: set[int]) -> list[bytes]:
        memo = self.values
        try:
            out = list(map(memo.__getitem__, values))
        except KeyError:
            new = set(values).difference(memo)
            if len(memo) + len(new) > CACHE_LIMIT:
                self.clear()
                new = set(values)
            for value in new:
                self.add(value, encode(value))
            out = list(map(memo.__getitem__, values))
        if self.rejected:
            _mark_rejected(out, bad)
        return out

    def get(self, value: bytes, encode: Callable[[bytes], bytes]) -> bytes:
        out = self.values.get(value)
        if out is None:
            if len(self.values) >= CACHE_LIMIT:
                self.clear()
            out = self.add(value, encode(value))
        return out

    def add(self, value: bytes, out: bytes) -> bytes:
        self.values[value] = out
        self.rejected = self.rejected or out is _REJECTED
        return out

    def clear(self) -> None:
        self.values.clear()
        self.rejected = False


class _FastColumn:
    """One source column on the fast path: memoised (repetitive), checked whole (`_fast_text`,
    `_fast_timestamp`), or value by value through the plain path's ColumnEncoder."""

    def __init__(self, plain: ColumnEncoder):
        self.plain = plain
        self.memo = _Memo() if plain.memo is not None else None
        self.check = None
        if self.memo is None and plain.kind is None:
            # the checks hold for these two converters only (feeds declares the columns with them)
            if plain.column.convert is as_text:
                self.check = _fast_text
            elif plain.column.convert is n.to_timestamp:
                self.check = _fast_timestamp

    def encode(self, values: Sequence[bytes], bad: set[int]) -> Sequence[bytes]:
        if self.memo is not None:
            return self.memo.column(values, self._convert, bad)
        out = self.check(values) if self.check is not None else None
        if out is None:
            out = list(map(self._convert, values))
            _mark_rejected(out, bad)
        return out

    def encode_one(self, value: bytes) -> bytes:
        return self._convert(value) if self.memo is None else self.memo.get(value, self._convert)

    def _convert(self, value: bytes) -> bytes:
        """One value through the plain path's conversion, as UTF-8 COPY text (or _REJECTED)."""
        try:
            return "\t".join(self.plain.convert(value.decode())).encode()
        except n.CellError:
            return _REJECTED


def _mark_rejected(out: list[bytes], bad: set[int]) -> None:
    if _REJECTED in out:
        bad.update(i for i, v in enumerate(out) if v is _REJECTED)


_PLAIN_CONTROL = bytes(range(0x20)) + b"\\"
# YYYY-MM-DD HH:MM:SS with a real calendar date (years 1000-9999; leap years by the Gregorian rule)
_PLAIN_TIMESTAMPS_BYTES = re.compile(
    rb"(?:(?:[1-9]\d{3}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    rb"|02-(?:0[1-9]|1\d|2[0-8]))|(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29)"
    rb"[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)*")


def _fast_text(values: Sequence[bytes]) -> Sequence[bytes] | None:
    """A column of `feeds.as_text` values as its COPY text, when it is ASCII without control characters or
    backslashes: then NFKC, str.strip and COPY escaping reduce to bytes.strip. None (then value by value,
    the plain path's way) when some value is not, is empty or is a placeholder (-, /, N/A: no value)."""
    joined = b"".join(values)
    if not joined.isascii() or len(joined.translate(None, _PLAIN_CONTROL)) != len(joined):
        return None
    # no control characters, so only spaces could need stripping
    stripped = list(map(bytes.strip, values)) if b" " in joined else values
    if b"" in stripped or (b"-" in joined or b"/" in joined) and _placeholder_in(stripped, n.ASCII_PLACEHOLDER_BYTES):
        return None
    return stripped


_DIGITS_TO_0 = bytes.maketrans(b"123456789T", b"000000000 ")
_PLAIN_SKELETON = b"0000-00-00 00:00:00"
_DATE_PART = itemgetter(slice(0, 10))
_VALID_DATES: set[bytes] = set()  # YYYY-MM-DD already checked to be calendar dates (a few thousand at most)


def _fast_timestamp(values: Sequence[bytes]) -> Sequence[bytes] | None:
    """A column of `normalize.to_timestamp` values passed on as they are, when every value is a local time
    YYYY-MM-DD HH:MM:SS (or T in the middle) on a real calendar day: the load runs with TimeZone
    Asia/Shanghai, so the server reads them as the plain path's text with its offset. None (then value by
    value) otherwise. Checked without a Python call per value: the shape of every value
    (YYYY-MM-DD HH:MM:SS, or T in the middle) in one comparison, hours, minutes and seconds digit by digit
    across the column (every 19th byte), and each distinct date once against the calendar."""
    if set(map(len, values)) != {19}:
        return None
    joined = b"".join(values)
    if joined.translate(_DIGITS_TO_0) != _PLAIN_SKELETON * len(values):
        return None
    if joined[14::19].translate(None, b"012345") or joined[17::19].translate(None, b"012345"):
        return None  # minutes or seconds of 60 and more
    hours = joined[11::19]
    if hours.translate(None, b"01"):  # some hour 2x, or 3x and more: check the pairs
        pairs = {10 * a + b for a, b in zip(hours, joined[12::19], strict=True)}
        if hours.translate(None, b"012") or not pairs <= _HOURS:
            return None
    first = values[0][:10]
    if all(joined[k::19] == first[k:k + 1] * len(values) for k in range(10)):
        dates = {first}  # one day, as in most batches: ten comparisons across the column, not a slice per value
    else:
        dates = set(map(_DATE_PART, values))
    if not _VALID_DATES.issuperset(dates):
        for d in dates.difference(_VALID_DATES):
            if not _PLAIN_TIMESTAMPS_BYTES.fullmatch(d + b" 00:00:00"):
                return None
        if len(_VALID_DATES) > CACHE_LIMIT:
            _VALID_DATES.clear()
        _VALID_DATES.update(dates)
    return values


_HOURS = {10 * (0x30 + h // 10) + 0x30 + h % 10 for h in range(24)}  # hour digit pairs as bytes values


def _placeholder_in(values: Sequence[bytes], placeholders: frozenset[bytes]) -> bool:
    """Whether some value is a placeholder (-, /, N/A): `to_text` makes it empty, so the plain path decides.
    Callers look first for a - or / in the column's joined text (every ASCII placeholder has one)."""
    return min(map(len, values)) <= n.PLACEHOLDER_LENGTH and not placeholders.isdisjoint(values)
