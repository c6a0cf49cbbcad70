"""Great Expectations suites, as code. Each expectation declares its severity next to it:
'fail' blocks publishing, 'warn' is reported and publishing goes on.

A suite validates one query (one feed for one service day), so that a night's checks see only
that night's rows; `{day}` in the query is the service day. docs/data-quality.md lists every check
with its severity and the reason for it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import great_expectations as gx

from ingest import reference as ref
from ingest.config import DBT_PROJECT_DIR


@dataclass(frozen=True)
class Check:
    expectation: Any
    severity: str  # 'fail' or 'warn'
    note: str | None = None  # how to read the result (stored with it in audit.dq_results.details)


@dataclass(frozen=True)
class Suite:
    name: str
    query: str
    checks: list[Check] = field(default_factory=list)


def _local_day(column: str) -> str:
    return f"to_char(({column}) at time zone 'Asia/Shanghai', 'YYYY-MM-DD')"


@cache
def reference_codes(seed: str, column: str) -> tuple[str, ...]:
    """Codes of a reference seed (dbt_project/seeds/<seed>.csv): read from the file, not from the
    seeds schema, because the raw checks run before the night's first dbt build."""
    with (DBT_PROJECT_DIR / "seeds" / f"{seed}.csv").open(encoding="utf-8") as f:
        return tuple(sorted(row[column] for row in csv.DictReader(f)))


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
       case when judged then round(rows_tonight / recent_median, 3) end as rows_over_recent_median,
       case when judged then round(recent_median / rows_tonight, 3) end as recent_median_over_rows
