"""The assistance points' reader: JSON Lines (one case event per line), or a file holding one JSON array.

Keys map to the feed's columns like CSV and xlsx headers do (FeedSpec aliases, compared after NFKC and
case folding), and Open311 GeoReport v2 names are understood where they mean something in the contract
(`_georeport`). A line that cannot be used is one rejected row naming its row, column and reason; the
rest of the file loads. A file that cannot be read at all (UTF-16, binary, a broken or oversized JSON
array or run of pretty-printed objects) raises ingest.rejections.UnreadableFile: it is quarantined as a whole.

Memory stays bounded whatever the input: a line is read at most MAX_LINE_BYTES at a time (a longer one
is skipped in pieces and rejected), and a JSON array file is read whole only up to MAX_ARRAY_BYTES.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ingest import normalize as n
from ingest import pii
from ingest.encoding import SCAN_CHUNK, UNDECODABLE, EncodingVote, looks_binary
from ingest.feeds import FeedSpec
from ingest.rejections import Rejection, UnreadableFile, safe_record, storable_text
from warehouse.reference import SERVICE_CODES

MAX_LINE_BYTES = 1 << 20  # 1 MiB: a case event is under 2 KB; anything longer is not one
MAX_ARRAY_BYTES = 8 << 20  # 8 MiB of JSON array or pretty-printed objects: some 20,000 events, read whole
SKIP_BYTES = 1 << 16  # how much of an over-long line is read at a time while it is skipped
SHOWN_CHARS = 200  # of a value kept in a malformed line's raw record
SHOWN_KEYS = 50  # key names kept in a rejected line's raw record

# Open311 GeoReport v2 keys with no column of their own: `_georeport` turns the first group into the
# contract's columns; the second names things the contract does not keep (locations, media, the
# requester's e-mail and device) and is dropped on purpose. Any other unknown key is ignored too.
GEOREPORT_DERIVED = ("status", "requested_datetime", "updated_datetime", "service_name", "description",
                     "first_name", "last_name")
GEOREPORT_DROPPED = ("service_notice", "expected_datetime", "address", "address_string", "address_id", "zipcode",
                     "lat", "long", "media_url", "email", "device_id", "account_id", "jurisdiction_id")


class _Repeated(dict):
    """A JSON object in which some key appeared twice: `repeated` names them (json keeps the last one)."""

    __slots__ = ("repeated",)


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj = _Repeated(obj)
        obj.repeated = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs)


class KeyMap:
    """JSON keys of one feed: column of each alias (NFKC, case folded, as header cells), GeoReport keys."""

    def __init__(self, spec: FeedSpec):
        self.spec = spec
        self.names = [c.name for c in spec.columns]
        self.by_key = {n.header_key(a): c.name for c in spec.columns for a in (c.name, *c.aliases)}
        self.derived = {n.header_key(k): k for k in GEOREPORT_DERIVED}
        personal = set(spec.pii_columns)
        self.plain_columns = {c.name for c in spec.columns if c.name not in personal}
        self._folded: dict[str, str] = {}

    def column(self, key: str) -> str | None:
        return self.by_key.get(self.folded(key))

    def folded(self, key: str) -> str:
        """n.header_key, memoised: a file repeats its few keys on every line."""
        out = self._folded.get(key)
        if out is None:
            if len(self._folded) >= 10_000:
                self._folded.clear()
            out = self._folded[key] = n.header_key(key)
        return out


def read_jsonl(spec: FeedSpec, path: Path) -> Iterator[tuple[int, list[Any]] | Rejection]:
    """The file's events as (row number, values in spec.columns order), or a Rejection per bad line.
    A file whose first character is `[` is read as one JSON array, one whose first line is a lone `{` as
    pretty-printed objects (row = the record's place in the file)."""
    keys = KeyMap(spec)
    try:
        f = path.open("rb")
    except OSError as err:
        raise UnreadableFile("unreadable_file", f"{path.name}: {err}") from None
    with f:
        head = f.read(4096)
        _check_text(path, head)
        bom = len(codecs.BOM_UTF8) if head.startswith(codecs.BOM_UTF8) else 0
        encoding = "utf-8" if bom else _encoding(path, f)
        f.seek(bom)
        start = head[bom:].lstrip()
        if start[:1] == b"[":
            yield from _document(keys, path, f, encoding, array=True)
        elif start.split(b"\n", 1)[0].strip() == b"{":  # a pretty printer's first line: no JSON Lines
            yield from _document(keys, path, f, encoding, array=False)
        else:
            yield from _lines(keys, path, f, encoding)


def _check_text(path: Path, head: bytes) -> None:
    """UTF-16 (a BOM, or NUL bytes between the characters of the first line) and binary files are no
    JSON Lines at all: quarantined before any line is taken for a bad row."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UnreadableFile("bad_encoding", f"{path.name}: a UTF-16 file; JSON Lines must be UTF-8")
    if looks_binary(head.split(b"\n", 1)[0]):
        raise UnreadableFile("bad_encoding", f"{path.name}: NUL bytes throughout the first line: UTF-16 or a "
                             "binary file, not UTF-8 JSON Lines")


def _encoding(path: Path, f: BinaryIO) -> str:
    """UTF-8 (the contract), unless most of the file's non-ASCII lines are GB18030 (a Chinese system's
    export): then the file is read as GB18030 rather than every line rejected. Decided as for a CSV
    (ingest.encoding.EncodingVote), on the first lines of the file."""
    vote = EncodingVote()
    f.seek(0)
    while (chunk := f.read(SCAN_CHUNK)) and not vote.decided:
        vote.feed(chunk)
    vote.feed(b"", final=True)
    encoding = vote.encoding()
    if encoding == UNDECODABLE:
        raise UnreadableFile("bad_encoding", f"{path.name}: most lines are neither UTF-8 nor GB18030 "
                             "(or hold NUL bytes): not a JSON Lines text file")
    return encoding


def _lines(keys: KeyMap, path: Path, f: BinaryIO, encoding: str) -> Iterator[tuple[int, list[Any]] | Rejection]:
    offset = f.tell()
    row = 0
    while raw := f.readline(MAX_LINE_BYTES + 1):
        row += 1
        start, offset = offset, offset + len(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            offset += _skip_line(f)
            yield _reject(path, row, None, "line_too_long",
                          f"longer than {MAX_LINE_BYTES:,} bytes (a case event takes a few hundred)", {})
            continue
        if not raw.strip():
            continue
        yield _line(keys, path, row, raw, start, encoding)


def _skip_line(f: BinaryIO) -> int:
    """Read the rest of an over-long line in bounded pieces; the number of bytes skipped."""
    skipped = 0
    while piece := f.readline(SKIP_BYTES):
        skipped += len(piece)
        if piece.endswith(b"\n"):
            break
    return skipped


def _line(keys: KeyMap, path: Path, row: int, raw: bytes, start: int, encoding: str
          ) -> tuple[int, list[Any]] | Rejection:
    nul = raw.find(b"\x00")
    if nul >= 0:
        return _reject(path, row, None, "bad_character", f"a NUL byte at byte {start + nul} of the file",
                       _malformed_record(keys, raw.replace(b"\x00", b"")))
    try:
        line = raw.decode(encoding).strip()
    except UnicodeDecodeError as err:
        return _reject(path, row, None, "bad_encoding",
                       f"not {_label(encoding)} from byte {start + err.start} of the file (0x{raw[err.start]:02x})",
                       _malformed_record(keys, raw))
    try:
        obj = _DECODER.decode(line)
    except RecursionError:
        return _reject(path, row, None, "json_too_deep", "JSON nested too deeply to be a case event",
                       _malformed_record(keys, raw))
    except ValueError as err:
        return _reject(path, row, None, "malformed_json", f"not a complete JSON object ({err})",
                       _malformed_record(keys, raw))
    return _record(keys, path, row, obj)


def _label(encoding: str) -> str:
    return "GB18030" if encoding == "gb18030" else "UTF-8"


def _document(keys: KeyMap, path: Path, f: BinaryIO, encoding: str, array: bool
              ) -> Iterator[tuple[int, list[Any]] | Rejection]:
    """A file holding one JSON array of events (a GeoReport response, an export 'as JSON'), or events as
    pretty-printed objects one after another (`jq .` output): each record is a row. Read whole (its
    records cannot be found line by line), so only up to MAX_ARRAY_BYTES; a broken one cannot be split
    into its records reliably and is quarantined with the place it breaks."""
    what = "a JSON array" if array else "pretty-printed JSON objects"
    data = f.read(MAX_ARRAY_BYTES + 1)
    if len(data) > MAX_ARRAY_BYTES:
        raise UnreadableFile("json_file_too_large", f"{path.name}: {what} larger than {MAX_ARRAY_BYTES >> 20} "
                             "MiB; send JSON Lines (one event per line) instead")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        raise UnreadableFile("bad_encoding", f"{path.name}: {what}, not {_label(encoding)} (byte {err.start})"
                             ) from None
    try:
        for row, obj in enumerate(_array_values(text) if array else _object_values(text), start=1):
            yield _record(keys, path, row, obj)
    except _Broken as err:
        raise UnreadableFile("malformed_json_file", f"{path.name}: {what} broken {err}") from None


class _Broken(Exception):
    """Where a JSON array or a run of objects stops being JSON (the message: 'at record N (character C): why')."""


def _value(text: str, pos: int, record: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except (ValueError, RecursionError) as err:
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise _Broken(f"at record {record} (character {pos}): {why}") from None


def _array_values(text: str) -> Iterator[Any]:
    pos = _skip_space(text, text.index("[") + 1)
    record = 0
    while not text.startswith("]", pos):
        record += 1
        obj, pos = _value(text, pos, record)
        yield obj
        pos = _skip_space(text, pos)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif not text.startswith("]", pos):
            raise _Broken(f"after record {record} (character {pos}): expected , or ]")
    if text[pos + 1:].strip():
        raise _Broken(f"after its closing ] (character {pos + 1}): more text")


def _object_values(text: str) -> Iterator[Any]:
    pos, record = _skip_space(text, 0), 0
    while pos < len(text):
        record += 1
        obj, pos = _value(text, pos, record)
        yield obj
        pos = _skip_space(text, pos)


_SPACE = re.compile(r"[ \t\r\n]*")


def _skip_space(text: str, pos: int) -> int:
    return _SPACE.match(text, pos).end()  # type: ignore[union-attr]


def _record(keys: KeyMap, path: Path, row: int, obj: Any) -> tuple[int, list[Any]] | Rejection:
    """One parsed JSON value as the feed's values, or the reason it cannot be one."""
    if not isinstance(obj, dict):
        kind = _JSON_KINDS.get(type(obj), "number")
        return _reject(path, row, None, "malformed_json", f"a JSON {kind}, not an object", {})
    if isinstance(obj, _Repeated):
        return _reject(path, row, keys.column(obj.repeated[0]), "duplicate_key",
                       f"key {obj.repeated[0]!r} appears twice in one object", _kept(keys, obj))
    values: dict[str, Any] = {}
    derived: dict[str, Any] = {}
    for key, value in obj.items():
        name = keys.column(key)
        if name is None:
            folded = keys.folded(key)
            if folded in keys.derived:
                derived[keys.derived[folded]] = value
            continue  # GeoReport keys the contract does not keep, and unknown keys
        if name in values:
            first = next(k for k in obj if keys.column(k) == name)
            return _reject(path, row, name, "duplicate_key", f"keys {first!r} and {key!r} both give {name}",
                           _kept(keys, obj))
        values[name] = value
    bad = _bad_value(values) or _bad_value(derived)
    if bad:
        column, reason, detail = bad
        return _reject(path, row, keys.column(column) or column, reason, detail, _kept(keys, obj))
    if derived:
        _georeport(values, derived)
    return row, [values.get(name) for name in keys.names]


