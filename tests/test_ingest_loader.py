"""The loader against a real PostgreSQL, on the messy night: exact row accounting, reason codes,
quarantine, idempotency, late and revised files, failures and a load killed mid-COPY.

Expectations come from the generator's manifest (ingest.messy), never from the loader.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import config, loader, messy, pii
from ingest.feeds import SPECS
from ingest.scenario import Scenario

DAY = date(2023, 11, 6)
SOURCES = ("streets", "canteens", "assistance")


def q(wh: config.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def load_night(wh: config.ConnInfo, landing: Path, day: date) -> list[loader.FileResult]:
    return [r for source in SOURCES for r in loader.load_night(wh, landing, source, day)]


def raw_count(wh: config.ConnInfo, source: str, **where) -> int:
    clause = " and ".join(f"{k} = %s" for k in where) or "true"
    return q(wh, f"select count(*) as n from {SPECS[source].table} where {clause}", tuple(where.values()))[0]["n"]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def test_messy_night_exact_accounting(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    manifest = messy.write_messy_night(scenario, DAY, tmp_path, full=False)
    results = {r.path: r for r in load_night(wh, tmp_path, DAY)}
    night = manifest.for_night()
    assert set(results) == {c.path for c in night}  # the late file is not there yet
    for case in night:
        r = results[case.path]
        assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == (
            case.status, case.rows_read, case.rows_loaded, case.rows_rejected), case.kind
        ledger = q(wh, "select * from audit.load_ledger where load_id = %s", (r.load_id,))[0]
        assert ledger["status"] == case.status
        assert ledger["rows_read"] == ledger["rows_loaded"] + ledger["rows_rejected"] == case.rows_read
        assert ledger["content_sha256"] == hashlib.sha256(case.path.read_bytes()).hexdigest()
        assert ledger["service_date"] == DAY and ledger["reporter_code"] == case.reporter
        assert raw_count(wh, case.source, _load_id=r.load_id) == case.rows_loaded
        rejected = q(wh, "select * from audit.rejected_rows where load_id = %s", (r.load_id,))
        assert Counter(x["reason_code"] for x in rejected) == case.reasons, case.kind
        for x in rejected:  # a clear message naming file, row and (where there is one) column
            assert x["message"].startswith(f"{case.path.name}, row {x['row_number']}")
            if x["column_name"]:
                assert f"column {x['column_name']}:" in x["message"]
        if case.status == "quarantined":
            assert ledger["error"].startswith(case.quarantine_reason + ":")
            assert case.path.name in ledger["error"]
    # the good rows of the messy workbook are all there, with their codes restored from Excel numbers
    case = manifest.by_kind("titles_merged_total")
    codes = {r["compound_code"] for r in q(wh, "select compound_code from raw.streets_compounds")}
    assert codes == {r["compound_code"] for r in scenario.registry_rows(DAY) if r["street_code"] == case.reporter}
    # no personal data in plain text anywhere in raw or audit
    assert_no_personal_data(wh)


def assert_no_personal_data(wh: config.ConnInfo) -> None:
    columns = q(wh, """select table_schema, table_name, column_name from information_schema.columns
                       where table_schema in ('raw', 'audit') and data_type in ('text', 'jsonb')""")
    assert columns
    for c in columns:
        values = q(wh, f'select "{c["column_name"]}"::text as v from {c["table_schema"]}.{c["table_name"]} '
                       f'where "{c["column_name"]}" is not null')
        for (value,) in (tuple(v.values()) for v in values):
            assert not pii.PHONE_RE.search(value), (c, value)
            assert not pii.ID_NUMBER_RE.search(value), (c, value)


def test_idempotency_late_and_revised_files(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    first = messy.write_messy_night(scenario, DAY, tmp_path, full=False)
    load_night(wh, tmp_path, DAY)
    totals = {s: raw_count(wh, s) for s in SOURCES}
    rejected = q(wh, "select count(*) as n from audit.rejected_rows")[0]["n"]

    # the same files again add nothing: every file (the quarantined ones too) is a skipped duplicate;
    # generating the night again writes the same bytes, so that is no revision either
    assert messy.write_messy_night(scenario, DAY, tmp_path, full=False).cases == first.cases
    again = load_night(wh, tmp_path, DAY)
    assert {r.status for r in again} == {"skipped_duplicate"}
    assert {s: raw_count(wh, s) for s in SOURCES} == totals
    assert q(wh, "select count(*) as n from audit.rejected_rows")[0]["n"] == rejected

    # the next day's delivery brings this day's late file and its revised file
    second = messy.write_messy_night(scenario, DAY + timedelta(days=1), tmp_path, full=False)
    followups = [c for c in second.cases if c.phase == "after"]
    assert {c.kind for c in followups} == {"late", "revised"} and {c.service_date for c in followups} == {DAY}
    late = next(c for c in followups if c.kind == "late")
    revised = next(c for c in followups if c.kind == "revised")
    assert late.path in first.withheld
    original = first.by_kind("revised")
    assert original.path == revised.path
    original_load = q(wh, "select load_id from audit.load_ledger where file_path = %s and status = 'loaded'",
                      (str(original.path),))[0]["load_id"]

    rerun = {r.path: r for r in load_night(wh, tmp_path, DAY)}
    assert (rerun[late.path].status, rerun[late.path].rows_loaded) == ("loaded", late.rows_loaded)
    new = rerun[revised.path]
    assert (new.status, new.rows_read, new.rows_loaded) == ("loaded", revised.rows_read, revised.rows_loaded)
    old = q(wh, "select status, replaced_by from audit.load_ledger where load_id = %s", (original_load,))[0]
    assert old == {"status": "replaced", "replaced_by": new.load_id}
    assert raw_count(wh, "canteens", _load_id=original_load) == 0
    assert raw_count(wh, "canteens", _reporter_code=revised.reporter, _service_date=DAY) == revised.rows_loaded
    others = [r for p, r in rerun.items() if p not in (late.path, revised.path)]
    assert others and {r.status for r in others} == {"skipped_duplicate"}
    assert raw_count(wh, "canteens") == totals["canteens"] + late.rows_loaded + revised.rows_loaded - original.rows_loaded

    # the late file now counts as loaded after its night: the ledger shows when it came
    ledger = q(wh, """select count(*) as n from audit.load_ledger where source = 'canteens'
                      and service_date = %s and status = 'loaded'""", (DAY,))[0]["n"]
    assert ledger == sum(1 for c in first.for_night() if c.source == "canteens" and c.status == "loaded") + 1


def test_revised_after_quarantine_does_not_duplicate(fresh_warehouse, tmp_path):
    """A loaded file, then an unreadable revision (quarantined), then the good file again: its
    rows are there once."""
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    n = messy.write_volume_csv(Scenario(), path, 30)
    good = path.read_bytes()
    with loader.connect(wh) as conn:
        assert loader.load_file(conn, "canteens", DAY, path).status == "loaded"
        path.write_bytes("流水号\tfoo\n".encode("utf-16"))
        assert loader.load_file(conn, "canteens", DAY, path).status == "quarantined"
        path.write_bytes(good)
        r = loader.load_file(conn, "canteens", DAY, path)
    assert r.status == "loaded" and r.rows_loaded == n
    assert raw_count(wh, "canteens") == n


def test_error_inside_reader_leaves_nothing_and_night_goes_on(fresh_warehouse, tmp_path, monkeypatch):
    wh = fresh_warehouse
    folder = tmp_path / "canteens" / DAY.isoformat()
    scenario = Scenario()
    a, b = scenario.canteens[:2]
    na = messy.write_volume_csv(scenario, folder / f"{a.code}.csv", 10_000, canteen=a)
    nb = messy.write_volume_csv(scenario, folder / f"{b.code}.csv", 50, canteen=b)
    real_read = loader.read_file

    def failing(spec, path, encoding=None):
        for i, item in enumerate(real_read(spec, path, encoding)):
            if path.stem == a.code and i == 9_000:  # several COPY batches already sent
                raise RuntimeError("disk went away")
            yield item

    monkeypatch.setattr(loader, "read_file", failing)
    results = {r.reporter_code: r for r in loader.load_night(wh, tmp_path, "canteens", DAY)}
    assert results[a.code].status == "failed" and "disk went away" in results[a.code].error
    assert results[b.code].status == "loaded" and results[b.code].rows_loaded == nb
    assert raw_count(wh, "canteens", _reporter_code=a.code) == 0
    assert q(wh, "select status from audit.load_ledger where reporter_code = %s", (a.code,)) == [{"status": "failed"}]

    monkeypatch.setattr(loader, "read_file", real_read)
    results = {r.reporter_code: r for r in loader.load_night(wh, tmp_path, "canteens", DAY)}
    assert (results[a.code].status, results[a.code].rows_loaded) == ("loaded", na)
    assert results[b.code].status == "skipped_duplicate"
    assert raw_count(wh, "canteens") == na + nb


KILL_ROWS = 150_000
LOAD_ONE = """
import sys
from datetime import date
from pathlib import Path
from ingest import config, loader
wh = config.parse_url(sys.argv[1])
with loader.connect(wh) as conn:
    conn.execute("set application_name = 'ingest_kill_test'")
    print(loader.load_file(conn, "canteens", date.fromisoformat(sys.argv[2]), Path(sys.argv[3])))
