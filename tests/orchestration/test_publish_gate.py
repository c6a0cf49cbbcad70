"""Write-audit-publish: bad data is caught by the right expectation, recorded in audit.dq_results,
blocks (or only warns) as declared, `marts` keeps the last good night, and a clean re-run publishes.
The grain of the gate: bad rows of one reporter warn, are kept out of the figures, and the night
publishes with every other reporter's data exactly as generated; only a fault of the whole night blocks.

The steps are the ones the DAGs run (orchestration.steps), called directly on a real warehouse. The tests
of this module share one warehouse and run in order, night after night (2023-11-06 ..10): the
row-count band needs the earlier nights as its history.
"""

from __future__ import annotations

import csv
import shutil
import statistics
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from expectations import suites
from orchestration import steps
from scenario.generator import Scenario
from tests.conftest import create_database, drop_database
from warehouse import connections, settings

pytestmark = pytest.mark.integration

GOOD, BAD = date(2023, 11, 6), date(2023, 11, 7)
THIRD = BAD + timedelta(days=1)  # one canteen withheld (missing reporter)
CODES_NIGHT = THIRD + timedelta(days=1)  # a file full of bad codes and negative money; a loader bug
DOUBLED_NIGHT = CODES_NIGHT + timedelta(days=1)  # files delivered twice under another name


@pytest.fixture(scope="module")
def gate(server_url, local_dir, tmp_path_factory):
    from warehouse.bootstrap import bootstrap

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
    for feed in settings.FEEDS:
        steps.load_feed(connections.warehouse(), feed, d)
    steps.validate_raw(connections.warehouse(), d, run_id=f"{run_id}-raw")
    steps.build_marts(connections.warehouse(), d)
    steps.validate_marts(connections.warehouse(), [d], run_id=f"{run_id}-marts")
    try:
        outcome = steps.publish(connections.warehouse(), [d], run_id=run_id)
    except RuntimeError as err:
        # only the block itself: a crash inside publish must fail the test, not read as a correct block
        if not str(err).startswith(f"publish blocked for {d}: {len(logged_outcome(run_id)['failed'])} failing"):
            raise
        outcome = steps.publish_outcome(connections.warehouse(), [d])
    assert outcome == logged_outcome(run_id, outcome["status"])  # what the email reads is what was logged
    return outcome


def logged_outcome(run_id: str, status: str | None = None) -> dict:
    """The one publish_log row of this run (its status when given): the outcome publish recorded."""
    with psycopg.connect(connections.warehouse().conninfo()) as conn:
        rows = conn.execute("select status, failed, detail from audit.publish_log where run_id = %s",
                            (run_id,)).fetchall()
    assert len(rows) == 1, (run_id, rows)
    logged_status, failed, detail = rows[0]
    assert status in (None, logged_status) and detail["status"] == logged_status, (run_id, logged_status)
    assert failed == len(detail["failed"])
    return detail


def published_days(wh) -> set[date]:
    with psycopg.connect(wh.conninfo()) as conn:
        return {r[0] for r in conn.execute("select service_date from marts.mart_city_daily_summary")}


def failures(wh, run_id: str) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute("select suite, expectation, column_name, severity, unexpected_count from audit.dq_results "
                            "where run_id like %s and not success order by suite, column_name", (f"{run_id}%",)
                            ).fetchall()


def failed_checks(wh, run_id: str) -> list[tuple]:
    return [(f["suite"], f["expectation"], f["column_name"], f["severity"], f["unexpected_count"])
            for f in failures(wh, run_id)]


def canteen_person_times(wh, day: date) -> dict[str, int]:
    with psycopg.connect(wh.conninfo()) as conn:
        return dict(conn.execute("select canteen_code, person_times from marts.fct_canteen_day where service_date = %s",
                                 (day,)).fetchall())


def city_summary(wh, day: date) -> dict:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute("select * from marts.mart_city_daily_summary where service_date = %s", (day,)).fetchone()


def generated_person_times(scenario: Scenario, day: date) -> dict[str, int]:
    return {c.code: n for c in scenario.canteens if (n := len(scenario.canteen_meals(c, day)))}


def reverse_a_case(landing, day: date) -> tuple[Path, bytes, str]:
    """In one point's file, a case received and resolved that day gets its resolution an hour before its
    receipt (stages out of order). Returns the file, its clean bytes and the case id."""
    import json

    for path in sorted((landing / "assistance" / day.isoformat()).glob("AP*.jsonl")):
        clean = path.read_bytes()
        events = [json.loads(line) for line in clean.decode().splitlines()]
        received = {e["service_request_id"]: e for e in events if e["event"] == "received"}
        for e in events:
            start = received.get(e["service_request_id"])
            if e["event"] == "resolved" and start and start["event_at"][11:13] >= "02":
                at = datetime.fromisoformat(start["event_at"]) - timedelta(hours=1)
                e["event_at"] = at.isoformat()
                path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in events), encoding="utf-8")
                return path, clean, e["service_request_id"]
    raise AssertionError("no case received and resolved the same day")


