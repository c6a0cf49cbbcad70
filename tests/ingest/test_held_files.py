"""Held files (issue 15): a readable file that fails a reporter-level check (a re-delivery with far fewer
rows than the version in place, a doubled file, a row count far outside the reporter's own recent band)
is `held`: its rows stay out of raw (so out of every model and mart), the version in place keeps serving,
the reason is in the ledger's `error`, and `gov-warehouse release|reject --load-id N` decides, recording
who, when and why. Expected counts come from the generator or from the rows the test wrote.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import decisions, holds, loader
from scenario import messy, writers
from scenario.generator import CANTEEN_HEADERS, Scenario
from warehouse import conninfo, settings

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)
CODE = "CT140105001001"


def q(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def raw_rows(wh: conninfo.ConnInfo, table: str, **where) -> int:
    clause = " and ".join(f"{k} = %s" for k in where) or "true"
    return q(wh, f"select count(*) as n from raw.{table} where {clause}", tuple(where.values()))[0]["n"]


def canteen_csv(path: Path, rows: list[list[str]]) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CANTEEN_HEADERS)
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue(), encoding="utf-8")


def meal_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open(encoding="utf-8", newline="")))[1:]


def cli(wh: conninfo.ConnInfo, *args: str, landing: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WAREHOUSE_URL": wh.sqlalchemy_url(), **({"LANDING_DIR": str(landing)} if landing else {})}
    return subprocess.run([sys.executable, "-m", "commands", *args], cwd=settings.REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- the checks themselves (no database)


def test_hold_reasons_worked_by_hand():
    none = holds.Evidence()
    in_place = holds.Evidence(in_place_load_id=5, in_place_rows=40)
    assert holds.hold_reason("f.csv", 0, 0, 0, in_place).startswith("shrunk_redelivery: f.csv is empty, ")
    assert holds.hold_reason("f.csv", 19, 19, 0, in_place).startswith("shrunk_redelivery: f.csv has 19 good rows")
    assert holds.hold_reason("f.csv", 20, 20, 0, in_place) is None  # half: not "far fewer"
    assert holds.hold_reason("f.csv", 0, 0, 0, none) is None  # a first delivery of nothing is no shrink
    # doubled: every record twice is half the rows repeated; a stray repeated row is not
    assert holds.hold_reason("f.csv", 80, 40, 40, none).startswith("doubled_file: f.csv repeats the records of 40 of")
    assert holds.hold_reason("f.csv", 9, 6, 3, none).startswith("doubled_file")
    assert holds.hold_reason("f.csv", 42, 41, 1, none) is None
    assert holds.hold_reason("f.csv", 4, 2, 2, none) is None  # too few rows to tell
    # the band: median of the last loaded days x 0.25 .. 1.9, judged with 7 days or more of 20+ rows
    recent = holds.Evidence(recent_rows=(40, 42, 38, 44, 40, 41, 39))  # median 40: band 10 .. 76
    assert holds.recent_band(recent.recent_rows) == (10.0, 76.0)
    assert holds.hold_reason("f.csv", 77, 77, 0, recent).startswith("out_of_band: f.csv has 77 rows, far from "
                                                                    "this reporter's usual 40 a day")
    assert holds.hold_reason("f.csv", 9, 9, 0, recent).startswith("out_of_band")
    assert holds.hold_reason("f.csv", 76, 76, 0, recent) is None and holds.hold_reason("f.csv", 10, 10, 0, recent) is None
    assert holds.recent_band((40,) * 6) is None  # little history: never held for its volume
    assert holds.recent_band((1, 0, 2, 1, 0, 1, 1)) is None  # an assistance point's handful of events


# ---------------------------------------------------------------- the loader and the commands


def test_empty_redelivery_is_held_and_the_version_in_place_keeps_serving(fresh_warehouse, tmp_path):
    """Today's bug: a 0-byte re-delivery of a point's file deleted every event of that point's day."""
    wh = fresh_warehouse
    scenario = Scenario()
    night = scenario.write_night(DAY, tmp_path, feeds=("assistance",))
    by_point: dict[str, int] = {}
    for e in night.events:
        by_point[e["point_code"]] = by_point.get(e["point_code"], 0) + 1
    point = max(by_point, key=lambda p: (by_point[p], p))
    first = {r.reporter_code: r for r in loader.load_night(wh, tmp_path, "assistance", DAY)}[point]
    assert (first.status, first.rows_loaded) == ("loaded", by_point[point])

    path = tmp_path / "assistance" / DAY.isoformat() / f"{point}.jsonl"
    path.write_bytes(b"")
    [held] = loader.load_night(wh, tmp_path, "assistance", DAY, reporter=point)
    assert held.status == "held"
    assert held.error == (f"shrunk_redelivery: {point}.jsonl is empty, the version already loaded for that day "
                          f"(load {first.load_id}) has {by_point[point]}: the version in place keeps serving until "
                          "this file is released")
    assert raw_rows(wh, "assistance_case_events", point_code=point) == by_point[point]
    assert raw_rows(wh, "assistance_case_events") == len(night.events)
    ledger = q(wh, "select status, error from audit.load_ledger where reporter_code = %s order by load_id", (point,))
    assert ledger == [{"status": "loaded", "error": None}, {"status": "held", "error": held.error}]
    # the night again: the held file is not held a second time, nothing changes
    [again] = loader.load_night(wh, tmp_path, "assistance", DAY, reporter=point)
    assert (again.status, again.error) == ("skipped_duplicate", f"same content as load {held.load_id} (held)")
    assert q(wh, "select count(*) as n from audit.load_ledger where status = 'held'")[0]["n"] == 1

    # rejected with the documented command: who, when and why are in the ledger; nothing loads
    done = cli(wh, "reject", "--load-id", str(held.load_id), "--reason", "the point re-sent by mistake", "--by", "王工")
    assert done.returncode == 0, done.stderr
    row = q(wh, "select status, decided_by, decided_at, decision_note from audit.load_ledger where load_id = %s",
            (held.load_id,))[0]
    assert (row["status"], row["decided_by"], row["decision_note"]) == ("rejected", "王工", "the point re-sent by mistake")
    assert row["decided_at"] is not None
    assert raw_rows(wh, "assistance_case_events", point_code=point) == by_point[point]
    again = cli(wh, "reject", "--load-id", str(held.load_id), "--reason", "twice")
    assert again.returncode != 0 and f"load {held.load_id} is not held: its status is rejected" in again.stderr


