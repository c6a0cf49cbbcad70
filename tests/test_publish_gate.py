"""Write-audit-publish: bad data is caught by the right expectation, recorded in audit.dq_results,
blocks (or only warns) as declared, `marts` keeps the last good night, and a clean re-run publishes.

The steps are the ones the DAGs run (ingest.pipeline), called directly on a real warehouse. The tests
of this module share one warehouse and run in order, night after night (2023-11-06 ..10): the
row-count band needs the earlier nights as its history.
"""

from __future__ import annotations

import csv
import shutil
import statistics
from collections import Counter
from datetime import date, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from expectations import suites
from ingest import config, pipeline
from ingest.scenario import CANTEEN_HEADERS, Scenario
from tests.conftest import create_database, drop_database

GOOD, BAD = date(2023, 11, 6), date(2023, 11, 7)
THIRD = BAD + timedelta(days=1)  # one canteen withheld (missing reporter)
CODES_NIGHT = THIRD + timedelta(days=1)  # a file full of bad codes and negative money; a loader bug
DOUBLED_NIGHT = CODES_NIGHT + timedelta(days=1)  # files delivered twice under another name


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
                            "where run_id like %s and not success order by suite, column_name", (f"{run_id}%",)
                            ).fetchall()


def failed_checks(wh, run_id: str) -> list[tuple]:
    return [(f["suite"], f["expectation"], f["column_name"], f["severity"], f["unexpected_count"])
            for f in failures(wh, run_id)]


def canteen_person_times(wh, day: date) -> dict[str, int]:
    with psycopg.connect(wh.conninfo()) as conn:
        return dict(conn.execute("select canteen_code, person_times from marts.fct_canteen_day where service_date = %s",
                                 (day,)).fetchall())


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

    # a loader bug lets an unknown canteen code with negative money into raw: the raw suite blocks
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
    assert outcome["status"] == "blocked"
    assert failed_checks(wh, "loader-bug") == [
        ("raw_canteens_meals", "expect_column_values_to_be_in_set", "canteen_code", "fail", 1),
        ("raw_canteens_meals", "expect_column_values_to_be_between", "price_yuan", "fail", 1),
        ("raw_canteens_rejections", "expect_column_values_to_be_between", "rejected_share", "warn", 1)]
    assert _digest(wh) == published  # BI keeps the night as published before the bug

    # the canteen sends its corrected file: it replaces the bad version (and the row the bug added to it)
    victim.write_bytes(clean)
    outcome = run_night(CODES_NIGHT, "codes-fixed")
    assert outcome["status"] == "published"
    assert outcome["failed"] == outcome["warnings"] == []
    assert failures(wh, "codes-fixed") == []
    assert canteen_person_times(wh, CODES_NIGHT)[victim.stem] == served


def test_doubled_files_block_until_withdrawn(gate):
    """The same records delivered twice under another file name (a renamed copy, which the loader takes
    for a new reporter file): raw holds them twice. The key check sees the repeated record ids; when the
    copy's records were given new ids, only the row-count band sees it. Both block. Withdrawing the copies
    (an empty revision of each: a revised file replaces its earlier version) publishes the night."""
    wh, landing = gate
    assert published_days(wh) == {GOOD, BAD, THIRD, CODES_NIGHT}, "runs after the tests above"
    scenario = Scenario()
    scenario.write_night(DOUBLED_NIGHT, landing)
    withheld = canteen_file(landing, GOOD, -1).stem  # missing on THIRD (test 5 above)

    # independently of the warehouse: each canteen's nights from the generator, and its band ratio tonight
    history = [GOOD, BAD, THIRD, CODES_NIGHT]

    def ratio(code: str, factor: int = 1) -> float:
        canteen = next(c for c in scenario.canteens if c.code == code)
        prior = [len(scenario.canteen_meals(canteen, d)) for d in history if not (d == THIRD and code == withheld)]
        return factor * len(scenario.canteen_meals(canteen, DOUBLED_NIGHT)) / statistics.median(prior)

    codes = [c.code for c in scenario.canteens]
    natural = {code: ratio(code) for code in codes}
    assert 1 / suites.BAND_LOW <= min(natural.values()) and max(natural.values()) <= suites.BAND_HIGH
    # the two copies: canteens whose doubled night is clearly above the band
    same_ids, new_ids = [code for code in codes if ratio(code, 2) > suites.BAND_HIGH + 0.1][:2]
    n_same = len(scenario.canteen_meals(next(c for c in scenario.canteens if c.code == same_ids), DOUBLED_NIGHT))
    n_new = len(scenario.canteen_meals(next(c for c in scenario.canteens if c.code == new_ids), DOUBLED_NIGHT))
    folder = landing / "canteens" / DOUBLED_NIGHT.isoformat()
    copies = [folder / f"{same_ids} - 副本.csv", folder / f"{new_ids} - 副本.csv"]
    shutil.copyfile(folder / f"{same_ids}.csv", copies[0])
    rows = list(csv.reader((folder / f"{new_ids}.csv").open(encoding="utf-8")))
    for row in rows[1:]:
        row[0] += "-2"  # the till exported the day again, with new serial numbers
    with copies[1].open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)

    day = DOUBLED_NIGHT.isoformat()
    before = _digest(wh)
    outcome = run_night(DOUBLED_NIGHT, "doubled")
    assert outcome["status"] == "blocked"
    assert failed_checks(wh, "doubled") == [
        ("raw_canteens_meals", "expect_column_values_to_be_unique", "record_id", "fail", 2 * n_same),
        ("raw_canteens_row_count_band", "expect_column_values_to_be_between", "rows_over_recent_median", "fail", 2)]
    with psycopg.connect(wh.conninfo()) as conn:
        band = dict(conn.execute(
            f"select reporter_code, rows_over_recent_median from ({suites.row_count_band_query('canteens', day)}) b "
            "where rows_over_recent_median > %s", (suites.BAND_HIGH,)).fetchall())
    # the warehouse's ratios are the ones computed from the generator
    assert {code: float(r) for code, r in band.items()} == {
        code: pytest.approx(ratio(code, 2), abs=0.001) for code in (same_ids, new_ids)}
    with psycopg.connect(wh.conninfo()) as conn:
        candidate = dict(conn.execute(
            "select canteen_code, person_times from marts_candidate.fct_canteen_day where service_date = %s "
            "and canteen_code = any(%s)", (DOUBLED_NIGHT, [same_ids, new_ids])).fetchall())
    # what was held back: staging keeps one version of a record id, but new ids double the canteen's meals
    assert candidate == {same_ids: n_same, new_ids: 2 * n_new}
    assert _digest(wh) == before  # BI still sees the last good night only

    # the copies are withdrawn by an empty revision of each: the night publishes with single counts
    for copy in copies:
        copy.write_text(",".join(CANTEEN_HEADERS) + "\n", encoding="utf-8")
    outcome = run_night(DOUBLED_NIGHT, "withdrawn")
    assert outcome["status"] == "published"
    assert outcome["failed"] == outcome["warnings"] == []
    person_times = canteen_person_times(wh, DOUBLED_NIGHT)
    assert (person_times[same_ids], person_times[new_ids]) == (n_same, n_new)


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
