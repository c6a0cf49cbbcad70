"""The common normalisation path shared by every reader: headers, NFKC, dates, numbers, enums."""

from __future__ import annotations

import itertools
import re
import unicodedata
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from warehouse.settings import TZ

EXCEL_EPOCH = date(1899, 12, 30)


class CellError(ValueError):
    """A value that cannot be used; `reason_code` is stable for dashboards, the message is for people."""

    def __init__(self, reason_code: str, message: str):
        super().__init__(message)
        self.reason_code = reason_code


def nfkc(value: object) -> object:
    """NFKC-normalised, stripped text (full-width digits and letters become ASCII); '' becomes None."""
    if isinstance(value, str):
        if not value.isascii():
            value = unicodedata.normalize("NFKC", value)
        return value.strip() or None
    return value


# What offices write in a cell that has nothing to say (after NFKC, case-folded). 无 is among them, but
# where it is a value of its own (property_mode 无 = none, 党群服务站 无 = no) the enum or boolean
# reads it first: `to_enum` and `to_bool` apply this rule only to what their code list does not know.
PLACEHOLDERS = frozenset({"-", "--", "---", "/", "//", "\\", "—", "——", "–", "无", "空", "暂无", "n/a"})
PLACEHOLDER_LENGTH = max(map(len, PLACEHOLDERS))
# the ASCII ones in every case of their letters, as bytes: for the encoder's column-wise fast path
# (ingest.copy_fast), which passes plain ASCII text on without calling `to_text`
ASCII_PLACEHOLDER_BYTES = frozenset("".join(chars).encode() for p in PLACEHOLDERS if p.isascii()
                                    for chars in itertools.product(*({c.lower(), c.upper()} for c in p)))


def is_placeholder(text: object) -> bool:
    """Whether `text` (already through `nfkc`) is a placeholder for an empty cell."""
    return isinstance(text, str) and len(text) <= PLACEHOLDER_LENGTH and text.casefold() in PLACEHOLDERS


def cell(value: object) -> object:
    """`nfkc`, and None for a placeholder (-, /, —, 无, 空, N/A): the value converters start here."""
    value = nfkc(value)
    return None if is_placeholder(value) else value


def header_key(value: object) -> str:
    """Header cells compare after NFKC and case folding, without units, spaces, underscores, slashes, brackets."""
    text = str(nfkc(value) or "").casefold()  # NFKC turns ㎡ into m2 and （） into ()
    text = re.sub(r"\((?:m2|平方米)\)|m2$|平方米$", "", text)
    return re.sub(r"[\s_/()]+", "", text)


def to_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # codes and card numbers that Excel stored as numbers
    return cell(str(value))  # type: ignore[return-value]


INT_MAX = 2_147_483_647  # the raw tables' integer columns
DECIMAL_LIMIT = Decimal(10) ** 8  # numeric(10, 2): money; areas are far below it too


def to_int(value: object) -> int | None:
    out = _to_int(value)
    if out is not None and abs(out) > INT_MAX:
        raise CellError("out_of_range", f"{out} is too large")
    return out


def _to_int(value: object) -> int | None:
    value = cell(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise CellError("bad_integer", f"expected a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).replace(",", "")
    if re.fullmatch(r"[+-]?\d+(\.0+)?", text, re.ASCII):
        return int(text.split(".")[0])
    raise CellError("bad_integer", f"expected a whole number, got {value!r}")


def to_decimal(value: object) -> Decimal | None:
    value = cell(value)
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
    if abs(number) >= DECIMAL_LIMIT:
        raise CellError("out_of_range", f"{number} is too large")
    return number


_DATE_RE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})(?:\s*[-/.月]\s*(\d{1,2})\s*日?)?\s*月?")
_DIGITS_RE = re.compile(r"(?:\d{4}|\d{5}|\d{6}|\d{8})(?:\.0+)?", re.ASCII)  # a year, a serial, yyyymm, yyyymmdd
YEARS = range(1900, 2101)  # whole numbers that read as a year, never as an Excel serial (1905 dates)
EXCEL_LAST_SERIAL = 2958465  # 9999-12-31