_JSON_KINDS = {list: "array", str: "string", bool: "true/false", type(None): "null"}


def _bad_value(values: dict[str, Any]) -> tuple[str, str, str] | None:
    """An object or array where the contract has one value, or text PostgreSQL cannot hold (a NUL from a
    \\u0000 escape, half of a surrogate pair from a \\ud800 escape)."""
    for name, value in values.items():
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "an array"
            return name, "nested_value", f"{kind} where one value belongs"
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return name, "bad_character", "contains half of a UTF-16 surrogate pair (a \\ud800-style escape)"
        if isinstance(value, str) and "\x00" in value:
            return name, "bad_character", "contains a NUL character (\\u0000)"
    return None


def _georeport(values: dict[str, Any], geo: dict[str, Any]) -> None:
    """Fill the contract's columns from Open311 GeoReport v2 keys where the record leaves them empty.

    A GeoReport record describes a request's state: without an `event`, a `closed` status is the closing
    (at `updated_datetime`), any other is the receipt (at `requested_datetime`). With an `event`, its time
    is `updated_datetime` (the time of the change the record reports), or `requested_datetime` for a
    receipt. `service_name` (GeoReport's name of the request type) is the category when the record has no
    `service_code` that is one (GeoReport's service_code is a system id such as 001); `description` is the
    requester's text, kept with the status notes; `first_name` + `last_name` are the requester's name."""
    status = n.to_text(geo.get("status"))
    if values.get("event") is None and status is not None:
        values["event"] = "closed" if status.casefold() == "closed" else "received"
    elif values.get("event") is None and geo.get("requested_datetime") is not None:
        values["event"] = "received"
    if values.get("event_at") is None:
        if values.get("event") == "received" and geo.get("requested_datetime") is not None:
            values["event_at"] = geo["requested_datetime"]
        else:
            values["event_at"] = geo.get("updated_datetime")
    if geo.get("service_name") is not None and n.to_text(values.get("service_code")) not in SERVICE_CODES:
        values["service_code"] = geo["service_name"]
    description = n.to_text(geo.get("description"))
    if description is not None:
        notes = n.to_text(values.get("status_notes"))
        values["status_notes"] = description if notes in (None, description) else f"{description}；{notes}"
    name = "".join(part for part in (n.to_text(geo.get("last_name")), n.to_text(geo.get("first_name"))) if part)
    if name and values.get("requester_name") is None:
        values["requester_name"] = name  # a Chinese name is written family name first


