"""The figures an official's summary shows, read from the published marts as gov_bi_reader (what BI
sees: the marts are the BI contract; gov_reporter is a member of that role). The per-case lists of
the street and district emails are read by reports.casework, on the same connection.

Every scope (city, district, street) is computed the same way: street rows of the scorecard and
coverage marts, summed over the scope, rates recomputed from their numerators. Before the first
publish the marts do not exist: the report then has no figures (and says so), it does not fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg
from psycopg.rows import dict_row

from reports import casework, city_figures
from warehouse import settings
from warehouse.connections import BI_READER, connect_as
from warehouse.conninfo import ConnInfo

TREND_DAYS = 30
# what the figures read: all of them exist once a night has been published
PUBLISHED_TABLES = ("marts.mart_street_daily_scorecard", "marts.mart_property_coverage", "marts.mart_party_coverage",
                    "marts.dim_district", "marts.dim_street", "marts.mart_community_canteen_day")
COUNT_KEYS = ("cases_received", "cases_resolved", "cases_backlog", "cases_escalated", "people_served",
              "canteen_person_times")


@dataclass(frozen=True)
class Scope:
    level: str  # city / district / street
    code: str
    name: str

    def filter_sql(self, alias: str = "", street_column: str = "street_code") -> tuple[str, tuple]:
        """SQL condition restricting rows to this scope (coverage marts name a street row's code scope_code)."""
        prefix = f"{alias}." if alias else ""
        if self.level == "city":
            # a street's (or district's) code starts with its city's four digits; in a city deployment every row
            # is the city's, and rows that name no street stay in its totals
            if settings.scope() == "taiyuan":
                return "true", ()
            return f"left({prefix}{street_column}, 4) || '00' = %s", (self.code,)
        column = "district_code" if self.level == "district" else street_column
        return f"{prefix}{column} = %s", (self.code,)


@dataclass
class ScopeReport:
    scope: Scope
    service_date: date
    days: dict[date, dict] = field(default_factory=dict)  # day -> KPI row, last TREND_DAYS days
    breakdown: list[dict] = field(default_factory=list)  # district: its streets
    attention: list[dict] = field(default_factory=list)
    submissions: list[dict] = field(default_factory=list)  # per source, from the ledger (reports.night)
    notes: list[str] = field(default_factory=list)  # the night's status in plain Chinese (reports.night)
    published: bool = True  # False before the first publish: `marts` has no tables yet
    communities: list[dict] = field(default_factory=list)  # street: per community (reports.casework)
    canteen_unplaced: int = 0  # street: person-times of canteens placed in no community (reports.casework)
    overdue: list[dict] = field(default_factory=list)  # street: open cases past the overnight mark
    waiting: list[dict] = field(default_factory=list)  # street: escalations waiting for a department
    ranking: list[dict] = field(default_factory=list)  # district: streets vs their last 7 days
    worst_compounds: list[dict] = field(default_factory=list)  # district: most open cases
    problems: list[dict] = field(default_factory=list)  # reporters missing or held, per street (reports.night)
    districts: list[dict] = field(default_factory=list)  # city: each district's key figures (reports.city_figures)
    reconciliation: dict | None = None  # city, a month's last service day: published figures vs the warehouse's
    notified: dict[str, int] | None = None  # city: reporters notified tonight, by reason (reports.notices)
    party_grid: list = field(default_factory=list)  # district: grids and party organisations (reports.party_grid)

    @property
    def today(self) -> dict | None:
        return self.days.get(self.service_date)

    @property
    def previous(self) -> dict | None:
        return self.days.get(self.service_date - timedelta(days=1))

    @property
    def week_avg(self) -> dict | None:
        week = [self.days[d] for d in self.days if self.service_date - timedelta(days=7) <= d < self.service_date]
        if not week:
            return None
        return {k: _avg([r.get(k) for r in week]) for k in week[0] if k != "service_date"}


def _avg(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _ratio(numerator, denominator) -> float | None:
    return None if not denominator else float(numerator or 0) / float(denominator)


KPI_SQL = """
with sc as (
    select service_date,
           sum(cases_received) as cases_received, sum(cases_resolved) as cases_resolved,
           sum(cases_backlog) as cases_backlog, sum(cases_escalated) as cases_escalated,
           sum(people_served) as people_served, sum(canteen_person_times) as canteen_person_times,
           sum(overnight_cohort) as overnight_cohort, sum(overnight_resolved) as overnight_resolved,
           sum(cases_resolved_in_grid) as cases_resolved_in_grid
    from marts.mart_street_daily_scorecard
    where {where} and service_date between %s and %s
    group by service_date
),
pc as (
    select service_date, sum(compounds) as compounds,
           sum(compounds_with_property_service) as compounds_with_property_service
    from marts.mart_property_coverage
    where scope_level = 'street' and {where_scope} and service_date between %s and %s
    group by service_date
),
py as (
    select service_date, sum(compounds_with_party_org) as compounds_with_party_org,
           sum(compounds_with_owners_committee) as compounds_with_owners_committee
    from marts.mart_party_coverage
    where scope_level = 'street' and {where_scope} and service_date between %s and %s
    group by service_date
)
select * from sc full join pc using (service_date) full join py using (service_date) order by service_date
"""


def kpis(row: dict) -> dict:
    """The key figures of one row of sums (a day, or a district): counts, and rates from their numerators."""
    out = {k: int(row[k] or 0) for k in COUNT_KEYS}
    out["overnight_cohort"] = int(row["overnight_cohort"] or 0)
    out["overnight_resolution_rate"] = _ratio(row["overnight_resolved"], row["overnight_cohort"])
    out["in_grid_resolution_rate"] = _ratio(row["cases_resolved_in_grid"], row["cases_resolved"])
    out["compounds"] = int(row["compounds"] or 0)
    out["property_coverage_rate"] = _ratio(row["compounds_with_property_service"], row["compounds"])
    out["party_org_coverage_rate"] = _ratio(row["compounds_with_party_org"], row["compounds"])
    out["owners_committee_coverage_rate"] = _ratio(row["compounds_with_owners_committee"], row["compounds"])
    return out


def load_report(wh: ConnInfo, scope: Scope, day: date) -> ScopeReport:
    report = ScopeReport(scope, day)
    first = day - timedelta(days=TREND_DAYS - 1)
    where, args = scope.filter_sql()
    scope_where, _ = scope.filter_sql(street_column="scope_code")
    with connect_as(BI_READER, wh, row_factory=dict_row) as conn:
        report.published = all(conn.execute("select to_regclass(%s) is not null as found", (t,)).fetchone()["found"]
                               for t in PUBLISHED_TABLES)
        if not report.published:
            return report
        rows = conn.execute(KPI_SQL.format(where=where, where_scope=scope_where),
                            (*args, first, day, *args, first, day, *args, first, day)).fetchall()
        report.days = {r["service_date"]: kpis(r) for r in rows}
        report.breakdown = _breakdown(conn, scope, day)
        report.attention = _attention(conn, scope, day) if scope.level == "city" else []
        _casework(conn, report)
    return report


def _casework(conn: psycopg.Connection, report: ScopeReport) -> None:
    scope, day = report.scope, report.service_date
    if scope.level == "street":
        report.communities = casework.communities(conn, scope.code, day)
        report.canteen_unplaced = casework.unplaced_person_times(conn, scope.code, day)
        report.overdue = casework.overdue_cases(conn, scope.code, day)
        report.waiting = casework.waiting_escalations(conn, scope.code, day)
    elif scope.level == "district":
        report.ranking = casework.street_ranking(conn, scope.code, day)
        report.worst_compounds = casework.worst_compounds(conn, scope.code, day)
    elif scope.level == "city":
        report.districts = [{"district_code": r["district_code"], "name": r["district_name"], **kpis(r)}
                            for r in city_figures.district_rows(conn, day)]
        if city_figures.reconciliation_night(day):
            report.reconciliation = city_figures.published_figures(conn)


def _breakdown(conn: psycopg.Connection, scope: Scope, day: date) -> list[dict]:
    if scope.level != "district":  # the city's districts side by side: report.districts (reports.city_figures)
        return []
    unit, name_sql = "street_code", "(select street_name from marts.dim_street d where d.street_code = s.unit)"
    where, args = scope.filter_sql()
    rows = conn.execute(
        f"""with s as (
                select {unit} as unit, sum(cases_received) as cases_received, sum(cases_resolved) as cases_resolved,
                       sum(cases_backlog) as cases_backlog, sum(overnight_cohort) as overnight_cohort,
                       sum(overnight_resolved) as overnight_resolved, sum(canteen_person_times) as canteen_person_times
                from marts.mart_street_daily_scorecard where {where} and service_date = %s group by {unit})
            select s.*, {name_sql} as name from s order by s.unit""",
        (*args, day),
    ).fetchall()
    for r in rows:
        r["overnight_resolution_rate"] = _ratio(r["overnight_resolved"], r["overnight_cohort"])
    return rows


def _attention(conn: psycopg.Connection, scope: Scope, day: date) -> list[dict]:
    """Streets with the lowest overnight rate (cohort of at least 3) or the largest backlog."""
    if scope.level == "street":
        return []
    where, args = scope.filter_sql("s")
    rows = conn.execute(
        f"""select s.street_code, d.street_name, s.overnight_cohort,
                   s.overnight_resolved, s.cases_backlog
            from marts.mart_street_daily_scorecard s join marts.dim_street d using (street_code)
            where {where} and s.service_date = %s""",
        (*args, day),
    ).fetchall()
    for r in rows:
        r["overnight_resolution_rate"] = _ratio(r["overnight_resolved"], r["overnight_cohort"])
    lowest = sorted((r for r in rows if r["overnight_cohort"] >= 3 and r["overnight_resolution_rate"] < 1),
                    key=lambda r: (r["overnight_resolution_rate"], r["street_code"]))[:3]
    backlog = sorted((r for r in rows if r["cases_backlog"] > 0), key=lambda r: (-r["cases_backlog"], r["street_code"]))[:3]
    out = [{**r, "reason": "解决不隔夜率最低"} for r in lowest]
    out += [{**r, "reason": "积压事项最多"} for r in backlog]
    return out
