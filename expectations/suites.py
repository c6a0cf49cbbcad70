"""Great Expectations suites, as code. Each expectation carries GX's own `severity` (GX 1.x):
`critical` blocks publishing (stored as 'fail' in audit.dq_results), `warning` is counted and
reported and publishing goes on (stored as 'warn').

The grain of the gate: a check blocks only when a failure means the whole night is wrong (street
totals that do not add up to the city, an empty mart, a broken contract, a rate formula out of
[0, 1]). A row-level fault (a timestamp outside the service day, stages out of order, negative
money, unknown codes, duplicates) warns: the rows are counted here, and the models keep them out of
the KPIs they would distort (dbt_project/macros/row_flags.sql), so one bad reporter never keeps the
rest of the city from the officials. Every check has a short Chinese description (`zh`), which is
what the morning email shows.

A suite validates one query (one feed for one service day), so that a night's checks see only
that night's rows; `{day}` in the query is the service day. docs/data-quality.md lists every check
with its severity and the reason for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import great_expectations as gx
from great_expectations.expectations.metadata_types import FailureSeverity

from warehouse import reference as ref
from warehouse import settings
from warehouse.settings import SERVICE_TZ


@dataclass(frozen=True)
class Check:
    expectation: Any
    zh: str  # short Chinese description: how the email names the check
    note: str | None = None  # how to read the result (stored with it in audit.dq_results.details)


def severity_of(gx_severity: FailureSeverity | str | None) -> str:
    """The project's name for GX's severity: 'fail' (critical: blocks) or 'warn' (anything else)."""
    return "fail" if gx_severity in (None, FailureSeverity.CRITICAL, "critical") else "warn"


def blocks(expectation: Any, zh: str, note: str | None = None) -> Check:
    """A check whose failure means the whole night is wrong: publishing is blocked."""
    expectation.severity = FailureSeverity.CRITICAL
    return Check(expectation, zh, note)


def warns(expectation: Any, zh: str, note: str | None = None) -> Check:
    """A row- or reporter-level check: counted and reported, the night publishes."""
    expectation.severity = FailureSeverity.WARNING
    return Check(expectation, zh, note)


@dataclass(frozen=True)
class Suite:
    name: str
    query: str
    checks: list[Check] = field(default_factory=list)


def _local_day(column: str) -> str:
    return f"to_char(({column}) at time zone '{SERVICE_TZ}', 'YYYY-MM-DD')"


def reference_codes(seed: str, column: str) -> tuple[str, ...]:
    """Codes of a reference seed in force (warehouse.reference.seed_files: Taiyuan's, and a province deployment's
    other cities beside them): read from the files, not from the seeds schema, because the raw checks run
    before the night's first dbt build."""
    return _codes(seed, column, settings.scope())


@cache
def _codes(seed: str, column: str, scope: str) -> tuple[str, ...]:
    return tuple(sorted(row[column] for row in ref.seed_rows(seed, scope)))


def cities() -> tuple[str, ...]:
    """The cities of the districts in force: Taiyuan, or a province deployment's eleven."""
    return tuple(sorted({ref.city_of(code) for code in reference_codes("districts", "district_code")}))


# Row-count band: tonight's rows of each reporter against the median of its most recent prior nights.
# Calibrated on the built-in scenario (a canteen serves about 42 person-times a night, standard deviation
# 6, fewer at weekends): over 2023 (365 nights x 312 canteens) tonight / median never reached 1.9 and fell
# below 1/3 twice, while a doubled delivery gives about 2 (1.9 catches six in ten of them; the key
# checks catch every doubled delivery of the same records). Recalibrate on real history before tightening.
BAND_NIGHTS = 7  # prior nights in the median (the reporter's most recent ones with rows)
BAND_LOOKBACK_DAYS = 21  # how far back those nights are looked for: bounded cost, whatever the history
BAND_MIN_NIGHTS = 3  # fewer prior nights: not compared (recorded as not compared)
BAND_MIN_ROWS = 20  # a median below this is too small to judge by ratio (e.g. an assistance point's ~1 event)
BAND_HIGH = 1.9  # 'fail': tonight above 1.9 x the median, e.g. a file delivered twice
BAND_LOW = 3.0  # 'warn': tonight below a third of the median, e.g. a truncated file
FEED_TOTAL = "(feed total)"  # the band's row for the whole feed, beside its reporters
# (raw table, the expression naming a row's reporter): from the record's own code, not the file name,
# so that a renamed copy of a file counts towards the reporter whose records it holds
BAND_FEEDS = {
    "streets": ("raw.streets_compounds", "left(compound_code, 9)"),
    "canteens": ("raw.canteens_meals", "canteen_code"),
    "assistance": ("raw.assistance_case_events", "point_code"),
}
REJECTED_SHARE_MAX = 0.1  # 'warn': more than a tenth of a file's rows rejected by the reader