def canteen_file(landing, day: date, index: int):
    return sorted((landing / "canteens" / day.isoformat()).glob("CT*.csv"))[index]


def test_bad_nights_are_blocked_and_clean_reruns_publish(gate):
    wh, landing = gate
    scenario = Scenario()

    # 1. a good night publishes
    scenario.write_night(GOOD, landing)
    assert run_night(GOOD, "good")["status"] == "published"
    assert published_days(wh) == {GOOD}
    # the row-count band has no history yet: every reporter (and the feed total) is left out, and the
    # result says so instead of passing silently
    with psycopg.connect(wh.conninfo()) as conn:
        details = conn.execute("select success, details from audit.dq_results where run_id = 'good-raw' "
                               "and suite = 'raw_canteens_row_count_band' and severity = 'fail'").fetchone()
    assert details[0] is True
    assert details[1]["element_count"] == details[1]["missing_count"] == len(scenario.canteens) + 1
    assert "not compared" in details[1]["note"]

    # 2. row-level faults in two reporters: a canteen reports a meal served two days after the service
    # day (time travel), a point a case resolved an hour before it was received. Both only warn: the
    # night publishes, without those two rows in the figures, and every other reporter exactly as generated
    night = scenario.write_night(BAD, landing)
    victim = sorted((landing / "canteens" / BAD.isoformat()).glob("*.csv"))[0]
    clean = victim.read_bytes()
    rows = list(csv.reader(victim.open(encoding="utf-8")))
    rows[1][2] = (BAD + timedelta(days=2)).isoformat() + " 12:00:00"
    with victim.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)
    point_file, point_clean, reversed_case = reverse_a_case(landing, BAD)
    outcome = run_night(BAD, "row-faults")
    assert outcome["status"] == "published"
    failed = failures(wh, "row-faults")
    assert [(f["suite"], f["column_name"], f["severity"], f["unexpected_count"]) for f in failed] == [
        ("marts_case_stage_order", "out_of_order", "warn", 1), ("raw_canteens_meals", "served_day", "warn", 1)]
    assert {i["zh"] for i in outcome["issues"]} == {  # what the email names them
        "就餐时间不在本服务日内", "事项各环节时间顺序颠倒（该事项不计入当日指标）"}
    assert published_days(wh) == {GOOD, BAD}
    expected = generated_person_times(scenario, BAD)
    expected[victim.stem] -= 1  # the time-travelling meal is kept out
    assert canteen_person_times(wh, BAD) == expected
    received = [e for e in night.events if e["event"] == "received"]
    resolved = {e["service_request_id"] for e in night.events if e["event"] in ("resolved", "dept_resolved")}
    summary = city_summary(wh, BAD)
    assert summary["canteen_person_times"] == len(night.meals) - 1
    assert summary["cases_received"] == len(received) - 1  # the reversed case is not counted
    with psycopg.connect(wh.conninfo()) as conn:
        kept = conn.execute("select resolved_at < received_at from marts.fct_assistance_case "
                            "where service_request_id = %s", (reversed_case,)).fetchone()
    assert kept == (True,)  # the case itself is kept (flagged by the check), only its figures are not counted
    assert reversed_case in resolved

    # 3. the reporters resend corrected files: the revisions replace the bad rows, the counts are whole
    victim.write_bytes(clean)
    point_file.write_bytes(point_clean)
    assert run_night(BAD, "fixed")["status"] == "published"
    assert published_days(wh) == {GOOD, BAD}
    assert canteen_person_times(wh, BAD) == generated_person_times(scenario, BAD)
    assert city_summary(wh, BAD)["cases_received"] == len(received)

    # 4. a street total that does not add up to the city total blocks publishing
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("update marts_candidate.mart_street_daily_scorecard set cases_received = cases_received + 1 "
                     "where service_date = %s and street_code = '140105001'", (BAD,))
    before = _digest(wh)
    steps.validate_marts(connections.warehouse(), [BAD.isoformat()], run_id="tampered-marts")
    with pytest.raises(RuntimeError, match=f"^publish blocked for {BAD.isoformat()}: 1 failing checks: "
                                           "marts_street_totals_equal_city"):
        steps.publish(connections.warehouse(), [BAD.isoformat()], run_id="tampered")
    assert [(f["suite"], f["severity"]) for f in failures(wh, "tampered")] == [("marts_street_totals_equal_city", "fail")]
    assert logged_outcome("tampered", "blocked")["failed"] == [
        "marts_street_totals_equal_city.expect_column_values_to_be_between(difference)"]
    assert _digest(wh) == before

    # 5. a missing reporter only warns: the night publishes and the freshness mart lists it
    third = THIRD
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


