"""The per-case figures an official acts on, read from the published marts (marts.fct_assistance_case
with the compound and community dimensions, and mart_community_canteen_day): per community of a street
its cases and canteen person-times, the street's open cases past the overnight mark and its escalations
waiting for a department, a district's compounds with the most open cases, and a district's streets
ranked against their own last seven days.

"As of" a service day means at its cut-off, 24:00 Asia/Shanghai of that day: the night's files hold
the events up to then, and the email goes out before 09:00 of the next day. A case is past the
overnight mark (解决不隔夜, 09:00 of the day after receipt) when it was received on an earlier day and
is still open at the cut-off; a case received on the service day itself still has until 09:00.
No requester field is read here: the marts have none, and the queries name their columns.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import psycopg

from warehouse.settings import TZ

# The KPIs leave out cases whose stages are out of order (dbt_project/macros/row_flags.sql,
# case_out_of_order); the email leaves out the same ones, so its community rows add up to the street's.
CASE_COUNTS = """not coalesce(c.dispatched_at < c.received_at or c.resolved_at < c.received_at
                         or c.resolved_at < c.dispatched_at or c.closed_at < c.resolved_at, false)"""
WEEK = 7


def cutoff(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), TZ)


def communities(conn: psycopg.Connection, street_code: str, day: date) -> list[dict]:
    """Per community of the street: its name, received, resolved and open cases, the overnight cohort,
    and the person-times of its canteens (marts.mart_community_canteen_day: canteens seed's community)."""
    return conn.execute(
        f"""with cases as (
                select c.received_date, c.resolved_date, c.resolved_overnight, k.community_code
                from marts.fct_assistance_case c left join marts.dim_compound k using (compound_code)
                where c.street_code = %(street)s and {CASE_COUNTS}),
            counts as (
                select coalesce(m.community_code, c.community_code) as community_code,
                       min(m.community_name) as community_name,
                       count(c.*) filter (where c.received_date = %(day)s) as cases_received,
                       count(c.*) filter (where c.resolved_date = %(day)s) as cases_resolved,
                       count(c.*) filter (where c.received_date <= %(day)s
                                            and (c.resolved_date is null or c.resolved_date > %(day)s)) as cases_open,
                       count(c.*) filter (where c.received_date = %(day)s - 1) as overnight_cohort,
                       count(c.*) filter (where c.received_date = %(day)s - 1 and c.resolved_overnight)
                           as overnight_resolved
                from (select community_code, community_name from marts.dim_community
                      where street_code = %(street)s
                      -- a community the canteens seed places a canteen in, with no compound in the registry
                      union select community_code, null from marts.mart_community_canteen_day
                      where street_code = %(street)s and service_date = %(day)s
                        and community_code not in (select community_code from marts.dim_community
                                                   where street_code = %(street)s)) m
                full join cases c using (community_code)
                group by 1)
            select counts.*, coalesce(ct.person_times, 0) as canteen_person_times
            from counts left join marts.mart_community_canteen_day ct
                 on ct.community_code = counts.community_code and ct.service_date = %(day)s
            order by counts.community_code nulls last""",
        {"street": street_code, "day": day}).fetchall()


def unplaced_person_times(conn: psycopg.Connection, street_code: str, day: date) -> int:
    """The street's canteen person-times of the day that no community carries: those of canteens the
    canteens seed places in no community (fct_canteen_day's street total less mart_community_canteen_day's)."""
    row = conn.execute(
        """select coalesce((select sum(person_times) from marts.fct_canteen_day
                            where street_code = %(street)s and service_date = %(day)s), 0)
                - coalesce((select sum(person_times) from marts.mart_community_canteen_day
                            where street_code = %(street)s and service_date = %(day)s), 0) as unplaced""",
        {"street": street_code, "day": day}).fetchone()
    return int(row["unplaced"])


def overdue_cases(conn: psycopg.Connection, street_code: str, day: date) -> list[dict]:
    """Open at the cut-off and received before the service day, longest open first."""
    return conn.execute(
        f"""select c.service_request_id, c.service_code, k.compound_name, c.received_at, c.escalated,
                   c.agency_responsible, c.handler,
                   floor(extract(epoch from (%(cut)s - c.received_at)) / 3600)::int as hours_open
            from marts.fct_assistance_case c left join marts.dim_compound k using (compound_code)
            where c.street_code = %(street)s and {CASE_COUNTS}
              and c.received_date < %(day)s and (c.resolved_at is null or c.resolved_at >= %(cut)s)
            order by c.received_at, c.point_code, c.service_request_id""",
        {"street": street_code, "day": day, "cut": cutoff(day)}).fetchall()


def waiting_escalations(conn: psycopg.Connection, street_code: str, day: date) -> list[dict]:
    """Escalated by the cut-off and not yet answered by the department, oldest escalation first."""
    return conn.execute(
        f"""select c.service_request_id, c.agency_responsible, c.service_code, k.compound_name, c.escalated_at,
                   floor(extract(epoch from (%(cut)s - c.escalated_at)) / 3600)::int as hours_waiting
            from marts.fct_assistance_case c left join marts.dim_compound k using (compound_code)
            where c.street_code = %(street)s and {CASE_COUNTS} and c.escalated_at < %(cut)s
              and (c.dept_resolved_at is null or c.dept_resolved_at >= %(cut)s)
              and (c.resolved_at is null or c.resolved_at >= %(cut)s)
            order by c.escalated_at, c.point_code, c.service_request_id""",
        {"street": street_code, "cut": cutoff(day)}).fetchall()


def worst_compounds(conn: psycopg.Connection, district_code: str, day: date, limit: int = 3) -> list[dict]:
    """The district's compounds with the most cases open at the cut-off (and how many of them are overdue)."""
    return conn.execute(
        f"""select c.compound_code, k.compound_name, s.street_name, count(*) as cases_open,
                   count(*) filter (where c.received_date < %(day)s) as cases_overdue
            from marts.fct_assistance_case c
            left join marts.dim_compound k using (compound_code)
            left join marts.dim_street s on s.street_code = c.street_code
            where c.district_code = %(district)s and {CASE_COUNTS}
              and c.received_date <= %(day)s and (c.resolved_at is null or c.resolved_at >= %(cut)s)
            group by 1, 2, 3 order by cases_open desc, c.compound_code limit %(limit)s""",
        {"district": district_code, "day": day, "cut": cutoff(day), "limit": limit}).fetchall()


def street_ranking(conn: psycopg.Connection, district_code: str, day: date) -> list[dict]:
    """The district's streets, worst overnight rate first (no cohort last), then largest backlog, each
    with its change against its own previous seven days (rate pooled over their cohorts, backlog averaged)."""
    rows = conn.execute(
        """select s.street_code, d.street_name, s.service_date, s.overnight_cohort, s.overnight_resolved,
                  s.cases_backlog
           from marts.mart_street_daily_scorecard s join marts.dim_street d using (street_code)
           where s.district_code = %s and s.service_date between %s and %s""",
        (district_code, day - timedelta(days=WEEK), day)).fetchall()
    streets: dict[str, dict] = {}
    for r in rows:
        streets.setdefault(r["street_code"], {"street_code": r["street_code"], "street_name": r["street_name"],
                                              "today": None, "week": []})
        key = "today" if r["service_date"] == day else "week"
        if key == "today":
            streets[r["street_code"]]["today"] = r
        else:
            streets[r["street_code"]]["week"].append(r)
    out = [_ranked(s) for s in streets.values() if s["today"] is not None]
    return sorted(out, key=lambda r: (r["overnight_resolution_rate"] is None, r["overnight_resolution_rate"] or 0,
                                      -r["cases_backlog"], r["street_code"]))


def _ranked(street: dict) -> dict:
    today, week = street["today"], street["week"]
    rate = _ratio(today["overnight_resolved"], today["overnight_cohort"])
    week_rate = _ratio(sum(r["overnight_resolved"] for r in week), sum(r["overnight_cohort"] for r in week))
    week_backlog = sum(r["cases_backlog"] for r in week) / len(week) if week else None
    return {"street_code": street["street_code"], "street_name": street["street_name"],
            "overnight_cohort": today["overnight_cohort"], "overnight_resolution_rate": rate,
            "rate_change": None if rate is None or week_rate is None else rate - week_rate,
            "cases_backlog": today["cases_backlog"],
            "backlog_change": None if week_backlog is None else today["cases_backlog"] - week_backlog}


def _ratio(numerator, denominator) -> float | None:
    return None if not denominator else float(numerator) / float(denominator)
