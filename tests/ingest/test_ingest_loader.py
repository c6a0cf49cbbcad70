"""The loader against a real PostgreSQL, on the messy night: exact row accounting, reason codes,
quarantine, idempotency, late and revised files, failures and a load killed mid-COPY.

Expectations come from the generator's manifest (scenario.messy), never from the loader.
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

from ingest import csv_batches, encoding, loader, pii, readers
from ingest.feeds import SPECS
from scenario import messy
from scenario.generator import Scenario
from warehouse import conninfo, settings
from warehouse.reference import DINER_CATEGORIES, MEALS

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)
SOURCES = ("streets", "canteens", "assistance")


def q(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def load_night(wh: conninfo.ConnInfo, landing: Path, day: date) -> list[loader.FileResult]:
    return [r for source in SOURCES for r in loader.load_night(wh, landing, source, day)]


def raw_count(wh: conninfo.ConnInfo, source: str, **where) -> int:
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


def assert_no_personal_data(wh: conninfo.ConnInfo) -> None:
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
    assert raw_count(wh, "canteens", canteen_code=revised.reporter, _service_date=DAY) == revised.rows_loaded
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

    class Failing(readers.Rows):
        def batches(self):
            read = 0
            for item in super().batches():
                read += len(item) if isinstance(item, csv_batches.Batch) else 1
                if self.path.stem == a.code and read >= 9_000:  # several COPY batches already sent
                    raise RuntimeError("disk went away")
                yield item

    def failing(spec, path, encoding=None, **options):
        return Failing(spec, path, encoding, **options)

    monkeypatch.setattr(loader, "read_file", failing)
    results = {r.reporter_code: r for r in loader.load_night(wh, tmp_path, "canteens", DAY)}
    assert results[a.code].status == "failed" and "disk went away" in results[a.code].error
    assert results[b.code].status == "loaded" and results[b.code].rows_loaded == nb
    assert raw_count(wh, "canteens", canteen_code=a.code) == 0
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
from warehouse import conninfo
from ingest import loader
wh = conninfo.parse_url(sys.argv[1])
with loader.connect(wh) as conn:
    conn.execute("set application_name = 'ingest_kill_test'")
    print(loader.load_file(conn, "canteens", date.fromisoformat(sys.argv[2]), Path(sys.argv[3])))
"""


def test_load_killed_mid_copy_leaves_nothing_and_reruns_cleanly(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    rows = messy.write_volume_csv(Scenario(), path, KILL_ROWS)
    proc = subprocess.Popen([sys.executable, "-c", LOAD_ONE, wh.sqlalchemy_url(), DAY.isoformat(), str(path)],
                            cwd=settings.REPO_ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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


@pytest.mark.parametrize("where", ["record_id", "payment_method"])
def test_gb18030_deep_in_a_file_read_as_utf8_is_loaded_again_as_gb18030(fresh_warehouse, tmp_path, monkeypatch,
                                                                        where):
    """The loader reads a CSV as UTF-8 without a pass over the file first. A GB18030 file whose first
    thousands of lines are ASCII has its first non-UTF-8 bytes found late, several COPY batches in: in a
    column checked value by value (record_id) or in a line's memoised tail (payment_method). The load
    starts again as GB18030 in the same transaction: every row once, the text right, nothing twice."""
    wh = fresh_warehouse
    scans = []
    monkeypatch.setattr(loader, "scan", lambda p: scans.append(p) or encoding.scan(p))
    path = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    rows = messy.write_volume_csv(Scenario(), path, 5_000)
    lines = path.read_bytes().decode().split("\r\n")
    header, data = lines[0], [line for line in lines[1:] if line]
    english = ",".join(c.name for c in SPECS["canteens"].columns)  # an ASCII header: the file starts as UTF-8
    ascii_values = {**MEALS, **DINER_CATEGORIES, "微信": "wechat", "支付宝": "alipay", "现金": "cash", "就餐卡": "card"}
    data = [",".join(ascii_values.get(v, v) for v in line.split(",")) for line in data]
    fields = data[-10].split(",")
    column = [c.name for c in SPECS["canteens"].columns].index(where)
    fields[column] = fields[column] + "号" if where == "record_id" else "现金"
    data[-10] = ",".join(fields)
    content = ("\r\n".join([english, *data]) + "\r\n").encode("gb18030")
    path.write_bytes(content)
    assert header != english and len(data) == rows
    assert content[:len(content) * 4 // 5].isascii() and not content.isascii()  # past several COPY batches
    with pytest.raises(UnicodeDecodeError):
        content.decode()

    [result] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (result.status, result.rows_read, result.rows_loaded, result.rows_rejected) == ("loaded", rows, rows, 0)
    assert scans == [path]  # read as UTF-8 first, then scanned once and read again
    assert raw_count(wh, "canteens") == rows
    special = fields[0] if where == "record_id" else None
    got = q(wh, "select record_id, payment_method from raw.canteens_meals where _row_number = %s", (rows - 8,))
    assert got == [{"record_id": special or fields[0], "payment_method": fields[9]}]
    assert q(wh, "select content_sha256, file_bytes from audit.load_ledger") == [
        {"content_sha256": hashlib.sha256(content).hexdigest(), "file_bytes": len(content)}]


def test_revised_file_of_the_same_size_replaces_and_same_file_is_skipped(fresh_warehouse, tmp_path):
    """Only a file of the size of the version in place can be that version again: the loader then waits
    for the content hash before writing; a revision of the same size is loaded and replaces it."""
    wh = fresh_warehouse
    path = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    rows = messy.write_volume_csv(Scenario(), path, 2_000)
    first = path.read_bytes()
    [r1] = loader.load_night(wh, tmp_path, "canteens", DAY)
    revised = first.replace(b",3.00,", b",4.00,", 1)
    assert revised != first and len(revised) == len(first)
    path.write_bytes(revised)
    [r2] = loader.load_night(wh, tmp_path, "canteens", DAY)
    [r3] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert [(r.status, r.rows_loaded) for r in (r1, r2, r3)] == [("loaded", rows), ("loaded", rows),
                                                                ("skipped_duplicate", 0)]
    ledger = q(wh, "select load_id, status, content_sha256 from audit.load_ledger order by load_id")
    assert [(x["status"], x["content_sha256"]) for x in ledger] == [
        ("replaced", hashlib.sha256(first).hexdigest()), ("loaded", hashlib.sha256(revised).hexdigest()),
        ("skipped_duplicate", hashlib.sha256(revised).hexdigest())]
    assert raw_count(wh, "canteens") == rows and raw_count(wh, "canteens", _load_id=ledger[1]["load_id"]) == rows


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
