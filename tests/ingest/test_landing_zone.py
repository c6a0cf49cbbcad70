"""Files in the landing zone (issue 14): only regular files inside the landing root whose name is exactly a
reporter code are read; a link, a folder, a copy's or a prefix's name, a name that is not UTF-8 and an
empty file each get a ledger row with their reason, their content unread, and the rest of the feed loads.

Expected values come from the generator (scenario.generator, scenario.messy.write_landing_oddities) or are
worked out by hand here, never read back from the loader.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import landing, loader
from scenario import messy
from scenario.generator import Scenario
from warehouse import conninfo, settings

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)


def q(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


# ---------------------------------------------------------------- names (no database)


@pytest.mark.parametrize(("source", "name", "reason"), [
    ("canteens", "CT140105001001.csv", None),
    ("canteens", "CT140105001001.CSV", None),
    ("streets", "140105001.xlsx", None),
    ("assistance", "AP140105001001.jsonl", None),
    ("canteens", "CT140105001001 (1).csv", "copy_file_name"),
    ("canteens", "CT140105001001_副本.csv", "copy_file_name"),
    ("canteens", "CT140105001001 - 副本.csv", "copy_file_name"),
    ("canteens", "C.csv", "unknown_reporter"),
    ("canteens", "CT1401.csv", "unknown_reporter"),
    ("canteens", "CT140105001999.csv", "unknown_reporter"),  # the right shape, but no such canteen
    ("canteens", "AP140105001001.csv", "unknown_reporter"),  # a point's code is no canteen's
    ("canteens", "CT140105001001.xlsx", "wrong_file_type"),
    ("canteens", "CT140105001001", "wrong_file_type"),
    ("streets", "1401050011.xlsx", "copy_file_name"),
    ("canteens", os.fsdecode(b"\xb2\xe2\xca\xd4.csv"), "name_not_utf8"),
])
def test_a_file_is_read_only_under_its_reporters_exact_code(source, name, reason):
    problem = landing.name_problem(source, name)
    assert (problem.reason_code if problem else None) == reason
    if problem is not None:
        assert landing.escaped(name) in str(problem) or reason == "name_not_utf8"


def test_copy_message_names_the_reporter_and_a_non_utf8_name_is_stored_escaped():
    problem = landing.name_problem("canteens", "CT140105001001 (1).csv")
    assert "copy or renamed version of CT140105001001.csv" in str(problem)
    name = os.fsdecode(b"\xb2\xe2\xca\xd4.csv")
    assert landing.escaped(name) == "\\xb2\\xe2\\xca\\xd4.csv"
    assert "\\xb2\\xe2\\xca\\xd4.csv" in str(landing.name_problem("canteens", name))


def test_every_file_of_a_generated_night_has_a_reporters_name(scenario, tmp_path):
    night = scenario.write_night(DAY, tmp_path)
    for source in settings.FEEDS:
        with landing.survey(tmp_path, source, DAY) as found:
            assert found.refused == []
            assert found.files == sorted(p for p in night.files if p.parent.parent.name == source)


def test_survey_refuses_links_folders_and_odd_names_without_reading_them(tmp_path):
    root, outside = tmp_path / "landing", tmp_path / "elsewhere"
    folder = root / "canteens" / DAY.isoformat()
    folder.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.csv").write_text("secret\n", encoding="utf-8")
    (folder / "CT140105001001.csv").write_text("x\n", encoding="utf-8")
    (folder / "CT140105001002.csv").symlink_to(outside / "secret.csv")  # a link out of the landing zone
    (folder / "CT140105001003.csv").symlink_to(folder / "CT140105001001.csv")  # a link inside: refused too
    (folder / "CT140105001004.csv").mkdir()
    os.mkfifo(folder / "CT140105001005.csv")
    (folder / ".CT140105001006.csv.part").write_text("uploading", encoding="utf-8")  # in progress: passed over
    (folder / "~$CT140105001006.csv").write_text("lock", encoding="utf-8")
    (folder / "CT140105001006.csv~").write_text("backup", encoding="utf-8")
    with landing.survey(root, "canteens", DAY) as found:
        assert found.files == [folder / "CT140105001001.csv"]
        refused = {Path(r.path).name: (r.reason_code, r.reporter, r.size) for r in found.refused}
    assert refused == {"CT140105001002.csv": ("symlink", "CT140105001002", None),
                       "CT140105001003.csv": ("symlink", "CT140105001003", None),
                       "CT140105001004.csv": ("not_a_file", "CT140105001004", None),
                       "CT140105001005.csv": ("not_a_file", "CT140105001005", None)}
    # one reporter's re-load (the DAG's `reporter` param) sees that reporter's entry only
    with landing.survey(root, "canteens", DAY, reporter="CT140105001002") as found:
        assert found.files == [] and [Path(r.path).name for r in found.refused] == ["CT140105001002.csv"]
    with landing.survey(root, "canteens", DAY, reporter="CT140105001001") as found:
        assert (found.files, found.refused) == ([folder / "CT140105001001.csv"], [])


def test_a_day_folder_that_is_a_link_is_refused_whole(tmp_path):
    root, outside = tmp_path / "landing", tmp_path / "elsewhere"
    (outside / DAY.isoformat()).mkdir(parents=True)
    (outside / DAY.isoformat() / "CT140105001001.csv").write_text("x\n", encoding="utf-8")
    (root / "canteens").mkdir(parents=True)
    (root / "canteens" / DAY.isoformat()).symlink_to(outside / DAY.isoformat())
    (root / "streets").symlink_to(outside)
    with landing.survey(root, "canteens", DAY) as found:
        assert found.files == [] and [r.reason_code for r in found.refused] == ["symlink"]
        assert found.refused[0].path == str(root / "canteens" / DAY.isoformat()) and found.refused[0].reporter is None
    with landing.survey(root, "streets", DAY) as found:
        assert found.files == [] and [r.reason_code for r in found.refused] == ["symlink"]
    (root / "assistance").mkdir()
    (root / "assistance" / DAY.isoformat()).write_text("not a folder", encoding="utf-8")
    with landing.survey(root, "assistance", DAY) as found:
        assert found.files == [] and [r.reason_code for r in found.refused] == ["not_a_folder"]
    with landing.survey(root, "assistance", date(2023, 11, 7)) as found:  # no folder at all: nothing, no row
        assert (found.files, found.refused) == ([], [])


def test_a_file_swapped_for_a_link_after_its_check_is_not_followed(tmp_path):
    """The readers read the open file the check was made on: a file renamed away and replaced by a link
    between the check and the reading (time of check, time of use) gives its own bytes, not the link's."""
    path, secret = tmp_path / "CT140105001001.csv", tmp_path / "secret"
    path.write_bytes(b"the landed bytes\n")
    secret.write_bytes(b"secret\n")
    with landing.pinned(path) as (readable, size):
        path.rename(tmp_path / "moved")
        path.symlink_to(secret)
        assert readable == path and str(readable) == str(path) and readable.name == path.name
        assert readable.read_bytes() == b"the landed bytes\n" and size == 17
        with readable.open("rb") as f:
            assert f.read() == b"the landed bytes\n"
    with pytest.raises(landing.Refused) as refused:
        with landing.pinned(path):
            pass
    assert refused.value.reason_code == "symlink"


