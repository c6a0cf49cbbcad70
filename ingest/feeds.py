"""What each feed contains, declared: its file format and raw table, its columns with their header
aliases (Chinese or English, compared after NFKC and case folding) and their types (a converter per
column, which raises normalize.CellError with a reason), the reporter and key columns, and which columns
hold personal data (ingest.pii: kept only hashed, masked or scrubbed).

Readers (ingest.readers) map a file's header to these columns; the COPY encoder (ingest.copy_encoder)
turns each row into the raw table's row or a rejection naming the column and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
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
    # (ingest.copy_encoder), and the CSV reader keeps a trailing run of them unsplit (FeedSpec.tail_start)
    # added to the contract later (issue 23): most files lack it, so it does not count towards recognising
    # a header row (FeedSpec.header_needed), and a file without it loads as before
    optional: bool = False


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
    def header_needed(self) -> int:
        """How many columns a row must name to be the header: half the contract's original columns (at least
        3), so that a file predating the optional columns is recognised as before."""
        return max(3, sum(not c.optional for c in self.columns) // 2)

    @property
    def raw_columns(self) -> list[str]:
        """The raw table's data columns, in COPY order: a personal column's outputs in its place."""
        names = []
        for c in self.columns:
            kind = self.pii_columns.get(c.name)
            if kind is None:
                names.append(c.name)
            else:
                names.extend(pii.output_columns(c.name, kind))
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


@cache
def known_districts() -> frozenset[str]:
    """The district codes of the reference data in force (the districts seed, which the reporters' seeds refer
    to): Taiyuan's ten, and in a province deployment (GOV_SCOPE=shanxi) the other cities' too."""
    return frozenset(row["district_code"] for row in ref.seed_rows("districts"))


def _code(pattern: str, what: str) -> Callable[[Any], str | None]:
    rx = re.compile(pattern)

    def convert(value: Any) -> str | None:
        text = n.to_text(value)
        if text is None:
            return None
        if not rx.fullmatch(text):
            raise n.CellError("bad_code", f"{text!r} is not a valid {what}")
        digits = re.sub(r"^[A-Z]+", "", text)
        if digits[:6] not in known_districts():
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


def as_text(value: Any) -> str | None:
    """Text, NFKC-normalised and stripped (normalize.to_text): the converter the COPY encoder's fast path
    checks a column of plain ASCII for at once (ingest.copy_fast)."""
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


def _optional(name: str, aliases: tuple[str, ...], convert: Callable[[Any], Any]) -> Column:
    """A column added to a contract later (issue 23): optional, not counted towards finding the header."""
    return Column(name, aliases, convert, repetitive=True, optional=True)


STREETS = FeedSpec(
    source="streets",
    table="raw.streets_compounds",
    extension="xlsx",
    reporter_column="compound_code",
    key=("compound_code",),
    columns=(
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)"), required=True),
        Column("name", ("小区名称",), as_text, required=True),
        Column("community_code", ("所属社区", "社区编码"), _code(r"\d{12}", "community code (12 digits)"), repetitive=True),
        Column("households", ("户数",), _non_negative(n.to_int)),
        Column("building_area_m2", ("建筑面积(㎡)", "建筑面积", "建筑面积m2"), _non_negative(n.to_decimal)),
        Column("buildings", ("楼栋数",), _non_negative(n.to_int), repetitive=True),
        Column("property_mode", ("物业服务方式",), _enum(ref.PROPERTY_MODES), required=True, repetitive=True),
        Column("property_company", ("物业企业",), as_text, repetitive=True),
        Column("subsidy_start_month", ("过渡补贴起始月",), lambda v: n.to_date(v, month_only=True), repetitive=True),
        Column("party_org_type", ("党组织类型",), _enum(ref.PARTY_ORG_TYPES), repetitive=True),
        Column("party_org_since", ("党组织成立日期",), n.to_date),
        Column("owners_committee", ("业委会/物管会", "业委会", "物管会"), _enum(ref.OWNERS_COMMITTEES), repetitive=True),
        Column("building_heads", ("楼栋长数",), _non_negative(n.to_int), repetitive=True),
        Column("unit_heads", ("单元长数",), _non_negative(n.to_int), repetitive=True),
        Column("service_station", ("党群服务站",), n.to_bool, repetitive=True),
        # optional (issue 23): grids, the party organisation's strength, property-company party work, the
        # programme's local arrangements. A workbook without them stays valid (their raw columns stay null).
        _optional("grid_code", ("所属网格", "网格编码"), as_text),
        _optional("micro_grids", ("微网格数",), _non_negative(n.to_int)),
        _optional("grid_assistants", ("网格助理数", "网格助理"), _non_negative(n.to_int)),
        _optional("party_org_on_grid", ("党组织建在网格上", "党组织与网格对应"), n.to_bool),
        _optional("party_positions", ("党组织阵地数", "阵地数"), _non_negative(n.to_int)),
        _optional("secretary_type", ("党组织书记类型", "书记类型"), _enum(ref.SECRETARY_TYPES)),
        _optional("part_time_members", ("兼职委员数",), _non_negative(n.to_int)),
        _optional("party_members", ("党员数", "在册党员数"), _non_negative(n.to_int)),
        _optional("property_party_branch", ("物业党支部", "物业企业党支部"), n.to_bool),
        _optional("party_instructors", ("物业党建指导员数", "党建指导员数"), _non_negative(n.to_int)),
        _optional("dual_model", ("双组双建双监督",), n.to_bool),
        _optional("self_funding", ("自筹自管", "居民自筹"), n.to_bool),
        _optional("courtyards_merged", ("合并院落数", "整合院落数"), _non_negative(n.to_int)),
        _optional("micro_positions", ("微阵地数",), _non_negative(n.to_int)),
        _optional("in_service_members", ("在职党员报到数", "报到在职党员数"), _non_negative(n.to_int)),
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
        Column("record_id", ("流水号",), as_text, required=True),
        Column("canteen_code", ("食堂编码",), _code(r"CT\d{12}", "canteen code (CT + 12 digits)"),
               required=True, repetitive=True),
        Column("served_at", ("就餐时间",), n.to_timestamp, required=True),
        Column("meal", ("餐次",), _enum(ref.MEALS), required=True, repetitive=True),
        Column("diner_category", ("人群类别",), _enum(ref.DINER_CATEGORIES), required=True, repetitive=True),
        Column("diner_card", ("就餐卡号",), as_text, repetitive=True),
        Column("age", ("年龄",), _non_negative(n.to_int), repetitive=True),
        Column("price_yuan", ("实付金额",), _non_negative(n.to_decimal), repetitive=True),
        Column("subsidy_yuan", ("补贴金额",), _non_negative(n.to_decimal), repetitive=True),
        Column("payment_method", ("支付方式",), as_text, repetitive=True),
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
        Column("service_request_id", ("工单号",), as_text, required=True),
        Column("point_code", ("帮代办点编码",), _code(r"AP\d{12}", "point code (AP + 12 digits)"),
               required=True, repetitive=True),
        Column("event", ("事件",), _choice(ref.CASE_EVENTS), required=True, repetitive=True),
        Column("event_at", ("事件时间",), n.to_timestamp, required=True),
        Column("service_code", ("事项类别",), _choice(ref.SERVICE_CODES), repetitive=True),
        Column("channel", ("渠道",), _choice(ref.CHANNELS), repetitive=True),
        Column("compound_code", ("小区编码",), _code(r"\d{15}", "compound code (15 digits)"), repetitive=True),
        Column("handler", ("办理人",), _choice(ref.HANDLERS), repetitive=True),
        Column("agency_responsible", ("责任部门",), as_text, repetitive=True),
        Column("people_served", ("服务人次",), _non_negative(n.to_int), repetitive=True),
        Column("satisfaction", ("满意度",), _satisfaction, repetitive=True),
        # optional (issue 23): a hot or urgent issue, and the compound whose party organisation handled it
        _optional("issue_flag", ("问题类别", "热点急难"), _enum(ref.ISSUE_FLAGS)),
        _optional("party_org_code", ("办理党组织", "党组织小区编码"), _code(r"\d{15}", "compound code (15 digits)")),
        Column("requester_name", ("姓名",), as_text),
        Column("requester_phone", ("电话", "phone"), as_text),  # GeoReport's requester phone
        Column("requester_id_number", ("身份证号",), as_text),
        Column("status_notes", ("备注",), as_text),
    ),
)

SPECS: dict[str, FeedSpec] = {s.source: s for s in (STREETS, CANTEENS, ASSISTANCE)}
