"""Nightly incremental dbt build on one year of history vs one week of history (DESIGN.md section 10).

    .venv/bin/python bench/dbt_incremental.py [--server postgresql://postgres@127.0.0.1:5432/postgres]

Two real nights of the built-in scenario (2023-11-06 and 2023-11-07) are generated and loaded once
into a template database. For each history length the template is copied and the raw tables get
(history - 1) earlier nights, synthesised in SQL from the first real night (same volumes, ids and
timestamps shifted day by day): generating a year through the scenario would take over an hour and
only the volume of history matters here. Then:

  1. a full build (no incremental state: every model rebuilds every day) for the first real night;
  2. the nightly incremental build for the second real night: the number this bench is about.

Printed: dbt's own elapsed time of each build (run_results.json; process start-up and parsing, the
same for both, are left out) and the ratios measured in this one run. Target: year / week < 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ingest import loader  # noqa: E402
from orchestration.dbt_run import dbt_env  # noqa: E402
from scenario.generator import Scenario  # noqa: E402
from warehouse import conninfo, settings  # noqa: E402
from warehouse.bootstrap import bootstrap  # noqa: E402

FIRST, NIGHT = date(2023, 11, 6), date(2023, 11, 7)
HISTORIES = {"week": 7, "year": 365}

SYNTHESISE = """
set role gov_loader;

select raw.ensure_day_partition('raw.canteens_meals', %(first)s::date - k) from generate_series(1, %(days)s) as k;

insert into raw.streets_compounds
select _load_id, _source_file, _row_number, _service_date - k, compound_code, name, community_code,
       households, building_area_m2, buildings, property_mode, property_company, subsidy_start_month, party_org_type,
       party_org_since, owners_committee, building_heads, unit_heads, service_station
from raw.streets_compounds cross join generate_series(1, %(days)s) as k
where _service_date = %(first)s;

insert into raw.canteens_meals
select _load_id, _source_file, _row_number, _service_date - k, record_id || '-h' || k, canteen_code,
       served_at - make_interval(days => k), meal, diner_category, diner_card_hash, diner_card_masked, age,
       price_yuan, subsidy_yuan, payment_method
from raw.canteens_meals cross join generate_series(1, %(days)s) as k
where _service_date = %(first)s;

insert into raw.assistance_case_events
select _load_id, _source_file, _row_number, _service_date - k, service_request_id || '-h' || k,
       point_code, event, event_at - make_interval(days => k), service_code, channel, compound_code, handler,
       agency_responsible, people_served, satisfaction, requester_name_hash, requester_phone_hash,
       requester_phone_masked, requester_id_hash, requester_id_valid, status_notes
from raw.assistance_case_events cross join generate_series(1, %(days)s) as k
where _service_date = %(first)s;

reset role;
"""


def admin_conn(admin: conninfo.ConnInfo) -> psycopg.Connection:
    return psycopg.connect(admin.conninfo(), autocommit=True)


def dbt_build(wh: conninfo.ConnInfo, day: date, target: Path, exclude: list[str]) -> tuple[float, float]:
    cmd = [str(Path(sys.executable).with_name("dbt")), "build", "--project-dir", str(settings.DBT_PROJECT_DIR),
           "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target),
           "--log-path", str(target / "logs"), "--vars", json.dumps({"service_date": day.isoformat()})]
    if exclude:
        cmd += ["--exclude", *exclude]
    env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"dbt build failed for {wh.dbname} {day}")
    results = json.loads((target / "run_results.json").read_text())
    return results["elapsed_time"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("TEST_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--exclude", nargs="*", default=[], help="dbt nodes to leave out of the builds")
    args = parser.parse_args()
    os.environ.setdefault("PII_HASH_KEY", "bench-key-" + "x" * 24)
    admin = conninfo.parse_url(args.server)
    tag = uuid.uuid4().hex[:8]
    template = admin.with_db(f"bench_dbt_tpl_{tag}")
    created = [template]
    work = Path(tempfile.mkdtemp(prefix="bench_dbt_"))
    try:
        with admin_conn(admin) as conn:
            conn.execute(f'create database "{template.dbname}"')
        bootstrap(template)
        scenario = Scenario()
        for day in (FIRST, NIGHT):
            scenario.write_night(day, work / "landing")
            for source in settings.FEEDS:
                loader.load_night(template, work / "landing", source, day)
        rows = {}
        for name, days in HISTORIES.items():
            wh = admin.with_db(f"bench_dbt_{name}_{tag}")
            with admin_conn(admin) as conn:
                conn.execute(f'create database "{wh.dbname}" template "{template.dbname}"')
            created.append(wh)
            bootstrap(wh)  # a copy does not inherit the template's database settings (jit = off)
            with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
                for statement in SYNTHESISE.split(";"):
                    if statement.strip():
                        conn.execute(statement, {"days": days - 1, "first": FIRST})
                conn.execute("analyze")
                meals = conn.execute("select count(*) from raw.canteens_meals").fetchone()[0]
            full, full_wall = dbt_build(wh, FIRST, work / f"target_{name}", args.exclude)
            nightly, nightly_wall = dbt_build(wh, NIGHT, work / f"target_{name}", args.exclude)
            rows[name] = (days, meals, full, full_wall, nightly, nightly_wall)
        print(f"{'history':<8} {'nights':>6} {'raw meals':>10} {'full build s':>13} {'nightly build s':>16}"
              f" {'(wall s)':>9}")
        for name, (days, meals, full, _fw, nightly, nightly_wall) in rows.items():
            print(f"{name:<8} {days + 1:>6} {meals:>10,} {full:>13.2f} {nightly:>16.2f} {nightly_wall:>9.2f}")
        week, year = rows["week"], rows["year"]
        print(f"nightly incremental build, year / week of history: {year[4] / week[4]:.2f}x (target < 1.5x)")
        print(f"full rebuild of a year / nightly incremental build on a year: {year[2] / year[4]:.2f}x")
    finally:
        with admin_conn(admin) as conn:
            for wh in reversed(created):
                conn.execute(f'drop database if exists "{wh.dbname}" with (force)')


if __name__ == "__main__":
    main()