def to_date(value: object, month_only: bool = False) -> date | None:
    """Dates as offices write them: 2023-03-05, 2023/3/5, 2023.3.5, 2023年3月5日, 2023年3月, 20230305,
    202303 (a month), Excel serials (numbers or digits). A year alone (2019, 2019年) is rejected as
    year_only: as a serial it would be a day of 1905, and as a date it would invent a month and a day."""
    value = cell(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        d = value.date()
    elif isinstance(value, date):
        d = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        d = _number_date(value)
    else:
        text = str(value)
        if _DIGITS_RE.fullmatch(text):
            d = _number_date(float(text))
        elif re.fullmatch(r"\d{4}\s*年", text):
            raise _year_only(value)
        else:
            d = _text_date(text)
    return d.replace(day=1) if month_only else d


def _number_date(value: int | float) -> date:
    """A number in a date cell: 20230305, 202303, a year (rejected) or an Excel serial (its fraction, a
    time of day, dropped)."""
    if not 1 <= value <= EXCEL_LAST_SERIAL and not 190001 <= value <= 29991231:  # inf and nan too
        raise CellError("bad_date", f"expected a date, got {value!r}")
    whole = int(value) if value == int(value) else None
    if whole in YEARS:
        raise _year_only(value)
    digits = str(whole)
    try:
        if len(digits) == 8:
            return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        if len(digits) == 6 and int(digits[:4]) in YEARS:
            return date(int(digits[:4]), int(digits[4:]), 1)
    except ValueError:
        raise CellError("bad_date", f"not a calendar date: {value!r}") from None
    if not 1 <= value < EXCEL_LAST_SERIAL + 1:
        raise CellError("bad_date", f"expected a date, got {value!r}")
    return EXCEL_EPOCH + timedelta(days=int(value))


def _text_date(text: str) -> date:
    m = _DATE_RE.fullmatch(text) or _DATE_RE.match(text)
    if not m:
        raise CellError("bad_date", f"expected a date like 2023-03-05 or 2023年3月5日, got {text!r}")
    try:
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1))
    except ValueError:
        raise CellError("bad_date", f"not a calendar date: {text!r}") from None


def _year_only(value: object) -> CellError:
    shown = int(value) if isinstance(value, float) else value
    return CellError("year_only", f"{shown!r} is a year alone: give the month (2019年3月 or 2019-03) "
                                  "or the full date")


def to_timestamp(value: object) -> datetime | None:
    """Timestamps; naive ones are Asia/Shanghai local time."""
    if isinstance(value, str):  # the common case, ISO 8601 as written by machines
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return ts if ts.tzinfo else ts.replace(tzinfo=TZ)
    value = cell(value)
    if value is None:
        return None
    if isinstance(value, datetime):
        ts = value
    else:
        text = str(value)
        m = _TIMESTAMP_RE.fullmatch(text)
        if not m:
            raise CellError("bad_timestamp", f"expected a date and time, got {value!r}")
        y, mo, d, h, mi, sec, offset = m.groups()
        try:
            ts = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(float(sec or 0)))
            if offset:
                ts = datetime.fromisoformat(ts.isoformat() + ("+00:00" if offset == "Z" else offset))
        except ValueError:
            raise CellError("bad_timestamp", f"not a calendar date and time: {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=TZ)


_TIMESTAMP_RE = re.compile(
    r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[\sT]*(\d{1,2})\s*[:时]\s*(\d{1,2})\s*分?(?:\s*:?\s*(\d{1,2}(?:\.\d+)?)\s*秒?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


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
    if is_placeholder(text):
        return None
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
    if is_placeholder(text):
        return None
    raise CellError("bad_enum", f"{value!r} is not one of {', '.join(mapping)}")