def test_bad_codes_and_negative_money(gate):
    """A file full of bad codes and negative amounts: the reader rejects those rows (they never reach
    raw), the rejections check warns and the night publishes without them. A loader bug that lets such a
    row into raw anyway is caught by the raw suite and blocks. The corrected file publishes clean."""
    wh, landing = gate
    assert published_days(wh) == {GOOD, BAD, THIRD}, "runs after test_bad_nights_are_blocked_and_clean_reruns_publish"
    scenario = Scenario()
    scenario.write_night(CODES_NIGHT, landing)
    victim = canteen_file(landing, CODES_NIGHT, 100)
    other = canteen_file(landing, CODES_NIGHT, 101).stem
    clean = victim.read_bytes()
    rows = list(csv.reader(victim.open(encoding="utf-8")))
    served = len(rows) - 1
    for i in (1, 2, 3):
        rows[i][1] = victim.stem[:-1]  # a canteen code one digit short
    for i in (4, 5, 6):
        rows[i][1] = other  # another canteen's code
    for i in (7, 8, 9):
        rows[i][4] = "学生"  # not a diner category
    for i in (10, 11, 12):
        rows[i][7] = "-12.00"  # negative money
    with victim.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)

    outcome = run_night(CODES_NIGHT, "bad-codes")
    assert outcome["status"] == "published"  # declared 'warn': the night publishes, without those rows
    assert failed_checks(wh, "bad-codes") == [
        ("raw_canteens_rejections", "expect_column_values_to_be_between", "rejected_share", "warn", 1)]
    assert outcome["warnings"] == [
        "raw_canteens_rejections.expect_column_values_to_be_between(rejected_share)"]
    with psycopg.connect(wh.conninfo()) as conn:
        rejected = conn.execute(
            "select r.reason_code, r.column_name, r.message from audit.rejected_rows r join audit.load_ledger l "
            "using (load_id) where l.service_date = %s and l.reporter_code = %s", (CODES_NIGHT, victim.stem)).fetchall()
    assert Counter((r[0], r[1]) for r in rejected) == {
        ("bad_code", "canteen_code"): 3, ("wrong_reporter", "canteen_code"): 3,
        ("bad_enum", "diner_category"): 3, ("negative_value", "price_yuan"): 3}
    assert all(r[2].startswith(f"{victim.name}, row ") for r in rejected)
    assert canteen_person_times(wh, CODES_NIGHT)[victim.stem] == served - 12
    published = _digest(wh)

    # a loader bug lets an unknown canteen code with negative money into raw: the raw suite counts the row
    # (warn), the models keep it out of every figure, and the night publishes unchanged
    assert "CT140105001999" not in suites.reference_codes("canteens", "canteen_code")
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute(
            """insert into raw.canteens_meals
               select _load_id, _source_file, 9999, _service_date, record_id || '-BUG',
                      'CT140105001999', served_at, meal, diner_category, diner_card_hash, diner_card_masked, age,
                      -5.00, subsidy_yuan, payment_method
               from raw.canteens_meals where _service_date = %s and canteen_code = %s limit 1""",
            (CODES_NIGHT, victim.stem))
    outcome = run_night(CODES_NIGHT, "loader-bug")
    assert outcome["status"] == "published"
    assert failed_checks(wh, "loader-bug") == [
        ("raw_canteens_meals", "expect_column_values_to_be_in_set", "canteen_code", "warn", 1),
        ("raw_canteens_meals", "expect_column_values_to_be_between", "price_yuan", "warn", 1),
        ("raw_canteens_rejections", "expect_column_values_to_be_between", "rejected_share", "warn", 1)]
    assert _digest(wh) == published  # the bug's row changed no published figure

    # the canteen sends its corrected file: it replaces the bad version (and the row the bug added to it)
    victim.write_bytes(clean)
    outcome = run_night(CODES_NIGHT, "codes-fixed")
    assert outcome["status"] == "published"
    assert outcome["failed"] == outcome["warnings"] == []
    assert failures(wh, "codes-fixed") == []
    assert canteen_person_times(wh, CODES_NIGHT)[victim.stem] == served