def row_count_band_query(feed: str, day: str) -> str:
    """Per reporter (and the whole feed) of `feed`: rows tonight, prior nights, their median, and the
    two ratios the band checks (null when not compared)."""
    table, reporter = BAND_FEEDS[feed]
    window = (f"_service_date between date '{day}' - {BAND_LOOKBACK_DAYS} and date '{day}'")
    # GX takes a query asset only when it starts with SELECT: the CTEs go in a subquery
    return f"""select * from (
with nightly as (
    select {reporter} as reporter_code, _service_date as service_date, count(*) as n
    from {table} where {window} group by 1, 2
    union all
    select '{FEED_TOTAL}', _service_date, count(*) from {table} where {window} group by 2
),
prior as (
    select reporter_code, n, row_number() over (partition by reporter_code order by service_date desc) as k
    from nightly where service_date < date '{day}'
),
baseline as (
    select reporter_code, count(*) as prior_nights,
           percentile_cont(0.5) within group (order by n)::numeric as recent_median
    from prior where k <= {BAND_NIGHTS} group by reporter_code
),
compared as (
    select t.reporter_code, t.n as rows_tonight, coalesce(b.prior_nights, 0) as prior_nights, b.recent_median,
           coalesce(b.prior_nights, 0) >= {BAND_MIN_NIGHTS} and b.recent_median >= {BAND_MIN_ROWS} as judged
    from nightly as t left join baseline as b using (reporter_code)
    where t.service_date = date '{day}'
)
select reporter_code, rows_tonight, prior_nights, recent_median,
       case when judged and reporter_code <> '{FEED_TOTAL}' then round(rows_tonight / recent_median, 3) end
           as rows_over_recent_median,
       case when judged and reporter_code = '{FEED_TOTAL}' then round(rows_tonight / recent_median, 3) end
           as feed_rows_over_recent_median,
       case when judged then round(recent_median / rows_tonight, 3) end as recent_median_over_rows
from compared
) as band"""


def row_count_band_suite(feed: str, day: str) -> Suite:
    E = gx.expectations
    skipped = (f"null ratio = not compared: fewer than {BAND_MIN_NIGHTS} prior nights with rows, or a median "
               f"below {BAND_MIN_ROWS} rows (details.missing_count)")
    return Suite(f"raw_{feed}_row_count_band", row_count_band_query(feed, day), [
        # one reporter far above its usual volume (e.g. a day exported twice) is reporter-level: the loader
        # holds such a file (ingest/holds.py, once the reporter has enough history), so here it only warns
        warns(E.ExpectColumnValuesToBeBetween(column="rows_over_recent_median", max_value=BAND_HIGH),
              "报送行数远超该单位近期水平（疑似重复报送）",
              f"tonight / median of up to {BAND_NIGHTS} prior nights at most {BAND_HIGH}; {skipped}"),
        # the whole feed far above its usual volume means the night is wrong (every file doubled): it blocks
        blocks(E.ExpectColumnValuesToBeBetween(column="feed_rows_over_recent_median", max_value=BAND_HIGH),
               "全市报送总行数远超近期水平（疑似整批重复报送）",
               f"feed total: tonight / median of up to {BAND_NIGHTS} prior nights at most {BAND_HIGH}; {skipped}"),
        # a shrunken file under-reports like a missing one, which only warns (freshness): so does this
        warns(E.ExpectColumnValuesToBeBetween(column="recent_median_over_rows", max_value=BAND_LOW),
              "报送行数远低于该单位近期水平（疑似文件不完整）",
              f"median of up to {BAND_NIGHTS} prior nights / tonight at most {BAND_LOW}; {skipped}"),
    ])


