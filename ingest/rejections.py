"""What a reader or the encoder gives instead of rows it cannot use: a `Rejection` for one row (kept in
audit.rejected_rows with a record safe to store, `safe_record`), `UnreadableFile` for a whole file
(quarantined)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ingest import pii


@dataclass
class Rejection:
    row_number: int
    column: str | None
    reason_code: str
    message: str
    raw_record: dict


class UnreadableFile(Exception):
    """The whole file cannot be read (corrupt, wrong format, no recognisable header)."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


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
