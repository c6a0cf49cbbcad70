"""What the city email adds to the figures every scope has (reports/figures.py), read from the published
marts as gov_bi_reader: each district's measures on the service day (the district email's key figures,
computed the same way: street rows summed over the district, rates from their numerators), and, once a
month, the programme's published figures against the warehouse's (marts.mart_published_figures, the
reconciliation `gov-warehouse reconcile` prints, published with the night).

Once a month means the summary of a month's last service day (sent on the morning of the 1st): the
month's registry is then complete, and the comparison does not repeat every morning unchanged.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import psycopg

from warehouse.reference import CITY_CODE, PROGRAMME_END, PROGRAMME_START

PROGRAMME_DAYS = (PROGRAMME_END - PROGRAMME_START).days + 1
# the streets the programme published figures of, by the key seed-facts.yaml gives them (the published_figures
# seed's street scope_code; int_reconciliation__published_figures' street_keys): their names come from dim_street
STREET_KEYS = {"liuxiang": "140106001", "wenmiao": "140106002", "miaoqian": "140106003"}

DISTRICT_SQL = """
with sc as (
    select district_code,
           sum(cases_received) as cases_received, sum(cases_resolved) as cases_resolved,
           sum(cases_backlog) as cases_backlog, sum(cases_escalated) as cases_escalated,
           sum(people_served) as people_served, sum(canteen_person_times) as canteen_person_times,
           sum(overnight_cohort) as overnight_cohort, sum(overnight_resolved) as overnight_resolved,
           sum(cases_resolved_in_grid) as cases_resolved_in_grid
    from marts.mart_street_daily_scorecard where service_date = %(day)s group by district_code
),
pc as (
    select district_code, sum(compounds) as compounds,
           sum(compounds_with_property_service) as compounds_with_property_service
    from marts.mart_property_coverage where scope_level = 'street' and service_date = %(day)s group by district_code
),
py as (
    select district_code, sum(compounds_with_party_org) as compounds_with_party_org,
           sum(compounds_with_owners_committee) as compounds_with_owners_committee
    from marts.mart_party_coverage where scope_level = 'street' and service_date = %(day)s group by district_code
)
select d.district_code, d.district_name, sc.cases_received, sc.cases_resolved, sc.cases_backlog, sc.cases_escalated,
       sc.people_served, sc.canteen_person_times, sc.overnight_cohort, sc.overnight_resolved,
       sc.cases_resolved_in_grid, pc.compounds, pc.compounds_with_property_service, py.compounds_with_party_org,
       py.compounds_with_owners_committee
from marts.dim_district d
left join sc using (district_code) left join pc using (district_code) left join py using (district_code)
where left(d.district_code, 4) || '00' = %(city)s
order by d.district_code
"""


def reconciliation_night(day: date) -> bool:
    """The city email compares with the published figures on a month's last service day."""
    return (day + timedelta(days=1)).day == 1


def next_reconciliation(day: date) -> date:
    first_of_next = (day.replace(day=1) + timedelta(days=32)).replace(day=1)
    return first_of_next - timedelta(days=1)


def district_rows(conn: psycopg.Connection, day: date, city: str = CITY_CODE) -> list[dict]:
    """Per district of the city (dim_district's districts whose code is the city's: a province deployment's
    marts hold eleven cities), the raw sums of the service day (the caller computes the rates)."""
    return conn.execute(DISTRICT_SQL, {"day": day, "city": city}).fetchall()


def published_figures(conn: psycopg.Connection) -> dict:
    """{"figures": rows of marts.mart_published_figures (with scope names), "programme_loaded": whether
    every day of the programme period is in the scorecard (the cumulative figures are compared only then)}.
    Empty figures when the mart is not published yet."""
    found = conn.execute("select to_regclass('marts.mart_published_figures') is not null as found").fetchone()
    if not found["found"]:
        return {"figures": [], "programme_loaded": False}
    figures = conn.execute(
        """select f.figure_key, f.scope_level, f.scope_code, f.published, f.warehouse, f.approx, f.matches,
                  f.needs_programme_period, f.registry_as_of,
                  case when f.scope_code = %(city)s then '全市'
                       else coalesce(d.district_name, s.street_name, f.scope_code) end as scope_name
           from marts.mart_published_figures f
           left join marts.dim_district d on d.district_code = f.scope_code
           left join marts.dim_street s on f.scope_level = 'street'
                and s.street_code = coalesce(%(streets)s::jsonb ->> f.scope_code, f.scope_code)
           order by f.scope_code, f.figure_key""",
        {"city": CITY_CODE, "streets": json.dumps(STREET_KEYS)}).fetchall()
    days = conn.execute(
        "select count(distinct service_date) as n from marts.mart_street_daily_scorecard "
        "where service_date between %s and %s", (PROGRAMME_START, PROGRAMME_END)).fetchone()["n"]
    return {"figures": figures, "programme_loaded": days == PROGRAMME_DAYS}