def rejections_suite(feed: str, day: str) -> Suite:
    """The reader's rejections of the night's current files (the ledger's `loaded` versions)."""
    E = gx.expectations
    return Suite(
        f"raw_{feed}_rejections",
        f"select reporter_code, file_path, rows_read, rows_rejected, "
        f"round(rows_rejected::numeric / nullif(rows_read, 0), 3) as rejected_share from audit.load_ledger "
        f"where source = '{feed}' and service_date = date '{day}' and status = 'loaded'",
        [
            # rejected rows never reach raw (audit.rejected_rows has them): a file that loses many of them
            # under-reports its reporter, like a missing file, so this warns rather than blocks
            warns(E.ExpectColumnValuesToBeBetween(column="rejected_share", max_value=REJECTED_SHARE_MAX),
                  "文件中超过一成的记录因格式或编码错误被退回",
                  "rows_rejected / rows_read per file; the rows and reasons are in audit.rejected_rows"),
        ],
    )


def raw_suites(day: str) -> list[Suite]:
    """Suites on the night's raw rows. The readers already reject malformed codes, negative amounts and
    bad enums row by row (audit.rejected_rows): the checks of the same rules here are defence in depth
    against a loader change that lets such rows through. Each is about rows, not the night: it warns,
    counts the rows, and the models leave such rows out of the KPIs (macros/row_flags.sql)."""
    E = gx.expectations
    streets = list(reference_codes("streets", "street_code"))
    return [
        Suite(
            "raw_streets_compounds",
            f"select *, left(compound_code, 9) as street_code from raw.streets_compounds "
            f"where _service_date = date '{day}'",
            [
                warns(E.ExpectTableRowCountToBeBetween(min_value=1), "今日无小区台账报送"),
                warns(E.ExpectColumnValuesToNotBeNull(column="compound_code"), "小区编码为空"),
                # one row per compound and night: a second workbook with the same compounds would double them
                warns(E.ExpectColumnValuesToBeUnique(column="compound_code"), "同一小区重复报送"),
                warns(E.ExpectColumnValuesToBeInSet(column="street_code", value_set=streets), "小区编码不属于任何已知街道"),
                warns(E.ExpectColumnValuesToBeInSet(column="property_mode", value_set=list(ref.PROPERTY_MODES.values())),
                      "物业服务方式不在规定类别内"),
                warns(E.ExpectColumnValuesToBeBetween(column="households", min_value=0), "户数为负数"),
                warns(E.ExpectColumnValuesToBeBetween(column="building_area_m2", min_value=0), "建筑面积为负数"),
            ],
        ),
        Suite(
            "raw_canteens_meals",
            f"select *, {_local_day('served_at')} as served_day from raw.canteens_meals "
            f"where _service_date = date '{day}'",
            [
                warns(E.ExpectTableRowCountToBeBetween(min_value=1), "今日无社区食堂报送"),
                warns(E.ExpectColumnValuesToNotBeNull(column="record_id"), "就餐流水号为空"),
                # a record id twice in one night: the same records delivered twice (e.g. a renamed copy)
                warns(E.ExpectColumnValuesToBeUnique(column="record_id"), "就餐流水号重复（同一记录报送两次）"),
                warns(E.ExpectColumnValuesToBeInSet(column="canteen_code",
                                                    value_set=list(reference_codes("canteens", "canteen_code"))),
                      "食堂编码不在食堂名录中"),
                warns(E.ExpectColumnValuesToBeInSet(column="served_day", value_set=[day]), "就餐时间不在本服务日内"),
                warns(E.ExpectColumnValuesToBeBetween(column="price_yuan", min_value=0), "实付金额为负数"),
                warns(E.ExpectColumnValuesToBeBetween(column="subsidy_yuan", min_value=0), "补贴金额为负数"),
                warns(E.ExpectColumnValuesToBeInSet(column="diner_category",
                                                    value_set=list(ref.DINER_CATEGORIES.values())),
                      "人群类别不在规定类别内"),
            ],
        ),
        Suite(
            "raw_assistance_case_events",
            f"select *, {_local_day('event_at')} as event_day from raw.assistance_case_events "
            f"where _service_date = date '{day}'",
            [
                warns(E.ExpectColumnValuesToNotBeNull(column="service_request_id"), "事项编号为空"),
                # the reader's record key: the same event of a point's case twice in one night is a doubled
                # delivery (points number their cases independently: the same id from two points is two cases)
                warns(E.ExpectCompoundColumnsToBeUnique(column_list=["point_code", "service_request_id", "event",
                                                                     "event_at"]),
                      "同一事项环节重复报送"),
                warns(E.ExpectColumnValuesToBeInSet(column="point_code",
                                                    value_set=list(reference_codes("assistance_points", "point_code"))),
                      "帮代办点编码不在名录中"),
                warns(E.ExpectColumnValuesToBeInSet(column="event", value_set=list(ref.CASE_EVENTS)),
                      "事项环节类型不在规定类别内"),
                warns(E.ExpectColumnValuesToBeInSet(column="event_day", value_set=[day]), "事项环节时间不在本服务日内"),
                warns(E.ExpectColumnValuesToBeBetween(column="people_served", min_value=0), "服务人数为负数"),
                warns(E.ExpectColumnValuesToBeBetween(column="satisfaction", min_value=1, max_value=5),
                      "满意度不在1至5分之间"),
            ],
        ),
        *(row_count_band_suite(feed, day) for feed in BAND_FEEDS),
        *(rejections_suite(feed, day) for feed in BAND_FEEDS),
    ]


