"""The common normalisation path shared by every reader: headers, NFKC, dates, numbers, enums."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
EXCEL_EPOCH = date(1899, 12, 30)


class CellError(ValueError):
    """A value that cannot be used; `reason_code` is stable for dashboards, the message is for people."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


def nfkc(value: object) -> object:
    if isinstance(value, str):
        value = unicodedata.normalize("NFKC", value).strip()
        return value or None
    return value


def header_key(value: object) -> str:
    """Header cells compare after NFKC, case folding and removing spaces and brackets' content style."""
    text = str(nfkc(value) or "")
    return re.sub(r"[\s_/()（）㎡m²]+", "", text).casefold()


def to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # codes and card numbers that Excel stored as numbers
    return str(nfkc(str(value)))


def to_int(value: object) -> int | None:
    value = nfkc(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("bad_integer", f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).replace(",", "")
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text):
        return int(float(text))
    raise CellError("bad_integer", f"expected a whole number, got {value!r}")


def to_decimal(value: object) -> Decimal | None:
    value = nfkc(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("bad_number", f"expected a number, got {value!r}")
    try:
        text = str(value).replace(",", "").replace("元", "").replace("¥", "").strip()
        number = Decimal(text)
    except InvalidOperation:
        raise CellError("bad_number", f"expected a number, got {value!r}") from None
    if not number.is_finite():
        raise CellError("bad_number", f"expected a number, got {value!r}")
    return number


_DATE_RE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})(?:\s*[-/.月]\s*(\d{1,2})\s*日?)?\s*月?")


def to_date(value: object, month_only: bool = False) -> date | None:
    """Dates as offices write them: 2023-03-05, 2023/3/5, 2023年3月5日, 2023年3月, Excel serials."""
    value = nfkc(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        d = value.date()
    elif isinstance(value, date):
        d = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not 1 <= value < 2958466:
            raise CellError("bad_date", f"expected a date, got {value!r}")
        d = EXCEL_EPOCH + timedelta(days=int(value))
    else:
        text = str(value)
        if re.fullmatch(r"\d{5}(\.0+)?", text):
            return to_date(float(text), month_only)
        m = _DATE_RE.fullmatch(text) or _DATE_RE.match(text)
        if not m:
            raise CellError("bad_date", f"expected a date like 2023-03-05 or 2023年3月5日, got {value!r}")
        try:
            d = date(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1))
        except ValueError:
            raise CellError("bad_date", f"not a calendar date: {value!r}") from None
    return d.replace(day=1) if month_only else d


def to_timestamp(value: object) -> datetime | None:
    """Timestamps; naive ones are Asia/Shanghai local time."""
    value = nfkc(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        ts = value
    else:
        text = str(value).replace("/", "-").replace("年", "-").replace("月", "-").replace("日", " ")
        text = re.sub(r"\s+", " ", text).strip()
        try:
            ts = datetime.fromisoformat(text)
        except ValueError:
            raise CellError("bad_timestamp", f"expected a date and time, got {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=TZ)


def to_bool(value: object) -> bool | None:
    value = nfkc(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).casefold()
    if text in {"有", "是", "yes", "y", "true", "1", "√"}:
        return True
    if text in {"无", "否", "没有", "no", "n", "false", "0", "×"}:
        return False
    raise CellError("bad_boolean", f"expected 有/无, got {value!r}")


def to_enum(value: object, mapping: dict[str, str]) -> str | None:
    """Chinese labels or their English codes, both accepted."""
    value = nfkc(value)
    if value is None:
        return None
    text = str(value)
    if text in mapping:
        return mapping[text]
    if text.casefold() in {v.casefold() for v in mapping.values()}:
        return text.casefold()
    raise CellError("bad_enum", f"{value!r} is not one of {', '.join(mapping)}")
