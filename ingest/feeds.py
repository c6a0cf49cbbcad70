"""What each feed contains: columns, header aliases, types, reference checks and PII handling.

Readers turn files into (row number, {header: value}); `FeedSpec.normalise` turns that into the
typed raw-table row or a rejection naming the column and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest import normalize as n
from ingest import pii
from ingest import reference as ref


@dataclass(frozen=True)
class Column:
    name: str
    aliases: tuple[str, ...]
    convert: Callable[[Any], Any]
    required: bool = False


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
    pii_columns: dict[str, str] = field(default_factory=dict)  # source column -> kind

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

    def normalise(self, row_number: int, record: dict[str, Any], reporter: str, file_name: str
                  ) -> tuple[dict | None, Rejection | None]:
        """Typed row for COPY, or the reason it cannot be loaded (personal data hashed in both)."""
        safe_raw = safe_record(record, self.pii_columns)
        out: dict[str, Any] = {}
        for col in self.columns:
            value = record.get(col.name)
            try:
                typed = col.convert(value)
                if typed is None and col.required:
                    raise n.CellError("missing_value", "a value is required")
            except n.CellError as err:
                message = f"{file_name}, row {row_number}, column {col.name}: {err}"
                return None, Rejection(row_number, col.name, err.reason_code, pii.scrub_free_text(message), safe_raw)
            kind = self.pii_columns.get(col.name)
            if kind is None:
                out[col.name] = typed
            else:
                out.update(_pii_values(col.name, kind, typed))
        code = out.get(self.reporter_column)
        if code is not None and not str(code).startswith(reporter) and not reporter.startswith(str(code)):
            message = (f"{file_name}, row {row_number}, column {self.reporter_column}: {code} does not belong "
                       f"to reporter {reporter} named by the file")
            return None, Rejection(row_number, self.reporter_column, "wrong_reporter", message, safe_raw)
        return out, None


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
    """The record as kept in audit.rejected_rows: JSON-safe, personal data hashed or scrubbed."""
    out = {}
    for k, v in record.items():
        kind = pii_columns.get(k)
        if v is None:
            out[k] = None
        elif kind in ("name", "phone", "card", "id_number"):
            out[k] = "hmac:" + pii.keyed_hash(str(v), kind)[:16]
        else:
            out[k] = pii.scrub_free_text(str(v))
    return out


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
    columns=(
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)"), required=True),
        Column("name", ("小区名称",), _text, required=True),
        Column("community_code", ("所属社区", "社区编码"), _code(r"\d{12}", "community code (12 digits)")),
        Column("households", ("户数",), _non_negative(n.to_int)),
        Column("building_area_m2", ("建筑面积(㎡)", "建筑面积", "建筑面积m2"), _non_negative(n.to_decimal)),
        Column("buildings", ("楼栋数",), _non_negative(n.to_int)),
        Column("property_mode", ("物业服务方式",), _enum(ref.PROPERTY_MODES), required=True),
        Column("property_company", ("物业企业",), _text),
        Column("subsidy_start_month", ("过渡补贴起始月",), lambda v: n.to_date(v, month_only=True)),
        Column("party_org_type", ("党组织类型",), _enum(ref.PARTY_ORG_TYPES)),
        Column("party_org_since", ("党组织成立日期",), n.to_date),
        Column("owners_committee", ("业委会/物管会", "业委会", "物管会"), _enum(ref.OWNERS_COMMITTEES)),
        Column("building_heads", ("楼栋长数",), _non_negative(n.to_int)),
        Column("unit_heads", ("单元长数",), _non_negative(n.to_int)),
        Column("service_station", ("党群服务站",), n.to_bool),
    ),
)

CANTEENS = FeedSpec(
    source="canteens",
    table="raw.canteens_meals",
    extension="csv",
    reporter_column="canteen_code",
    pii_columns={"diner_card": "card"},
    columns=(
        Column("record_id", ("流水号",), _text, required=True),
        Column("canteen_code", ("食堂编码",), _code(r"CT\d{12}", "canteen code (CT + 12 digits)"), required=True),
        Column("served_at", ("就餐时间",), n.to_timestamp, required=True),
        Column("meal", ("餐次",), _enum(ref.MEALS), required=True),
        Column("diner_category", ("人群类别",), _enum(ref.DINER_CATEGORIES), required=True),
        Column("diner_card", ("就餐卡号",), _text),
        Column("age", ("年龄",), _non_negative(n.to_int)),
        Column("price_yuan", ("实付金额",), _non_negative(n.to_decimal)),
        Column("subsidy_yuan", ("补贴金额",), _non_negative(n.to_decimal)),
        Column("payment_method", ("支付方式",), _text),
    ),
)

ASSISTANCE = FeedSpec(
    source="assistance",
    table="raw.assistance_case_events",
    extension="jsonl",
    reporter_column="point_code",
    pii_columns={"requester_name": "name", "requester_phone": "phone", "requester_id_number": "id_number",
                 "status_notes": "free_text"},
    columns=(
        Column("service_request_id", ("工单号",), _text, required=True),
        Column("point_code", ("帮代办点编码",), _code(r"AP\d{12}", "point code (AP + 12 digits)"), required=True),
        Column("event", ("事件",), _choice(ref.CASE_EVENTS), required=True),
        Column("event_at", ("事件时间",), n.to_timestamp, required=True),
        Column("service_code", ("事项类别",), _choice(ref.SERVICE_CODES)),
        Column("channel", ("渠道",), _choice(ref.CHANNELS)),
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)")),
        Column("handler", ("办理人",), _choice(ref.HANDLERS)),
        Column("agency_responsible", ("责任部门",), _text),
        Column("people_served", ("服务人次",), _non_negative(n.to_int)),
        Column("satisfaction", ("满意度",), _satisfaction),
        Column("requester_name", ("姓名",), _text),
        Column("requester_phone", ("电话",), _text),
        Column("requester_id_number", ("身份证号",), _text),
        Column("status_notes", ("备注",), _text),
    ),
)

SPECS: dict[str, FeedSpec] = {s.source: s for s in (STREETS, CANTEENS, ASSISTANCE)}