PII_COLUMN_PATTERN = r"(name|phone|id_number|id_hash|card|requester|masked|_hash)$"
RATE_COLUMN_PATTERN = r"(_rate|_share)$"
# (measure, city summary column, street scorecard column): street rows must add up to the city row
CITY_TOTALS = [
    ("cases_received", "cases_received", "cases_received"),
    ("canteen_person_times", "canteen_person_times", "canteen_person_times"),
    ("overnight_cohort", "overnight_cohort", "overnight_cohort"),
    # one meaning in both marts: escalated to a department that day (dbt_project/README.md, KPI definitions)
    ("cases_escalated", "cases_escalated", "cases_escalated"),
]
# coverage marts: district rows must equal the sum of their streets
DISTRICT_TOTALS = [
    ("mart_property_coverage", "compounds"),
    ("mart_property_coverage", "compounds_with_property_service"),
    ("mart_party_coverage", "compounds_with_party_org"),
    ("mart_party_coverage", "compounds_with_owners_committee"),
    # the registry's optional columns (issue 23): grid and party-organisation measures add up the same way
    ("mart_grid_coverage", "grid_assistants"),
    ("mart_party_organisation", "party_positions"),
]


# the same condition as macros/row_flags.sql's case_out_of_order()
CASE_OUT_OF_ORDER = ("(dispatched_at < received_at or resolved_at < received_at "
                     "or resolved_at < dispatched_at or closed_at < resolved_at)")


