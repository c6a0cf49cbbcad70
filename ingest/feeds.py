"""What each feed contains: columns, header aliases, types, reference checks and PII handling.

Readers turn files into (row number, {header: value}); `FeedSpec.normalise` turns that into the
typed raw-table row or a rejection naming the column and the reason.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import islice
from operator import itemgetter
from typing import Any

from ingest import normalize as n
from ingest import pii
from warehouse import reference as ref


@dataclass(frozen=True)
class Column:
    name: str
    aliases: tuple[str, ...]
    convert: Callable[[Any], Any]
    required: bool = False
    repetitive: bool = False  # few distinct values per file: the loader memoises their conversion


@dataclass
class Rejection:
    row_number: int
    column: str | None
    reason_code: str
    message: str
    raw_record: dict


@dataclass(frozen=True)
class FeedSpec:
    source: str
    table: str
    extension: str
    columns: tuple[Column, ...]
    reporter_column: str  # the column that must match the file's reporter code
    key: tuple[str, ...] = ()  # a second row with the same key in one file is rejected as duplicate_record
    pii_columns: dict[str, str] = field(default_factory=dict)  # source column -> kind
    # the raw table has one partition per service day (warehouse/sql/bootstrap.sql), made before a load
    partitioned_by_day: bool = False

    @property
    def tail_start(self) -> int | None:
        """Where the trailing run of repetitive columns begins (None if it is shorter than two columns):
        the CSV reader leaves those fields of a line unsplit and the encoder memoises each distinct
        combination of them. The reporter and key columns stay out of it: they are checked column-wise."""
        special = {self.reporter_column, *self.key}
        start = len(self.columns)
        while start > 1 and self.columns[start - 1].repetitive and self.columns[start - 1].name not in special:
            start -= 1
        return start if start <= len(self.columns) - 2 else None

    @property
    def raw_columns(self) -> list[str]:
        return [c for c in self._output_names()]

    def _output_names(self) -> list[str]:
        names = []
        for c in self.columns:
            kind = self.pii_columns.get(c.name)
            if kind is None:
                names.append(c.name)
            else:
                names.extend(_pii_outputs(c.name, kind))
        return names

    def header_map(self, headers: list[object]) -> dict[int, Column]:
        """Column index -> column, from header cells in Chinese or English."""
        by_alias = {n.header_key(a): c for c in self.columns for a in (c.name, *c.aliases)}
        found = {}
        for i, h in enumerate(headers):
            col = by_alias.get(n.header_key(h)) if h is not None else None
            if col is not None and col not in found.values():
                found[i] = col
        return found

    def encoder(self, reporter: str, file_name: str) -> RowEncoder:
        return RowEncoder(self, reporter, file_name)


NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_SPECIAL = re.compile(r"[\\\t\n\r\x00]")
CACHE_LIMIT = 50_000


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


class RowEncoder:
    """Per-file normalisation: a record (values in `spec.columns` order) becomes the raw table's row in
    COPY text format, or a Rejection naming file, row, column and reason.

    `encode` works row by row. `encode_batch` gives the same result for many rows at once, column by
    column: conversions of repetitive columns (codes, enums, amounts, card numbers) are memoised per
    file, so a value seen before costs a dictionary lookup; plain text and ISO timestamps are checked
    with C-level string functions; any row that fails anywhere goes through `encode` for its rejection.
    `encode_plain` does the same for columns of undecoded UTF-8 bytes (a CSV reader's Batch) and gives
    UTF-8 COPY text; values are decoded only the first time they are seen, or when a check fails.
    """

    def __init__(self, spec: FeedSpec, reporter: str, file_name: str):
        self.spec, self.reporter, self.file_name = spec, reporter, file_name
        self._plan = []
        for c in spec.columns:
            kind = spec.pii_columns.get(c.name)
            fast = None
            if kind is None and c.convert is _text:
                fast = _text_batch
            elif kind is None and c.convert is n.to_timestamp:
                fast = _timestamp_batch
            width = 1 if kind is None else len(_pii_outputs(c.name, kind))
            self._plan.append((c.name, _column_encoder(c, kind), {} if c.repetitive else None, fast,
                               (_BAD,) * width, {} if c.repetitive and width == 1 else None))
        self._names = [c.name for c in spec.columns]
        names = spec.raw_columns
        self._reporter_index = names.index(spec.reporter_column)
        self._key_index = [names.index(k) for k in spec.key]
        # hashes of the keys (their UTF-8 COPY text) seen in this file (64-bit: bounded memory). Files number
        # their records in order: a batch whose single-column keys ascend from above every key before it
        # cannot repeat one, so its hashes wait in 8-byte arrays, without a set lookup, until some later
        # row needs the set (`_seen_keys`). `_top` bounds every key registered so far.
        self._seen: set[int] = set()
        self._ascending: list[array] = []
        self._top: bytes = b""
        # encode_plain: per source column, memoised bytes -> COPY bytes (or _BAD_BYTES) for repetitive
        # columns, else a function checking a whole column of plain values at once
        self._plain = []
        for c, (_, _, cache, *_) in zip(spec.columns, self._plan, strict=True):
            fast = None
            if cache is None and spec.pii_columns.get(c.name) is None:
                fast = _text_plain if c.convert is _text else _timestamp_plain if c.convert is n.to_timestamp else None
            self._plain.append(({} if cache is not None else None, fast))
        self._reporter_source = self._names.index(spec.reporter_column)
        self._key_source = [self._names.index(k) for k in spec.key]
        self._reporter_bytes = reporter.encode()
        # encode_plain with a tail: a line's trailing fields (FeedSpec.tail_start on), as in the file ->
        # their COPY text joined by tabs (or _BAD_BYTES); `_tail_bad` says whether any is _BAD_BYTES
        self._tail_memo: dict[bytes, bytes] = {}
        self._tail_bad = False

    def encode(self, row_number: int, values: list[Any]) -> list[str] | Rejection:
        fields: list[str] = []
        for (name, encode, cache, *_), value in zip(self._plan, values, strict=True):
            try:
                if cache is not None and value.__class__ is str:
                    out = cache.get(value)
                    if out is None:
                        out = encode(value)
                        if len(cache) >= CACHE_LIMIT:
                            cache.clear()
                        cache[value] = out
                else:
                    out = encode(value)
            except n.CellError as err:
                return self.reject(row_number, name, err.reason_code, str(err), values)
            fields += out
        code = fields[self._reporter_index]
        reporter = self.reporter
        if code != NULL and not code.startswith(reporter) and not reporter.startswith(code):
            return self.reject(row_number, self.spec.reporter_column, "wrong_reporter",
                               f"{code} does not belong to reporter {reporter} named by the file", values)
        if self._key_index:
            key = self._key_hash([fields[i] for i in self._key_index])
            seen = self._seen_keys()
            if key in seen:
                shown = ", ".join(f"{k}={fields[i]}" for k, i in zip(self.spec.key, self._key_index, strict=True))
                return self.reject(row_number, self.spec.key[0], "duplicate_record",
                                   f"same {shown} as an earlier row of this file", values)
            seen.add(key)
            if len(self._key_index) == 1:
                self._top = max(self._top, fields[self._key_index[0]].encode())
        return fields

    @staticmethod
    def _key_hash(parts: list[str]) -> int:
        return hash(parts[0].encode()) if len(parts) == 1 else hash(tuple(p.encode() for p in parts))

    def _seen_keys(self) -> set[int]:
        if self._ascending:
            for run in self._ascending:
                self._seen.update(run)
            self._ascending.clear()
        return self._seen

    def _new_key_column(self, keys: Sequence[bytes], bad: set[int]) -> None:
        """`_new_keys` for a single-column key given as UTF-8 COPY text, without any lookup when the
        batch's keys ascend strictly from above every key registered before (then none can repeat)."""
        if not keys:
            return
        if not bad and keys[0] > self._top and all(map(bytes.__lt__, keys, islice(keys, 1, None))):
            self._ascending.append(array("q", map(hash, keys)))
            self._top = keys[-1]
        else:
            self._new_keys(list(map(hash, keys)), bad)
            self._top = max(self._top, max(keys))  # rejected rows' keys too: a bound need not be tight

    def _new_keys(self, hashes: list[int], bad: set[int]) -> None:
        """Record the keys of the rows not yet rejected; a key already seen in this file marks its row bad
        (its rejection, duplicate_record, comes from `encode`)."""
        seen = self._seen_keys()
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

    def encode_batch(self, row_numbers: list[int], rows: list[list[Any]]
                     ) -> tuple[list[list[str]], list[int], list[Rejection]]:
        """(output columns, indexes of rejected rows, their rejections); output columns hold a
        placeholder at rejected rows' positions."""
        bad: set[int] = set()
        out_columns: list = []
        for (_, encode, cache, fast, placeholder, single), values in zip(self._plan, zip(*rows, strict=True),
                                                                          strict=True):
            if single:  # every value seen before in this file (its keys are text only): one pass
                try:
                    out_columns.append(list(map(single.__getitem__, values)))
                    continue
                except (KeyError, TypeError):
                    pass
            all_text = set(map(type, values)) == _STR_ONLY
            if fast is not None and all_text:
                fast_out = fast(values)
                if fast_out is not None:
                    out_columns.append(fast_out)
                    continue
            if cache is not None and all_text:
                if len(cache) >= CACHE_LIMIT:
                    cache.clear()
                failing = set()
                distinct = set(values)
                for value in distinct:
                    if value not in cache:
                        try:
                            cache[value] = encode(value)
                        except n.CellError:
                            failing.add(value)
                if failing:
                    bad.update(i for i, v in enumerate(values) if v in failing)
                    outs = [cache.get(v) or placeholder for v in values]
                elif single is not None:  # one output column: no tuples to take apart
                    if len(single) >= CACHE_LIMIT:
                        single.clear()
                    single.update((v, cache[v][0]) for v in distinct)
                    out_columns.append(list(map(single.__getitem__, values)))
                    continue
                else:
                    outs = list(map(cache.__getitem__, values))
            else:
                outs = []
                for i, value in enumerate(values):
                    try:
                        outs.append(encode(value))
                    except n.CellError:
                        bad.add(i)
                        outs.append(placeholder)
            out_columns.extend(zip(*outs, strict=True))
        bad.update(_wrong_reporter_rows(out_columns[self._reporter_index], self.reporter, NULL, _BAD))
        if self._key_index:
            key_columns = [list(map(str.encode, out_columns[i])) for i in self._key_index]
            if len(key_columns) == 1:
                self._new_key_column(key_columns[0], bad)
            else:
                self._new_keys(list(map(hash, zip(*key_columns, strict=True))), bad)
        rejected = sorted(bad)
        rejections = []
        for i in rejected:
            out = self.encode(row_numbers[i], rows[i])
            if not isinstance(out, Rejection):  # pragma: no cover - the two paths disagree
                raise AssertionError(f"{self.file_name}, row {row_numbers[i]}: batch and row paths disagree")
            rejections.append(out)
        return out_columns, rejected, rejections

    def encode_plain(self, first_row: int, columns: list[Sequence[bytes]], tail: Sequence[bytes] | None = None
                     ) -> tuple[list[list[bytes]], list[int], list[Rejection]]:
        """`encode_batch` for rows `first_row`, `first_row + 1`, ... given as columns of UTF-8 bytes (one
        per source column): (output columns as UTF-8 COPY text, a PII column's outputs joined by a tab
        into one; indexes of rejected rows; their rejections). With `tail` (see readers.Batch), `columns`
        are the columns before `spec.tail_start` and the last output column holds each row's tail
        columns, joined by tabs."""
        bad: set[int] = set()
        out_columns: list[list[bytes]] = []
        width = len(columns)
        for (_, encode, *_), (memo, fast), values in zip(self._plan[:width], self._plain[:width], columns,
                                                         strict=True):
            check = True
            if memo is not None:
                try:
                    out = list(map(memo.__getitem__, values))
                    check = _BAD_BYTES in memo.values()  # a memo of a few hundred values, not a column
                except KeyError:
                    new = set(values).difference(memo)
                    if len(memo) + len(new) > CACHE_LIMIT:
                        memo.clear()
                        new = set(values)
                    for value in new:
                        memo[value] = _plain_encode(encode, value)
                    out = list(map(memo.__getitem__, values))
            else:
                out = fast(values) if fast is not None else None
                if out is None:
                    out = [_plain_encode(encode, value) for value in values]
                else:
                    check = False
            if check and _BAD_BYTES in out:
                bad.update(i for i, v in enumerate(out) if v is _BAD_BYTES)
            out_columns.append(out)
        if tail is not None:
            memo = self._tail_memo
            try:
                out = list(map(memo.__getitem__, tail))
            except KeyError:
                new = set(tail).difference(memo)
                if len(memo) + len(new) > CACHE_LIMIT:
                    memo.clear()
                    self._tail_bad = False
                    new = set(tail)
                for value in new:
                    encoded = memo[value] = self._encode_tail(value, width)
                    self._tail_bad = self._tail_bad or encoded is _BAD_BYTES
                out = list(map(memo.__getitem__, tail))
            if self._tail_bad and _BAD_BYTES in out:
                bad.update(i for i, v in enumerate(out) if v is _BAD_BYTES)
            out_columns.append(out)
        bad.update(_wrong_reporter_rows(out_columns[self._reporter_source], self._reporter_bytes, _NULL_BYTES, _BAD_BYTES))
        if self._key_source:
            key_columns = [out_columns[i] for i in self._key_source]
            if len(key_columns) == 1:
                self._new_key_column(key_columns[0], bad)
            else:
                self._new_keys(list(map(hash, zip(*key_columns, strict=True))), bad)
        rejected = sorted(bad)
        rejections = []
        for i in rejected:
            values = [column[i] for column in columns] + (tail[i].split(b",") if tail is not None else [])
            out = self.encode(first_row + i, [v.decode() for v in values])
            if not isinstance(out, Rejection):  # pragma: no cover - the two paths disagree
                raise AssertionError(f"{self.file_name}, row {first_row + i}: plain and row paths disagree")
            rejections.append(out)
        return out_columns, rejected, rejections

    def _encode_tail(self, tail: bytes, start: int) -> bytes:
        """One distinct tail: its fields through their columns' memos, as tab-joined COPY text, or
        _BAD_BYTES when any field is rejected (the row path then names the column)."""
        outs = []
        for (_, encode, *_), (memo, _), value in zip(self._plan[start:], self._plain[start:], tail.split(b","),
                                                     strict=True):
            if memo is None:
                out = _plain_encode(encode, value)
            else:
                out = memo.get(value)
                if out is None:
                    if len(memo) >= CACHE_LIMIT:
                        memo.clear()
                    out = memo[value] = _plain_encode(encode, value)
            if out is _BAD_BYTES:
                return _BAD_BYTES
            outs.append(out)
        return b"\t".join(outs)

    def reject(self, row_number: int, column: str | None, reason_code: str, detail: str, values: list[Any]
               ) -> Rejection:
        where = f"{self.file_name}, row {row_number}" + (f", column {column}" if column else "")
        record = dict(zip(self._names, values, strict=True))
        return Rejection(row_number, column, reason_code, storable_text(pii.scrub_free_text(f"{where}: {detail}")),
                         safe_record(record, self.spec.pii_columns))

    def normalise(self, row_number: int, record: dict[str, Any]) -> tuple[dict | None, Rejection | None]:
        """A record given as {column: value}, encoded as {raw column: COPY text}."""
        out = self.encode(row_number, [record.get(name) for name in self._names])
        if isinstance(out, Rejection):
            return None, out
        return dict(zip(self.spec.raw_columns, out, strict=True)), None


def _column_encoder(col: Column, kind: str | None) -> Callable[[Any], tuple[str, ...]]:
    convert, required = col.convert, col.required
    empty = (NULL,) * (1 if kind is None else len(_pii_outputs(col.name, kind)))

    def encode(value: Any) -> tuple[str, ...]:
        typed = convert(value)
        if typed is None:
            if required:
                raise n.CellError("missing_value", "a value is required")
            return empty
        if kind is None:
            return (copy_text(typed),)
        return tuple(copy_text(v) for v in _pii_values(col.name, kind, typed).values())

    return encode


_STR_ONLY = {str}
def _wrong_reporter_rows(codes: list, reporter, null, rejected) -> set[int]:
    """Rows whose code does not belong to the file's reporter (codes as str or as bytes, alike)."""
    wrong = {c for c in set(codes)
             if c not in (null, rejected) and not c.startswith(reporter) and not reporter.startswith(c)}
    return {i for i, c in enumerate(codes) if c in wrong} if wrong else set()


_BAD = "\x00rejected"  # placeholder output of a rejected row: never a real value (NUL is rejected)
_BAD_BYTES = _BAD.encode()
_NULL_BYTES = NULL.encode()


def _plain_encode(encode: Callable[[Any], tuple[str, ...]], value: bytes) -> bytes:
    """One UTF-8 value through the row path's column encoder, as UTF-8 COPY text (or _BAD_BYTES)."""
    try:
        return "\t".join(encode(value.decode())).encode()
    except n.CellError:
        return _BAD_BYTES


_PLAIN_CONTROL = bytes(range(0x20)) + b"\\"
# YYYY-MM-DD HH:MM:SS with a real calendar date (years 1000-9999; leap years by the Gregorian rule)
_PLAIN_TIMESTAMPS_BYTES = re.compile(
    rb"(?:(?:[1-9]\d{3}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)"
    rb"|02-(?:0[1-9]|1\d|2[0-8]))|(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)-02-29)"
    rb"[ T](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)*")


def _text_plain(values: Sequence[bytes]) -> Sequence[bytes] | None:
    """`_text_batch` for UTF-8 bytes: ASCII without control characters or backslashes, so that NFKC,
    str.strip and COPY escaping reduce to bytes.strip; None (then value by value) otherwise."""
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


def _timestamp_plain(values: Sequence[bytes]) -> Sequence[bytes] | None:
    """`_timestamp_batch` for UTF-8 bytes, without a Python call per value: the shape of every value
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
_PLAIN_TIMESTAMPS = re.compile(r"(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)*", re.ASCII)  # 19 characters each


def _text_batch(values: tuple[str, ...]) -> list[str] | None:
    """Plain ASCII text needing no change but stripping, or None (then value by value)."""
    if not all(map(str.isascii, values)):
        return None
    stripped = list(map(str.strip, values))
    joined = "".join(stripped)
    if "" in stripped or _COPY_SPECIAL.search(joined) or ("-" in joined or "/" in joined) and _placeholder_in(
            stripped, n.ASCII_PLACEHOLDERS):
        return None
    return stripped


def _placeholder_in(values: Sequence, placeholders: frozenset) -> bool:
    """Whether some value is a placeholder (-, /, N/A): `to_text` makes it empty, so the row path decides.
    Callers look first for a - or / in the column's joined text (every ASCII placeholder has one)."""
    return min(map(len, values)) <= n.PLACEHOLDER_LENGTH and not placeholders.isdisjoint(values)


def _timestamp_batch(values: tuple[str, ...]) -> list[str] | None:
    """Local timestamps as YYYY-MM-DD HH:MM:SS, checked to be real calendar times and passed on as they
    are (the load runs with TimeZone Asia/Shanghai), or None (then value by value)."""
    if set(map(len, values)) != {19} or not _PLAIN_TIMESTAMPS.fullmatch("".join(values)):
        return None
    try:
        for _ in map(datetime.fromisoformat, values):
            pass
    except ValueError:
        return None
    return list(values)


def _pii_outputs(name: str, kind: str) -> list[str]:
    base = name.removesuffix("_number") if kind == "id_number" else name
    if kind == "name":
        return [f"{name}_hash"]
    if kind == "phone":
        return [f"{name}_hash", f"{name}_masked"]
    if kind == "card":
        return [f"{name}_hash", f"{name}_masked"]
    if kind == "id_number":
        return [f"{base}_hash", f"{base}_valid"]
    if kind == "free_text":
        return [name]
    raise ValueError(kind)


def _pii_values(name: str, kind: str, value: str | None) -> dict[str, Any]:
    keys = _pii_outputs(name, kind)
    if value is None:
        return dict.fromkeys(keys)
    if kind == "name":
        return {keys[0]: pii.keyed_hash(value, "name")}
    if kind == "phone":
        return {keys[0]: pii.keyed_hash(value, "phone"), keys[1]: pii.mask_phone(value)}
    if kind == "card":
        return {keys[0]: pii.keyed_hash(value, "card"), keys[1]: pii.mask_card(value)}
    if kind == "id_number":
        return {keys[0]: pii.keyed_hash(value, "id"), keys[1]: pii.id_number_valid(value)}
    return {keys[0]: pii.scrub_free_text(value)}


def safe_record(record: dict[str, Any], pii_columns: dict[str, str]) -> dict[str, Any]:
    """The record as kept in audit.rejected_rows: JSON-safe, personal data hashed or scrubbed, and text
    PostgreSQL can store (`storable_text`: a rejected row may be rejected for holding a NUL)."""
    out = {}
    for k, v in record.items():
        kind = pii_columns.get(k)
        if v is None:
            out[k] = None
        elif kind in ("name", "phone", "card", "id_number"):
            out[k] = "hmac:" + pii.keyed_hash(storable_text(str(v)), kind)[:16]
        else:
            out[k] = storable_text(pii.scrub_free_text(str(v)))
    return out


def storable_text(text: str) -> str:
    """`text` as PostgreSQL text and jsonb can hold it: a NUL becomes the four characters \\x00, a byte that
    did not decode (a surrogate escape) \\xNN, half of a surrogate pair \\udNNN."""
    if text.isascii():
        return text.replace("\x00", "\\x00") if "\x00" in text else text
    text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escaped_surrogate, text)
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escaped_surrogate(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _code(pattern: str, what: str) -> Callable[[Any], str | None]:
    rx = re.compile(pattern)
    districts = {d.code for d in ref.DISTRICTS}

    def convert(value: Any) -> str | None:
        text = n.to_text(value)
        if text is None:
            return None
        if not rx.fullmatch(text):
            raise n.CellError("bad_code", f"{text!r} is not a valid {what}")
        digits = re.sub(r"^[A-Z]+", "", text)
        if digits[:6] not in districts:
            raise n.CellError("unknown_code", f"{text!r}: district {digits[:6]} is not in the reference data")
        return text

    return convert


def _enum(mapping: dict[str, str]) -> Callable[[Any], str | None]:
    return lambda v: n.to_enum(v, mapping)


def _non_negative(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(value: Any) -> Any:
        out = convert(value)
        if out is not None and out < 0:
            raise n.CellError("negative_value", f"must not be negative, got {out}")
        return out

    return checked


def _text(value: Any) -> str | None:
    return n.to_text(value)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def convert(value: Any) -> str | None:
        text = n.to_text(value)
        if text is not None and text not in options:
            raise n.CellError("bad_enum", f"{text!r} is not one of {', '.join(options)}")
        return text

    return convert


def _satisfaction(value: Any) -> int | None:
    out = n.to_int(value)
    if out is not None and not 1 <= out <= 5:
        raise n.CellError("out_of_range", f"satisfaction must be 1-5, got {out}")
    return out


STREETS = FeedSpec(
    source="streets",
    table="raw.streets_compounds",
    extension="xlsx",
    reporter_column="compound_code",
    key=("compound_code",),
    columns=(
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)"), required=True),
        Column("name", ("小区名称",), _text, required=True),
        Column("community_code", ("所属社区", "社区编码"), _code(r"\d{12}", "community code (12 digits)"), repetitive=True),
        Column("households", ("户数",), _non_negative(n.to_int)),
        Column("building_area_m2", ("建筑面积(㎡)", "建筑面积", "建筑面积m2"), _non_negative(n.to_decimal)),
        Column("buildings", ("楼栋数",), _non_negative(n.to_int), repetitive=True),
        Column("property_mode", ("物业服务方式",), _enum(ref.PROPERTY_MODES), required=True, repetitive=True),
        Column("property_company", ("物业企业",), _text, repetitive=True),
        Column("subsidy_start_month", ("过渡补贴起始月",), lambda v: n.to_date(v, month_only=True), repetitive=True),
        Column("party_org_type", ("党组织类型",), _enum(ref.PARTY_ORG_TYPES), repetitive=True),
        Column("party_org_since", ("党组织成立日期",), n.to_date),
        Column("owners_committee", ("业委会/物管会", "业委会", "物管会"), _enum(ref.OWNERS_COMMITTEES), repetitive=True),
        Column("building_heads", ("楼栋长数",), _non_negative(n.to_int), repetitive=True),
        Column("unit_heads", ("单元长数",), _non_negative(n.to_int), repetitive=True),
        Column("service_station", ("党群服务站",), n.to_bool, repetitive=True),
    ),
)

CANTEENS = FeedSpec(
    source="canteens",
    table="raw.canteens_meals",
    extension="csv",
    reporter_column="canteen_code",
    key=("record_id",),
    pii_columns={"diner_card": "card"},
    partitioned_by_day=True,
    columns=(
        Column("record_id", ("流水号",), _text, required=True),
        Column("canteen_code", ("食堂编码",), _code(r"CT\d{12}", "canteen code (CT + 12 digits)"),
               required=True, repetitive=True),
        Column("served_at", ("就餐时间",), n.to_timestamp, required=True),
        Column("meal", ("餐次",), _enum(ref.MEALS), required=True, repetitive=True),
        Column("diner_category", ("人群类别",), _enum(ref.DINER_CATEGORIES), required=True, repetitive=True),
        Column("diner_card", ("就餐卡号",), _text, repetitive=True),
        Column("age", ("年龄",), _non_negative(n.to_int), repetitive=True),
        Column("price_yuan", ("实付金额",), _non_negative(n.to_decimal), repetitive=True),
        Column("subsidy_yuan", ("补贴金额",), _non_negative(n.to_decimal), repetitive=True),
        Column("payment_method", ("支付方式",), _text, repetitive=True),
    ),
)

ASSISTANCE = FeedSpec(
    source="assistance",
    table="raw.assistance_case_events",
    extension="jsonl",
    reporter_column="point_code",
    key=("service_request_id", "event", "event_at"),
    pii_columns={"requester_name": "name", "requester_phone": "phone", "requester_id_number": "id_number",
                 "status_notes": "free_text"},
    columns=(
        Column("service_request_id", ("工单号",), _text, required=True),
        Column("point_code", ("帮代办点编码",), _code(r"AP\d{12}", "point code (AP + 12 digits)"),
               required=True, repetitive=True),
        Column("event", ("事件",), _choice(ref.CASE_EVENTS), required=True, repetitive=True),
        Column("event_at", ("事件时间",), n.to_timestamp, required=True),
        Column("service_code", ("事项类别",), _choice(ref.SERVICE_CODES), repetitive=True),
        Column("channel", ("渠道",), _choice(ref.CHANNELS), repetitive=True),
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)"), repetitive=True),
        Column("handler", ("办理人",), _choice(ref.HANDLERS), repetitive=True),
        Column("agency_responsible", ("责任部门",), _text, repetitive=True),
        Column("people_served", ("服务人次",), _non_negative(n.to_int), repetitive=True),
        Column("satisfaction", ("满意度",), _satisfaction, repetitive=True),
        Column("requester_name", ("姓名",), _text),
        Column("requester_phone", ("电话", "phone"), _text),  # GeoReport's requester phone
        Column("requester_id_number", ("身份证号",), _text),
        Column("status_notes", ("备注",), _text),
    ),
)

SPECS: dict[str, FeedSpec] = {s.source: s for s in (STREETS, CANTEENS, ASSISTANCE)}
