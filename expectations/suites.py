"""Great Expectations suites, as code. Each expectation declares its severity next to it:
'fail' blocks publishing, 'warn' is reported and publishing goes on.

A suite validates one query (one feed for one service day), so that a night's checks see only
that night's rows; `{day}` in the query is the service day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import great_expectations as gx

from ingest import reference as ref


@dataclass(frozen=True)
class Check:
    expectation: Any
    severity: str  # 'fail' or 'warn'


@dataclass(frozen=True)
class Suite:
    name: str
    query: str
    checks: list[Check] = field(default_factory=list)


def _local_day(column: str) -> str:
    return f"to_char(({column}) at time zone 'Asia/Shanghai', 'YYYY-MM-DD')"


def raw_suites(day: str) -> list[Suite]:
    E = gx.expectations
    return [
        Suite(
            "raw_streets_compounds",
            f"select * from raw.streets_compounds where _service_date = date '{day}'",
            [
                Check(E.ExpectTableRowCountToBeBetween(min_value=1), "warn"),
                Check(E.ExpectColumnValuesToNotBeNull(column="compound_code"), "fail"),
                Check(E.ExpectColumnValuesToBeUnique(column="compound_code"), "fail"),
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
                Check(E.ExpectColumnValuesToBeUnique(column="record_id"), "fail"),
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
                Check(E.ExpectColumnValuesToBeInSet(column="event", value_set=list(ref.CASE_EVENTS)), "fail"),
                Check(E.ExpectColumnValuesToBeInSet(column="event_day", value_set=[day]), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="people_served", min_value=0), "fail"),
                Check(E.ExpectColumnValuesToBeBetween(column="satisfaction", min_value=1, max_value=5), "fail"),
            ],
        ),
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