def mart_suites(schema: str, day: str, tables: dict[str, list[str]]) -> list[Suite]:
    """Suites on the built marts: `tables` maps each table of `schema` to its columns."""
    import re

    E = gx.expectations
    suites = []
    for table, columns in sorted(tables.items()):
        rates = [c for c in columns if re.search(RATE_COLUMN_PATTERN, c)]
        if not rates:
            continue
        where = f" where service_date = date '{day}'" if "service_date" in columns else ""
        suites.append(Suite(
            f"marts_rates_{table}",
            f'select {", ".join(rates)} from {schema}."{table}"{where}',
            [blocks(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1), f"比率超出0至1范围（{table}）")
             for c in rates],
        ))
    if {"mart_city_daily_summary", "mart_street_daily_scorecard"} <= tables.keys():
        # per city (a province deployment's marts hold eleven): its row against its own streets, a city
        # without a row or streets without their city's row counting as 0 on the missing side
        parts = [
            f"select '{m}' as measure, city_code, coalesce(c.total, 0) - coalesce(s.total, 0) as difference "
            f"from (select city_code, {cc} as total from {schema}.mart_city_daily_summary "
            f"where service_date = date '{day}') c full join (select left(street_code, 4) || '00' as city_code, "
            f"sum({sc}) as total from {schema}.mart_street_daily_scorecard where service_date = date '{day}' "
            f"group by 1) s using (city_code)"
            for m, cc, sc in CITY_TOTALS
        ]
        suites.append(Suite("marts_street_totals_equal_city", " union all ".join(parts), [
            blocks(E.ExpectColumnValuesToBeBetween(column="difference", min_value=0, max_value=0),
                   "各街道合计与全市合计不一致"),
        ]))
    district_parts = [
        f"select '{t}.{c}' as measure, d.scope_code, d.{c} - coalesce(sum(s.{c}), 0) as difference "
        f"from {schema}.{t} d left join {schema}.{t} s on s.scope_level = 'street' and s.service_date = d.service_date "
        f"and left(s.scope_code, 6) = d.scope_code where d.scope_level = 'district' and d.service_date = date '{day}' "
        f"group by d.scope_code, d.{c}"
        for t, c in DISTRICT_TOTALS if t in tables
    ]
    if district_parts:
        suites.append(Suite("marts_street_totals_equal_district", " union all ".join(district_parts), [
            blocks(E.ExpectColumnValuesToBeBetween(column="difference", min_value=0, max_value=0),
                   "各街道合计与区县合计不一致"),
        ]))
    suites.append(Suite(
        "marts_no_personal_data_columns",
        f"select table_name, column_name from information_schema.columns where table_schema = '{schema}' "
        f"and column_name ~* '{PII_COLUMN_PATTERN}' and column_name not in ('street_name', 'district_name', "
        f"'community_name', 'compound_name', 'scope_name', 'canteen_name')",
        [blocks(E.ExpectTableRowCountToEqual(value=0), "对外数据表含个人信息字段")],
    ))
    if "mart_street_daily_scorecard" in tables:
        # every street has a row for every day built: none means the build lost the night
        suites.append(Suite(
            "marts_scorecard_present",
            f"select street_code from {schema}.mart_street_daily_scorecard where service_date = date '{day}'",
            [blocks(E.ExpectTableRowCountToBeBetween(min_value=1), "街道日考核表为空")],
        ))
    if "fct_assistance_case" in tables:
        # received <= dispatched <= resolved <= closed, for the cases touched that day; the same condition
        # keeps such a case out of the scorecard and city figures (macros/row_flags.sql)
        suites.append(Suite(
            "marts_case_stage_order",
            f"select service_request_id, {CASE_OUT_OF_ORDER} as out_of_order "
            f"from {schema}.fct_assistance_case where received_date = date '{day}' or resolved_date = date '{day}'",
            [warns(E.ExpectColumnValuesToBeInSet(column="out_of_order", value_set=[False]),
                    "事项各环节时间顺序颠倒（该事项不计入当日指标）")],
        ))
    if "mart_source_freshness" in tables:
        # a reporter that did not submit is reported (email, freshness mart) but does not stop the night
        suites.append(Suite(
            "marts_source_freshness",
            f"select source, reporter_code, missing from {schema}.mart_source_freshness where service_date = date '{day}'",
            [warns(E.ExpectColumnValuesToBeInSet(column="missing", value_set=[False]), "有报送单位未报送")],
        ))
    if "mart_city_daily_summary" in tables:
        suites.append(Suite(
            "marts_city_summary_present",
            f"select * from {schema}.mart_city_daily_summary where service_date = date '{day}'",
            [blocks(E.ExpectTableRowCountToEqual(value=len(cities())), "全市日汇总缺失")],
        ))
    return suites