def _kept(keys: KeyMap, obj: dict) -> dict[str, Any]:
    """A parsed but rejected object as kept in audit.rejected_rows: the contract's columns, personal data
    hashed or scrubbed (safe_record); other keys by name only (their values may be anything personal)."""
    record: dict[str, Any] = {}
    other: list[str] = []
    for key, value in obj.items():
        name = keys.column(key)
        if name is None or name in record:
            other.append(_shown(key))
        elif isinstance(value, dict | list):
            record[name] = f"<{type(value).__name__}>"
        else:
            record[name] = value
    out = safe_record(record, keys.spec.pii_columns)
    if other:
        out["_other_keys"] = _key_names(other)
    return out


# "key": "string" | number | literal, in a line that is not valid JSON
_PAIR_RE = re.compile(r'"((?:[^"\\]|\\.){1,100})"\s*:\s*("(?:[^"\\]|\\.)*"?|-?\d[\d.eE+-]*|true|false|null)')


def _malformed_record(keys: KeyMap, raw: bytes) -> dict[str, Any]:
    """What is kept of a line that is not valid JSON: the values of the contract's non-personal columns
    found in it, scrubbed; any other key by name only (under a key such as 姓名 or 备注 may stand anything
    personal); and the line's length."""
    line = raw.decode("utf-8", "replace").strip()
    kept: dict[str, Any] = {}
    other: list[str] = []
    for key, value in _PAIR_RE.findall(line):
        name = keys.column(key)
        if name in keys.plain_columns and name not in kept:
            kept[name] = pii.scrub_free_text(value.strip('"')[:SHOWN_CHARS])
        else:
            other.append(_shown(key))
    out = safe_record(kept, {})
    if other:
        out["_other_keys"] = _key_names(other)
    out["_line_bytes"] = len(raw)
    return out


def _key_names(keys: list[str]) -> list[str]:
    """Distinct key names, at most SHOWN_KEYS of them (a broken line may repeat one a million times)."""
    distinct = list(dict.fromkeys(keys))
    return distinct if len(distinct) <= SHOWN_KEYS else [*distinct[:SHOWN_KEYS], f"… {len(distinct) - SHOWN_KEYS} more"]


def _shown(key: str) -> str:
    return storable_text(pii.scrub_free_text(key[:SHOWN_CHARS]))


def _reject(path: Path, row: int, column: str | None, reason: str, detail: str, record: dict) -> Rejection:
    where = f"{path.name}, row {row}" + (f", column {column}" if column else "")
    return Rejection(row, column, reason, storable_text(pii.scrub_free_text(f"{where}: {detail}")), record)