def test_a_doubled_night_blocks_until_withdrawn(gate):
    """Every canteen's file of the night exported twice (its rows again, with new serial numbers). The
    loader holds a reporter far outside its band only once it has BAND_MIN_DAYS of history
    (ingest/holds.py); on this young warehouse the files load. Each canteen far above its own band only
    warns (reporter-level); the feed total far above its band means the whole night is wrong and blocks.
    Re-delivering the correct files (revisions replace the doubled versions) publishes the night."""
    wh, landing = gate
    assert published_days(wh) == {GOOD, BAD, THIRD, CODES_NIGHT}, "runs after the tests above"
    scenario = Scenario()
    scenario.write_night(DOUBLED_NIGHT, landing)
    withheld = canteen_file(landing, GOOD, -1).stem  # missing on THIRD (test 5 above)

    # independently of the warehouse: each canteen's nights from the generator, and its band ratio tonight
    history = [GOOD, BAD, THIRD, CODES_NIGHT]

    def nights_of(code: str) -> list[int]:
        canteen = next(c for c in scenario.canteens if c.code == code)
        return [len(scenario.canteen_meals(canteen, d)) for d in history if not (d == THIRD and code == withheld)]

    def ratio(code: str, factor: int = 1) -> float:
        canteen = next(c for c in scenario.canteens if c.code == code)
        return factor * len(scenario.canteen_meals(canteen, DOUBLED_NIGHT)) / statistics.median(nights_of(code))

    codes = [c.code for c in scenario.canteens]
    natural = {code: ratio(code) for code in codes}
    assert 1 / suites.BAND_LOW <= min(natural.values()) and max(natural.values()) <= suites.BAND_HIGH
    judged = [c for c in codes if statistics.median(nights_of(c)) >= suites.BAND_MIN_ROWS]
    above = sorted(c for c in judged if ratio(c, 2) > suites.BAND_HIGH)
    assert above, "the scenario has canteens whose doubled night is above the band"
    totals = [sum(len(scenario.canteen_meals(c, d)) for c in scenario.canteens) - (
        len(scenario.canteen_meals(next(c for c in scenario.canteens if c.code == withheld), d)) if d == THIRD else 0)
        for d in history]
    tonight = sum(len(scenario.canteen_meals(c, DOUBLED_NIGHT)) for c in scenario.canteens)

    folder = landing / "canteens" / DOUBLED_NIGHT.isoformat()
    clean = {p: p.read_bytes() for p in folder.glob("*.csv")}
    for path in clean:
        rows = list(csv.reader(path.open(encoding="utf-8")))
        again = [[row[0] + "-2", *row[1:]] for row in rows[1:]]  # the till exported the day again
        with path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f).writerows(rows + again)

    day = DOUBLED_NIGHT.isoformat()
    before = _digest(wh)
    outcome = run_night(DOUBLED_NIGHT, "doubled")
    assert outcome["status"] == "blocked"
    assert failed_checks(wh, "doubled") == [
        ("raw_canteens_row_count_band", "expect_column_values_to_be_between", "feed_rows_over_recent_median", "fail", 1),
        ("raw_canteens_row_count_band", "expect_column_values_to_be_between", "rows_over_recent_median", "warn",
         len(above))]
    with psycopg.connect(wh.conninfo()) as conn:
        band = dict(conn.execute(
            f"select reporter_code, coalesce(rows_over_recent_median, feed_rows_over_recent_median) "
            f"from ({suites.row_count_band_query('canteens', day)}) b "
            "where rows_over_recent_median > %s or feed_rows_over_recent_median > %s",
            (suites.BAND_HIGH, suites.BAND_HIGH)).fetchall())
    # the warehouse's ratios are the ones computed from the generator
    assert {code: float(r) for code, r in band.items()} == {
        **{code: pytest.approx(ratio(code, 2), abs=0.001) for code in above},
        suites.FEED_TOTAL: pytest.approx(2 * tonight / statistics.median(totals), abs=0.001)}
    assert _digest(wh) == before  # BI still sees the last good night only

    # the correct files are delivered again: each revision replaces its doubled version
    for path, content in clean.items():
        path.write_bytes(content)
    outcome = run_night(DOUBLED_NIGHT, "withdrawn")
    assert outcome["status"] == "published"
    assert outcome["failed"] == outcome["warnings"] == []
    assert canteen_person_times(wh, DOUBLED_NIGHT) == generated_person_times(scenario, DOUBLED_NIGHT)


def _digest(wh) -> str:
    with psycopg.connect(wh.conninfo()) as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by 1")]
        return "|".join(conn.execute(f'select md5(coalesce(string_agg(t::text, \'|\' order by t::text), \'\')) '
                                     f'from marts."{t}" t').fetchone()[0] for t in tables)


def test_check_that_could_not_run_keeps_its_reason():
    """GX reports an expectation that raised either as one exception_info or as one per metric; the
    runner keeps the message (the check counts as failed) in either shape."""
    from expectations.runner import _exception_message

    one = {"raised_exception": True, "exception_message": "relation raw.x does not exist", "exception_traceback": ""}
    by_metric = {("column_values.between", "abc"): one, ("table.row_count", "def"): {"raised_exception": False}}
    assert _exception_message(one) == "relation raw.x does not exist"
    assert _exception_message(by_metric) == "relation raw.x does not exist"
    assert _exception_message({"raised_exception": False, "exception_message": None}) is None
    assert _exception_message(None) is None