# ---------------------------------------------------------------- the loader (real PostgreSQL)


def test_oddities_get_ledger_rows_and_the_rest_of_the_night_loads(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    root = tmp_path / "landing"
    night = scenario.write_night(DAY, root, feeds=("canteens",))
    cases = messy.write_landing_oddities(scenario, DAY, root, tmp_path / "outside")
    displaced = {c.reporter for c in cases if c.kind in ("symlink", "directory", "empty_file")}
    results = loader.load_night(wh, root, "canteens", DAY)

    by_kind = {c.kind: c for c in cases}
    ledger = q(wh, "select * from audit.load_ledger order by load_id")
    quarantined = [x for x in ledger if x["status"] == "quarantined"]
    assert sorted(x["error"].split(":")[0] for x in quarantined) == sorted(c.quarantine_reason for c in cases)
    assert {x["reporter_code"] for x in quarantined} == {c.reporter for c in cases}
    # a name that is not UTF-8 is stored with backslash escapes, and the message says what to do
    [odd] = [x for x in quarantined if x["error"].startswith("name_not_utf8")]
    assert odd["file_path"] == str(by_kind["not_utf8_name"].path.parent / "\\xb2\\xe2\\xca\\xd4.csv")
    assert odd["reporter_code"] == "\\xb2\\xe2\\xca\\xd4"
    # nothing refused was read: no hash of a link, a folder or a badly named file
    assert [x["content_sha256"] for x in quarantined if not x["error"].startswith("empty_file")] == [None] * 6
    [empty] = [x for x in quarantined if x["error"].startswith("empty_file")]
    assert empty["content_sha256"] == hashlib.sha256(b"").hexdigest() and empty["file_bytes"] == 0
    copy_row = next(x for x in quarantined if x["file_path"].endswith(" (1).csv"))
    assert copy_row["file_bytes"] == (root / "canteens" / DAY.isoformat() / f"{by_kind['copy_name'].reporter[:14]}.csv"
                                      ).stat().st_size

    # every genuine canteen file loaded, each exactly its generated meals
    expected = {c.code: sum(m["canteen_code"] == c.code for m in night.meals) for c in scenario.canteens}
    loaded = {r.reporter_code: r.rows_loaded for r in results if r.status == "loaded"}
    assert loaded == {code: n for code, n in expected.items() if code not in displaced}
    counts = dict(tuple(r.values()) for r in q(wh, "select canteen_code, count(*) from raw.canteens_meals group by 1"))
    assert counts == {code: n for code, n in expected.items() if code not in displaced and n}
    # the linked file's content never reached the warehouse (rows, rejections or ledger)
    assert q(wh, "select count(*) as n from audit.rejected_rows")[0]["n"] == 0
    assert not any(messy.SECRET_MARK in str(x) for x in ledger)

    # the same night again: every refusal is the same ledger row, nothing new is added
    again = loader.load_night(wh, root, "canteens", DAY)
    assert {r.load_id for r in again if r.status == "quarantined"} == {x["load_id"] for x in quarantined}
    assert {r.status for r in again} == {"quarantined", "skipped_duplicate"}


def test_an_empty_points_file_is_a_day_without_events_and_an_empty_csv_is_quarantined(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    point = tmp_path / "assistance" / DAY.isoformat() / "AP140105001001.jsonl"
    canteen = tmp_path / "canteens" / DAY.isoformat() / "CT140105001001.csv"
    for path in (point, canteen):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    [p] = loader.load_night(wh, tmp_path, "assistance", DAY)
    [c] = loader.load_night(wh, tmp_path, "canteens", DAY)
    assert (p.status, p.rows_read, p.error) == ("loaded", 0, "empty_file: AP140105001001.jsonl is empty (0 bytes): "
                                                              "no events reported for the day")
    assert (c.status, c.error) == ("quarantined", "empty_file: CT140105001001.csv: the file is empty (0 bytes), "
                                                  "not even a header row")
    ledger = q(wh, "select reporter_code, status, error from audit.load_ledger order by load_id")
    assert ledger == [{"reporter_code": "AP140105001001", "status": "loaded", "error": p.error},
                      {"reporter_code": "CT140105001001", "status": "quarantined", "error": c.error}]


def test_a_night_with_these_files_publishes_every_genuine_row(fresh_warehouse, scenario, tmp_path, monkeypatch):
    """The whole generated night with the oddities laid over it, through the steps the DAGs run: it
    publishes, and the marts hold every canteen's meals exactly as generated except the three canteens
    whose file was displaced (a link, a folder, an empty file), which show as missing."""
    from tests.orchestration.test_publish_gate import canteen_person_times, generated_person_times, run_night

    wh, root = fresh_warehouse, tmp_path / "landing"
    monkeypatch.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
    monkeypatch.setenv("LANDING_DIR", str(root))
    scenario.write_night(DAY, root)
    cases = messy.write_landing_oddities(scenario, DAY, root, tmp_path / "outside")
    displaced = {c.reporter for c in cases if c.kind in ("symlink", "directory", "empty_file")}
    outcome = run_night(DAY, "oddities")
    assert outcome["status"] == "published", outcome
    expected = generated_person_times(scenario, DAY)
    assert canteen_person_times(wh, DAY) == {c: n for c, n in expected.items() if c not in displaced}
    missing = q(wh, "select reporter_code from marts.mart_source_freshness where service_date = %s and missing",
                (DAY,))
    assert {r["reporter_code"] for r in missing} == displaced
    assert len(q(wh, "select 1 from audit.load_ledger where status = 'quarantined'")) == len(cases)


def test_a_file_gone_before_its_reading_is_refused_with_a_reason(tmp_path):
    with pytest.raises(landing.Refused) as refused:
        with landing.pinned(tmp_path / "CT140105001001.csv"):
            pass
    assert (refused.value.reason_code, str(refused.value)) == (
        "missing_file", "CT140105001001.csv: the file went away before it was read")