from compared
) as band"""


def row_count_band_suite(feed: str, day: str) -> Suite:
    E = gx.expectations
    skipped = (f"null ratio = not compared: fewer than {BAND_MIN_NIGHTS} prior nights with rows, or a median "
               f"below {BAND_MIN_ROWS} rows (details.missing_count)")
    return Suite(f"raw_{feed}_row_count_band", row_count_band_query(feed, day), [
        # doubled numbers must not reach the marts: a reporter far above its usual volume blocks the night
        Check(E.ExpectColumnValuesToBeBetween(column="rows_over_recent_median", max_value=BAND_HIGH), "fail",
              f"tonight / median of up to {BAND_NIGHTS} prior nights at most {BAND_HIGH}; {skipped}"),
        # a shrunken file under-reports like a missing one, which only warns (freshness): so does this
        Check(E.ExpectColumnValuesToBeBetween(column="recent_median_over_rows", max_value=BAND_LOW), "warn",
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
            Check(E.ExpectColumnValuesToBeBetween(column="rejected_share", max_value=REJECTED_SHARE_MAX), "warn",
                  "rows_rejected / rows_read per file; the rows and reasons are in audit.rejected_rows"),
        ],
    )


def raw_suites(day: str) -> list[Suite]:
    """Suites on the night's raw rows. The readers already reject malformed codes, negative amounts and
    bad enums row by row (audit.rejected_rows): the checks of the same rules here are defence in depth
    against a loader change that lets such rows through, and a failure means raw holds what no reader
    should have accepted, so they block."""
    E = gx.expectations
    streets = [code for _, code, _ in ref.all_streets()]
    return [
        Suite(
            "raw_streets_compounds",
            f"select *, left(compound_code, 9) as street_code from raw.streets_compounds "
            f"where _service_date = date '{day}'",
            [
                Check(E.ExpectTableRowCountToBeBetween(min_value=1), "warn"),
                Check(E.ExpectColumnValuesToNotBeNull(column="compound_code"), "fail"),
                # one row per compound and night: a second workbook with the same compounds would double them
                Check(E.ExpectColumnValuesToBeUnique(column="compound_code"), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="street_code", value_set=streets), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="property_mode",
                                                    value_set=list(ref.PROPERTY_MODES.values())), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="households", min_value=0), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="building_area_m2", min_value=0), "fail"),
            ],
        ),
        Suite(
            "raw_canteens_meals",
            f"select *, {_local_day('served_at')} as served_day from raw.canteens_meals "
            f"where _service_date = date '{day}'",
            [
                Check(E.ExpectTableRowCountToBeBetween(min_value=1), "warn"),
                Check(E.ExpectColumnValuesToNotBeNull(column="record_id"), "fail"),
                # a record id twice in one night: the same records delivered twice (e.g. a renamed copy)
                Check(E.ExpectColumnValuesToBeUnique(column="record_id"), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="canteen_code",
                                                    value_set=list(reference_codes("canteens", "canteen_code"))),
                      "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="served_day", value_set=[day]), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="price_yuan", min_value=0), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="subsidy_yuan", min_value=0), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="diner_category",
                                                    value_set=list(ref.DINER_CATEGORIES.values())), "fail"),
            ],
        ),
        Suite(
            "raw_assistance_case_events",
            f"select *, {_local_day('event_at')} as event_day from raw.assistance_case_events "
            f"where _service_date = date '{day}'",
            [
                Check(E.ExpectColumnValuesToNotBeNull(column="service_request_id"), "fail"),
                # the reader's record key: the same event twice in one night is a doubled delivery
                Check(E.ExpectCompoundColumnsToBeUnique(column_list=["service_request_id", "event", "event_at"]),
                      "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="point_code",
                                                    value_set=list(reference_codes("assistance_points", "point_code"))),
                      "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="event", value_set=list(ref.CASE_EVENTS)), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="event_day", value_set=[day]), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="people_served", min_value=0), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="satisfaction", min_value=1, max_value=5), "fail"),
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
]
# coverage marts: district rows must equal the sum of their streets
DISTRICT_TOTALS = [
    ("mart_property_coverage", "compounds"),
    ("mart_property_coverage", "compounds_with_property_service"),
    ("mart_party_coverage", "compounds_with_party_org"),
    ("mart_party_coverage", "compounds_with_owners_committee"),
]


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
            [Check(E.ExpectColumnValuesToBeBetween(column=c, min_value=0, max_value=1), "fail") for c in rates],
        ))
    if {"mart_city_daily_summary", "mart_street_daily_scorecard"} <= tables.keys():
        parts = [
            f"select '{m}' as measure, coalesce((select {cc} from {schema}.mart_city_daily_summary "
            f"where service_date = date '{day}'), 0) - coalesce((select sum({sc}) from {schema}.mart_street_daily_scorecard "
            f"where service_date = date '{day}'), 0) as difference"
            for m, cc, sc in CITY_TOTALS
        ]
        suites.append(Suite("marts_street_totals_equal_city", " union all ".join(parts), [
            Check(E.ExpectColumnValuesToBeBetween(column="difference", min_value=0, max_value=0), "fail"),
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
            Check(E.ExpectColumnValuesToBeBetween(column="difference", min_value=0, max_value=0), "fail"),
        ]))
    suites.append(Suite(
        "marts_no_personal_data_columns",
        f"select table_name, column_name from information_schema.columns where table_schema = '{schema}' "
        f"and column_name ~* '{PII_COLUMN_PATTERN}' and column_name not in ('street_name', 'district_name', "
        f"'community_name', 'compound_name', 'scope_name', 'canteen_name')",
        [Check(E.ExpectTableRowCountToEqual(value=0), "fail")],
    ))
    if "fct_assistance_case" in tables:
        # received <= dispatched <= resolved <= closed, for the cases touched that day
        suites.append(Suite(
            "marts_case_stage_order",
            f"select service_request_id, (dispatched_at < received_at or resolved_at < received_at "
            f"or resolved_at < dispatched_at or closed_at < resolved_at) as out_of_order "
            f"from {schema}.fct_assistance_case where received_date = date '{day}' or resolved_date = date '{day}'",
            [Check(E.ExpectColumnValuesToBeInSet(column="out_of_order", value_set=[False]), "fail")],
        ))
    if "mart_source_freshness" in tables:
        # a reporter that did not submit is reported (email, freshness mart) but does not stop the night
        suites.append(Suite(
            "marts_source_freshness",
            f"select source, reporter_code, missing from {schema}.mart_source_freshness where service_date = date '{day}'",
            [Check(E.ExpectColumnValuesToBeInSet(column="missing", value_set=[False]), "warn")],
        ))
    if "mart_city_daily_summary" in tables:
        suites.append(Suite(
            "marts_city_summary_present",
            f"select * from {schema}.mart_city_daily_summary where service_date = date '{day}'",
            [Check(E.ExpectTableRowCountToEqual(value=1), "fail")],
        ))
    return suites