def test_shrunk_canteen_file_is_held_then_released_and_replaces_the_version_in_place(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv"
    n = messy.write_volume_csv(Scenario(), path, 40)
    rows = meal_rows(path)
    [first] = loader.load_night(wh, tmp_path, "canteens", DAY)
    canteen_csv(path, rows[:12])  # the till exported the morning only
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (held.status, held.rows_read, held.rows_loaded) == ("held", 12, 12)
    assert held.error.startswith(f"shrunk_redelivery: {CODE}.csv has 12 good rows, the version already loaded "
                                 f"for that day (load {first.load_id}) has {n}")
    assert raw_rows(wh, "canteens_meals") == n and raw_rows(wh, "canteens_meals", _load_id=first.load_id) == n
    # the email's contract: audit.load_ledger where status = 'held', its reason in error
    assert q(wh, "select load_id, reporter_code, error from audit.load_ledger where status = 'held'") == [
        {"load_id": held.load_id, "reporter_code": CODE, "error": held.error}]

    done = cli(wh, "release", "--load-id", str(held.load_id), "--reason", "only breakfast was served", "--no-rebuild",
               landing=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"make run DAY={DAY}" in done.stdout and '"service_date": "2023-11-06"' in done.stdout
    ledger = q(wh, "select load_id, status, replaced_by, rows_loaded, decided_by, decision_note "
                   "from audit.load_ledger order by load_id")
    released = ledger[-1]
    assert [(x["status"], x["rows_loaded"]) for x in ledger] == [("replaced", n), ("released", 12), ("loaded", 12)]
    assert ledger[0]["replaced_by"] == released["load_id"] and ledger[1]["replaced_by"] == released["load_id"]
    assert ledger[1]["decided_by"] and ledger[1]["decision_note"] == "only breakfast was served"
    assert raw_rows(wh, "canteens_meals") == 12 and raw_rows(wh, "canteens_meals", _load_id=released["load_id"]) == 12
    # released once: the next run skips it, a second release is refused
    [again] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert again.status == "skipped_duplicate"
    assert cli(wh, "release", "--load-id", str(held.load_id), "--reason", "x", "--no-rebuild").returncode != 0


def test_a_release_needs_the_file_that_was_held(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv"
    n = messy.write_volume_csv(Scenario(), path, 40)
    rows = meal_rows(path)
    loader.load_night(wh, tmp_path, "canteens", DAY)
    canteen_csv(path, rows[:5])
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY)
    canteen_csv(path, rows[:6])  # changed since: the release must not load something nobody looked at
    done = cli(wh, "release", "--load-id", str(held.load_id), "--reason", "ok", "--no-rebuild")
    assert done.returncode != 0 and "no longer has the content that was held" in done.stderr
    assert q(wh, "select status from audit.load_ledger order by load_id") == [{"status": "loaded"}, {"status": "held"}]
    assert raw_rows(wh, "canteens_meals") == n


def test_a_release_reads_the_landing_zone_without_following_links(fresh_warehouse, tmp_path):
    """Between the hold and its release the day folder became a link (to a folder with other bytes under
    the same name): the release refuses, naming the link, and changes nothing."""
    wh, root = fresh_warehouse, tmp_path / "landing"
    path = root / "canteens" / DAY.isoformat() / f"{CODE}.csv"
    n = messy.write_volume_csv(Scenario(), path, 40)
    rows = meal_rows(path)
    loader.load_night(wh, root, "canteens", DAY)
    canteen_csv(path, rows[:5])
    [held] = loader.load_night(wh, root, "canteens", DAY)
    elsewhere = tmp_path / "elsewhere"
    path.parent.rename(elsewhere)
    path.parent.symlink_to(elsewhere)
    done = cli(wh, "release", "--load-id", str(held.load_id), "--reason", "ok", "--no-rebuild", landing=root)
    assert done.returncode != 0
    assert f"load {held.load_id} was not released: {path.parent}: it is a symbolic link" in done.stderr
    assert q(wh, "select status from audit.load_ledger order by load_id") == [{"status": "loaded"}, {"status": "held"}]
    assert raw_rows(wh, "canteens_meals") == n


def test_doubled_first_delivery_is_held_and_nothing_of_it_is_in_raw(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv"
    n = messy.write_volume_csv(Scenario(), path, 30)
    rows = meal_rows(path)
    canteen_csv(path, rows + rows)  # the export pasted twice
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (held.status, held.rows_read, held.rows_loaded, held.rows_rejected) == ("held", 2 * n, n, n)
    assert held.error == (f"doubled_file: {CODE}.csv repeats the records of {n} of its {2 * n} rows (the same record "
                          "ids twice): was the file exported or pasted twice?")
    assert raw_rows(wh, "canteens_meals") == 0
    assert q(wh, "select count(*) as n from audit.rejected_rows")[0]["n"] == 0  # written when it is released
    with loader.connect(wh) as conn:
        result = decisions.release(conn, held.load_id, "checked with the canteen: one export", by="李工")
    assert (result.status, result.rows_loaded, result.rows_rejected) == ("loaded", n, n)
    assert raw_rows(wh, "canteens_meals") == n
    assert q(wh, "select count(*) as n from audit.rejected_rows where reason_code = 'duplicate_record'")[0]["n"] == n


def test_row_count_far_outside_the_reporters_band_is_held(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    scenario = Scenario()
    canteen = next(c for c in scenario.canteens if c.code == CODE)
    history = [DAY - timedelta(days=k) for k in range(holds.BAND_MIN_DAYS, 0, -1)]
    counts = []
    for d in history:  # the canteen's own nights from the generator
        night_path = tmp_path / "canteens" / d.isoformat() / f"{CODE}.csv"
        canteen_csv(night_path, [writers.meal_values(r) for r in scenario.canteen_meals(canteen, d)])
        counts.append(len(scenario.canteen_meals(canteen, d)))
        assert loader.load_night(wh, tmp_path, "canteens", d)[0].status == "loaded"
    assert min(counts) >= holds.BAND_MIN_ROWS
    median = sorted(counts)[len(counts) // 2]
    # tonight: four days of meals in one file (unique record ids), far above the band
    rows = [writers.meal_values(r) for k in range(4) for r in scenario.canteen_meals(canteen, DAY + timedelta(days=k))]
    assert len(rows) > median * holds.BAND_HIGH
    canteen_csv(tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv", rows)
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert held.status == "held" and held.error.startswith(
        f"out_of_band: {CODE}.csv has {len(rows)} rows, far from this reporter's usual {median} a day "
        f"(median of its last {len(history)} loaded days")
    assert raw_rows(wh, "canteens_meals", _service_date=DAY) == 0
    assert raw_rows(wh, "canteens_meals") == sum(counts)


def test_little_history_is_never_held_for_its_volume(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    scenario = Scenario()
    canteen = next(c for c in scenario.canteens if c.code == CODE)
    days = [DAY - timedelta(days=k) for k in range(3, 0, -1)]
    for d in days:
        canteen_csv(tmp_path / "canteens" / d.isoformat() / f"{CODE}.csv",
                    [writers.meal_values(r) for r in scenario.canteen_meals(canteen, d)])
        assert loader.load_night(wh, tmp_path, "canteens", d)[0].status == "loaded"
    rows = [writers.meal_values(r) for k in range(5) for r in scenario.canteen_meals(canteen, DAY + timedelta(days=k))]
    canteen_csv(tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv", rows)
    [r] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (r.status, r.rows_loaded) == ("loaded", len(rows))


def test_a_newer_good_file_supersedes_a_held_one(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / f"{CODE}.csv"
    n = messy.write_volume_csv(Scenario(), path, 40)
    rows = meal_rows(path)
    [first] = loader.load_night(wh, tmp_path, "canteens", DAY)
    canteen_csv(path, rows[:3])
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY)
    rows[0][8] = "4.00"  # a corrected full file
    canteen_csv(path, rows)
    [good] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (good.status, good.rows_loaded) == ("loaded", n)
    ledger = {x["load_id"]: (x["status"], x["replaced_by"]) for x in q(wh, "select * from audit.load_ledger")}
    assert ledger == {first.load_id: ("replaced", good.load_id), held.load_id: ("replaced", good.load_id),
                      good.load_id: ("loaded", None)}
    assert q(wh, "select count(*) as n from audit.load_ledger where status = 'held'")[0]["n"] == 0
    assert raw_rows(wh, "canteens_meals") == n


def test_marts_keep_the_last_good_data_while_held_and_take_the_released_file(fresh_warehouse, tmp_path):
    """Through dbt: while a canteen's shrunk re-delivery is held its day in fct_canteen_day keeps the first
    version's figures; released, the day's rebuild (what `make run DAY=…` runs) takes the new file's."""
    from tests.dbt.test_dbt_warehouse import M, dbt, query

    wh = fresh_warehouse
    scenario = Scenario()
    night = scenario.write_night(DAY, tmp_path, feeds=("canteens",))
    meals = {c.code: sum(m["canteen_code"] == c.code for m in night.meals) for c in scenario.canteens}
    code = max(meals, key=lambda c: (meals[c], c))
    loader.load_night(wh, tmp_path, "canteens", DAY)
    target = tmp_path / "target"

    def person_times() -> dict[str, int]:
        dbt(wh, target, "build", "--select", "+fct_canteen_day", "--exclude", "test_type:data", day=DAY, strict=False)
        return {r["canteen_code"]: r["person_times"] for r in query(
            wh, f"select canteen_code, person_times from {M}.fct_canteen_day where service_date = %s", (DAY,))}

    assert person_times() == {c: n for c, n in meals.items() if n}
    path = tmp_path / "canteens" / DAY.isoformat() / f"{code}.csv"
    canteen_csv(path, meal_rows(path)[:5])
    [held] = loader.load_night(wh, tmp_path, "canteens", DAY, reporter=code)
    assert held.status == "held"
    assert person_times()[code] == meals[code]  # the held file changes nothing
    done = cli(wh, "release", "--load-id", str(held.load_id), "--reason", "a short day", "--no-rebuild")
    assert done.returncode == 0, done.stderr
    after = person_times()
    assert after == {**{c: n for c, n in meals.items() if n}, code: 5}


def test_a_ledger_from_before_held_files_is_upgraded_by_the_bootstrap(fresh_warehouse):
    """A warehouse bootstrapped before held files: no decision columns, the old status list. The next
    bootstrap adds them once; a row of every new status is then accepted."""
    from warehouse.bootstrap import bootstrap

    wh = fresh_warehouse
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute("alter table audit.load_ledger drop column decided_by, drop column decided_at, "
                     "drop column decision_note, drop constraint load_ledger_status_check")
        conn.execute("alter table audit.load_ledger add constraint load_ledger_status_check check (status in "
                     "('loading', 'loaded', 'skipped_duplicate', 'replaced', 'quarantined', 'failed'))")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("insert into audit.load_ledger (source, file_path, status) values ('canteens', 'x', 'held')")
    bootstrap(wh)
    bootstrap(wh)  # and again: nothing more to do
    with psycopg.connect(wh.conninfo()) as conn:
        for status in ("held", "released", "rejected"):
            conn.execute("insert into audit.load_ledger (source, file_path, status, decided_by, decided_at, "
                         "decision_note) values ('canteens', 'x', %s, 'a', now(), 'b')", (status,))
