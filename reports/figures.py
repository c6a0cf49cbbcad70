"""The figures an official's summary shows, read from the marts (what BI sees, nothing more)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import psycopg
from psycopg.rows import dict_row

from ingest.config import ConnInfo


@dataclass
class Scope:
    level: str  # city / district / street
    code: str
    name: str


@dataclass
class DayFigures:
    service_date: date
    today: dict | None
    previous: dict | None
    week_avg: dict | None


SUMMARY_SQL = """
    select * from marts.mart_city_daily_summary where service_date between %s and %s order by service_date
"""


def city_figures(wh: ConnInfo, day: date) -> DayFigures:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        conn.execute("set role gov_bi_reader")
        rows = conn.execute(SUMMARY_SQL, (day - timedelta(days=7), day)).fetchall()
    by_day = {r["service_date"]: r for r in rows}
    week = [by_day[d] for d in by_day if d < day]
    week_avg = None
    if week:
        keys = [k for k in week[0] if k != "service_date"]
        week_avg = {k: _avg([r[k] for r in week]) for k in keys}
    return DayFigures(day, by_day.get(day), by_day.get(day - timedelta(days=1)), week_avg)


def _avg(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return sum(values) / len(values) if values else None
