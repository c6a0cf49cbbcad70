"""Write-audit-publish: bad data is caught by the right expectation, recorded in audit.dq_results,
blocks (or only warns) as declared, `marts` keeps the last good night, and a clean re-run publishes.

The steps are the ones the DAGs run (ingest.pipeline), called directly on a real warehouse.
"""

from __future__ import annotations

import csv
import shutil
from datetime import date, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import config, pipeline
from ingest.scenario import Scenario
from tests.conftest import create_database, drop_database

GOOD, BAD = date(2023, 11, 6), date(2023, 11, 7)


@pytest.fixture(scope="module")
def gate(server_url, local_dir, tmp_path_factory):
    from ingest.bootstrap import bootstrap

    info = create_database(server_url, "gov_gate")
    bootstrap(info)
    landing = tmp_path_factory.mktemp("gate_landing")
    mp = pytest.MonkeyPatch()
    mp.setenv("WAREHOUSE_URL", info.sqlalchemy_url())
    mp.setenv("LANDING_DIR", str(landing))
    yield info, landing
    mp.undo()
    drop_database(info)


def run_night(day: date, run_id: str) -> dict:
    """gov_ingest then gov_publish for one day; returns the publish outcome (blocked or published)."""
    d = day.isoformat()
    for feed in config.FEEDS:
        pipeline.load_feed(feed, d)
    pipeline.validate_raw(d, run_id=f"{run_id}-raw")
    pipeline.build_marts(d)
    pipeline.validate_marts([d], run_id=f"{run_id}-marts")
    try:
        return pipeline.publish([d], run_id=run_id)
    except RuntimeError:
        return pipeline.publish_outcome([d])


def published_days(wh) -> set[date]:
    with psycopg.connect(wh.conninfo()) as conn:
        return {r[0] for r in conn.execute("select service_date from marts.mart_city_daily_summary")}


def failures(wh, run_id: str) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute("select suite, expectation, column_name, severity, unexpected_count from audit.dq_results "
                            "where run_id like %s and not success order by suite", (f"{run_id}%",)).fetchall()


def test_bad_nights_are_blocked_and_clean_reruns_publish(gate):
    wh, landing = gate
    scenario = Scenario()

    # 1. a good night publishes
    scenario.write_night(GOOD, landing)
    assert run_night(GOOD, "good")["status"] == "published"
    assert published_days(wh) == {GOOD}

    # 2. time travel: a canteen reports a meal served two days after the service day
    scenario.write_night(BAD, landing)
    victim = sorted((landing / "canteens" / BAD.isoformat()).glob("*.csv"))[0]
    clean = victim.read_bytes()
    rows = list(csv.reader(victim.open(encoding="utf-8")))
    rows[1][2] = (BAD + timedelta(days=2)).isoformat() + " 12:00:00"
    with victim.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    outcome = run_night(BAD, "time-travel")
    assert outcome["status"] == "blocked"
    failed = failures(wh, "time-travel")
    assert [(f["suite"], f["column_name"], f["severity"], f["unexpected_count"]) for f in failed] == [
        ("raw_canteens_meals", "served_day", "fail", 1)]
    assert published_days(wh) == {GOOD}  # BI still sees the last good night only

    # 3. the canteen resends the corrected file: the revision replaces the bad rows and the night publishes
    victim.write_bytes(clean)
    assert run_night(BAD, "fixed")["status"] == "published"
    assert published_days(wh) == {GOOD, BAD}

    # 4. a street total that does not add up to the city total blocks publishing
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("update marts_candidate.mart_street_daily_scorecard set cases_received = cases_received + 1 "
                     "where service_date = %s and street_code = '140105001'", (BAD,))
    before = _digest(wh)
    pipeline.validate_marts([BAD.isoformat()], run_id="tampered-marts")
    with pytest.raises(RuntimeError, match="publish blocked"):
        pipeline.publish([BAD.isoformat()], run_id="tampered")
    assert [(f["suite"], f["severity"]) for f in failures(wh, "tampered")] == [("marts_street_totals_equal_city", "fail")]
    assert _digest(wh) == before

    # 5. a missing reporter only warns: the night publishes and the freshness mart lists it
    third = BAD + timedelta(days=1)
    scenario.write_night(third, landing)
    missing = sorted((landing / "canteens" / third.isoformat()).glob("*.csv"))[-1]
    shutil.move(missing, landing / f"withheld-{missing.name}")
    outcome = run_night(third, "missing")
    assert outcome["status"] == "published"
    assert [(f["suite"], f["severity"], f["unexpected_count"]) for f in failures(wh, "missing")] == [
        ("marts_source_freshness", "warn", 1)]
    with psycopg.connect(wh.conninfo()) as conn:
        gone = conn.execute("select reporter_code from marts.mart_source_freshness where service_date = %s and missing",
                            (third,)).fetchall()
    assert gone == [(missing.stem,)]


def _digest(wh) -> str:
    with psycopg.connect(wh.conninfo()) as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1")]
        return "|".join(conn.execute(f'select md5(coalesce(string_agg(t::text, \'|\' order by t::text), \'\')) '
                                     f'from marts."{t}" t').fetchone()[0] for t in tables)