"""


def test_load_killed_mid_copy_leaves_nothing_and_reruns_cleanly(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    rows = messy.write_volume_csv(Scenario(), path, KILL_ROWS)
    proc = subprocess.Popen([sys.executable, "-c", LOAD_ONE, wh.sqlalchemy_url(), DAY.isoformat(), str(path)],
                            cwd=config.REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    copied = 0
    with psycopg.connect(wh.conninfo(), autocommit=True) as admin:
        while time.monotonic() < deadline and proc.poll() is None:
            row = admin.execute("""select p.tuples_processed from pg_stat_progress_copy p
                                   join pg_stat_activity a using (pid)
                                   where a.application_name = 'ingest_kill_test'""").fetchone()
            if row and row[0] > 0:
                copied = row[0]
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
        assert copied > 0 and proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
        while admin.execute("select count(*) from pg_stat_activity where application_name = 'ingest_kill_test'"
                            ).fetchone()[0]:
            time.sleep(0.05)  # the server notices the dead client and rolls its transaction back
    assert raw_count(wh, "canteens") == 0
    assert q(wh, "select count(*) as n from audit.load_ledger")[0]["n"] == 0  # not even a 'loading' row

    results = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert [(r.status, r.rows_read, r.rows_loaded, r.rows_rejected) for r in results] == [("loaded", rows, rows, 0)]
    assert raw_count(wh, "canteens") == rows
    assert q(wh, "select count(distinct record_id) as n from raw.canteens_meals")[0]["n"] == rows


def test_full_messy_night_among_clean_files(fresh_warehouse, scenario, tmp_path):
    """`generate --messy`: the whole clean night with the messy files in place of some reporters'."""
    wh = fresh_warehouse
    manifest = messy.write_messy_night(scenario, DAY, tmp_path, full=True)
    results = load_night(wh, tmp_path, DAY)
    cases = {c.path: c for c in manifest.for_night()}
    assert len(results) == manifest.clean_files - len(manifest.withheld)
    for r in results:
        case = cases.get(r.path)
        if case is None:  # a clean file
            assert (r.status, r.rows_rejected) == ("loaded", 0), r
            assert r.rows_read == r.rows_loaded
        else:
            assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == (
                case.status, case.rows_read, case.rows_loaded, case.rows_rejected), case.kind
    assert not any(p.exists() for p in manifest.withheld)
    clean_meals = sum(len(scenario.canteen_meals(c, DAY)) for c in scenario.canteens)
    messy_canteens = [c for c in cases.values() if c.source == "canteens"]
    expected = clean_meals - sum(len(scenario.canteen_meals(next(x for x in scenario.canteens if x.code == c.reporter),
                                                            DAY)) for c in messy_canteens)
    expected += sum(c.rows_loaded for c in messy_canteens)
    expected -= sum(len(scenario.canteen_meals(next(x for x in scenario.canteens if x.code == p.stem), DAY))
                    for p in manifest.withheld)
    assert raw_count(wh, "canteens") == expected
