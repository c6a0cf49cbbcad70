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
