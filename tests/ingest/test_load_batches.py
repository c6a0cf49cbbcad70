"""A feed's night loaded as batches (ingest/batches.py, gov_ingest's mapped `load_<feed>` tasks): the plan deals
every landed entry into exactly one batch, and loading the batches keeps every promise of the loader: one ledger
row per entry, retried batches reload nothing, revised files replace, bad files never fail the batch.

Expected values come from the generator (scenario.generator, scenario.messy), never from the loader.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from datetime import date

import psycopg
import pytest
from psycopg.rows import dict_row

from ingest import batches, loader, readers
from ingest.feeds import SPECS
from scenario import messy
from scenario.generator import Scenario
from warehouse import conninfo

DAY = date(2023, 11, 6)


def q(wh: conninfo.ConnInfo, sql: str, params=()) -> list[dict]:
    with psycopg.connect(wh.conninfo(), row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario()


def _entries(folder) -> dict[str, int]:
    """The folder's entries a load looks at (in-progress names are passed over), escaped as the ledger has them,
    with their sizes."""
    raw = os.fsencode(folder)
    return {n.decode("utf-8", "backslashreplace"): os.lstat(raw + b"/" + n).st_size for n in os.listdir(raw)
            if not n.startswith((b".", b"~$")) and not n.endswith(b"~")}


@pytest.mark.unit
def test_the_plan_deals_every_entry_into_exactly_one_batch(scenario, tmp_path):
    scenario.write_night(DAY, tmp_path, feeds=["canteens"])
    messy.write_landing_oddities(scenario, DAY, tmp_path, tmp_path / "outside")
    folder = tmp_path / "canteens" / DAY.isoformat()
    (folder / ".upload.csv.part").write_bytes(b"x")  # an upload in progress: no entry of the night
    sizes = _entries(folder)
    entries = set(sizes)
    assert len(entries) == len(scenario.canteens) + 4  # two copies, a prefix name, a name that is not UTF-8

    plan = batches.plan(tmp_path, "canteens", DAY, files_per_batch=50)
    names = [n for b in plan for n in b["names"]]
    assert sorted(names) == sorted(entries)  # each entry once, none twice
    assert len(plan) == math.ceil(len(entries) / 50) == plan[0]["batches"]
    assert [b["index"] for b in plan] == list(range(len(plan)))
    assert all(b["names"] == sorted(b["names"]) for b in plan)
    # about equal work: no batch heavier than another by more than its heaviest single entry
    # a file's bytes count, not a refused entry's (its content is never read); each entry costs as much again
    readable = {f"{c.code}.csv" for c in scenario.canteens} - {n for n in entries if not (folder / n).is_file()
                                                               or (folder / n).is_symlink()}
    weight = {b["index"]: sum(sizes[n] * (n in readable) + batches.FILE_WEIGHT_BYTES for n in b["names"])
              for b in plan}
    assert [b["bytes"] for b in plan] == [weight[b["index"]] for b in plan]
    assert max(weight.values()) - min(weight.values()) <= max(sizes.values()) + batches.FILE_WEIGHT_BYTES
    # the same folder, the same plan (a retried planning task hands out the same batches)
    assert batches.plan(tmp_path, "canteens", DAY, files_per_batch=50) == plan


@pytest.mark.unit
def test_a_plan_for_one_reporter_an_empty_night_and_a_linked_folder(scenario, tmp_path):
    scenario.write_night(DAY, tmp_path, feeds=["canteens"])
    code = scenario.canteens[7].code
    assert [b["names"] for b in batches.plan(tmp_path, "canteens", DAY, code)] == [[f"{code}.csv"]]
    # nothing landed: one empty batch, so that the night's mapped load has a task that succeeds
    [empty] = batches.plan(tmp_path, "assistance", DAY)
    assert (empty["names"], empty["folder"]) == ([], False)
    # the day's folder is a link: refused once, by the first batch
    (tmp_path / "streets").mkdir()
    (tmp_path / "streets" / DAY.isoformat()).symlink_to(tmp_path / "canteens" / DAY.isoformat())
    [linked] = batches.plan(tmp_path, "streets", DAY)
    assert (linked["names"], linked["folder"]) == ([], True)


@pytest.mark.unit
def test_a_province_night_is_tens_of_batches_not_thousands():
    # files and bytes of a night: Taiyuan's (2023-11-07), and Shanxi's (issue 21: about ten times as many)
    taiyuan = {"streets": (45, 1_080_677), "canteens": (312, 1_603_035), "assistance": (1_378, 302_284)}
    shanxi = {feed: (10 * n, 10 * size) for feed, (n, size) in taiyuan.items()}

    def counts(night: dict) -> dict:
        return {feed: batches.batch_count(n, size + n * batches.FILE_WEIGHT_BYTES) for feed, (n, size) in night.items()}

    assert counts(taiyuan) == {"streets": 1, "canteens": 1, "assistance": 1}  # one task a feed, as before batches
    province = counts(shanxi)
    assert all(2 <= c <= batches.MAX_BATCHES for c in province.values()), province  # every feed spread out
    assert 10 <= sum(province.values()) <= 40, province
    assert batches.batch_count(100_000, 10**12) == batches.MAX_BATCHES
    assert batches.batch_count(0, 0) == 1 and batches.batch_count(1, 10**12) == 1  # never more batches than files


def _load_all(wh, landing, source: str, plan: list[dict]) -> list[loader.FileResult]:
    return [r for b in plan for r in batches.load_batch(wh, landing, b)]


@pytest.mark.integration
def test_batches_load_what_the_folder_walk_loaded_and_a_retry_reloads_nothing(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    manifest = messy.write_messy_night(scenario, DAY, tmp_path, full=False)
    night = manifest.for_night()
    plans = {s: batches.plan(tmp_path, s, DAY, files_per_batch=2) for s in ("streets", "canteens", "assistance")}
    assert sum(len(p) for p in plans.values()) > 3  # several batches of the feeds that have several files
    results = {r.path: r for s, plan in plans.items() for r in _load_all(wh, tmp_path, s, plan)}

    assert set(results) == {c.path for c in night}
    for case in night:
        r = results[case.path]
        assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == (
            case.status, case.rows_read, case.rows_loaded, case.rows_rejected), case.kind
    ledger = q(wh, "select file_path, status from audit.load_ledger order by load_id")
    assert sorted(x["file_path"] for x in ledger) == sorted(str(c.path) for c in night)  # one row per file
    loaded = {s: q(wh, f"select count(*) as n from {SPECS[s].table}")[0]["n"] for s in plans}
    assert loaded == {s: sum(c.rows_loaded for c in night if c.source == s) for s in plans}

    # every batch again (Airflow retrying each one): nothing loaded twice, every file a skipped duplicate
    again = [r for s, plan in plans.items() for r in _load_all(wh, tmp_path, s, plan)]
    assert Counter(r.status for r in again) == Counter({"skipped_duplicate": len(night)})
    assert {s: q(wh, f"select count(*) as n from {SPECS[s].table}")[0]["n"] for s in plans} == loaded

    # the revised and late files of the day arrive: the batches of a new plan load them, the revision replaces
    followups = [c for c in messy.write_messy_night(scenario, DAY + date.resolution, tmp_path, full=False).cases
                 if c.phase == "after"]
    revised = next(c for c in followups if c.kind == "revised")
    rerun = {r.path: r for r in _load_all(wh, tmp_path, "canteens", batches.plan(tmp_path, "canteens", DAY,
                                                                                   files_per_batch=2))}
    assert {rerun[c.path].status for c in followups} == {"loaded"}
    assert q(wh, "select status from audit.load_ledger where file_path = %s order by load_id",
             (str(revised.path),)) == [{"status": "replaced"}, {"status": "skipped_duplicate"}, {"status": "loaded"}]
    assert q(wh, "select count(*) as n from raw.canteens_meals where canteen_code = %s and _service_date = %s",
             (revised.reporter, DAY))[0]["n"] == revised.rows_loaded


@pytest.mark.integration
def test_refused_entries_get_one_ledger_row_across_batches_and_retries(fresh_warehouse, scenario, tmp_path):
    wh = fresh_warehouse
    scenario.write_night(DAY, tmp_path, feeds=["canteens"])
    cases = messy.write_landing_oddities(scenario, DAY, tmp_path, tmp_path / "outside")
    plan = batches.plan(tmp_path, "canteens", DAY, files_per_batch=40)
    assert len(plan) == math.ceil((len(scenario.canteens) + 4) / 40)
    for _ in range(2):  # the night, then every batch retried
        for b in plan:
            summary = batches.run_batch(wh, tmp_path, b)
            assert summary["files"] == len(b["names"]) and summary["batch"] == b["index"]

    odd = {str(c.path): c for c in cases}
    odd = {os.fsencode(p).decode("utf-8", "backslashreplace"): c for p, c in odd.items()}
    rows = q(wh, "select file_path, status, error from audit.load_ledger order by load_id")
    by_path = Counter(x["file_path"] for x in rows)
    for path, case in odd.items():
        # refused unread, or quarantined for good (an empty CSV): recorded once however often the night runs
        assert by_path[path] == 1, case.kind
        [row] = [x for x in rows if x["file_path"] == path]
        assert (row["status"], row["error"].split(":")[0]) == ("quarantined", case.quarantine_reason)
    genuine = {c.code for c in scenario.canteens} - {c.reporter for c in cases}
    meals = sum(len(scenario.canteen_meals(c, DAY)) for c in scenario.canteens if c.code in genuine)
    assert q(wh, "select count(*) as n from raw.canteens_meals")[0]["n"] == meals


@pytest.mark.integration
def test_a_failing_file_fails_its_batch_after_the_rest_is_loaded(fresh_warehouse, scenario, tmp_path, monkeypatch):
    wh = fresh_warehouse
    folder = tmp_path / "canteens" / DAY.isoformat()
    a, b, c = scenario.canteens[:3]
    rows = {x.code: messy.write_volume_csv(scenario, folder / f"{x.code}.csv", n, canteen=x)
            for x, n in ((a, 30), (b, 40), (c, 50))}
    [batch] = batches.plan(tmp_path, "canteens", DAY)

    class Failing(readers.Rows):
        def batches(self):
            for item in super().batches():
                if self.path.stem == a.code:
                    raise RuntimeError("disk went away")
                yield item

    real_read = loader.read_file
    monkeypatch.setattr(loader, "read_file", lambda spec, path, encoding=None, **o: Failing(spec, path, encoding, **o))
    with pytest.raises(batches.BatchFailed, match="disk went away"):
        batches.run_batch(wh, tmp_path, batch)
    statuses = {x["reporter_code"]: x["status"] for x in q(wh, "select * from audit.load_ledger")}
    assert statuses == {a.code: "failed", b.code: "loaded", c.code: "loaded"}

    monkeypatch.setattr(loader, "read_file", real_read)  # the retry: the failed file loads, the others are skipped
    summary = batches.run_batch(wh, tmp_path, batch)
    assert summary["statuses"] == {"loaded": 1, "skipped_duplicate": 2}
    assert q(wh, "select count(*) as n from raw.canteens_meals")[0]["n"] == sum(rows.values())


@pytest.mark.unit
def test_the_feed_summary_adds_up_its_batches():
    parts = [{"source": "canteens", "service_date": "2023-11-06", "batch": i, "files": n, "statuses": s,
              "rows_read": n * 10, "rows_loaded": n * 9, "rows_rejected": n, "quarantined": q_, "held": [],
              "failed": []}
             for i, n, s, q_ in ((1, 3, {"loaded": 2, "quarantined": 1}, ["x.csv: bad"]),
                                 (0, 2, {"loaded": 2}, []))]
    assert batches.feed_summary("canteens", "2023-11-06", parts) == {
        "source": "canteens", "service_date": "2023-11-06", "batches": 2, "files": 5,
        "statuses": {"loaded": 4, "quarantined": 1}, "rows_read": 50, "rows_loaded": 45, "rows_rejected": 5,
        "quarantined": ["x.csv: bad"], "held": [], "failed": []}
    skipped = batches.batch_summary(batches.skipped_plan("streets", "2023-11-06")[0], [])
    assert batches.feed_summary("streets", "2023-11-06", [skipped])["skipped"] is True


@pytest.mark.integration
def test_another_city_s_files_load_where_the_reference_data_has_its_reporters(fresh_warehouse, tmp_path, monkeypatch):
    """A province deployment's seeds name its other cities' districts and reporters (scenario.province.seed_rows):
    the loader takes their codes from the seeds, not from Taiyuan's built-in list."""
    from ingest import feeds, landing
    from scenario.province import OTHER_CITIES, CityScenario, seed_rows

    datong = CityScenario(OTHER_CITIES[0])
    datong_canteens = frozenset(c.code for c in datong.canteens)
    districts = frozenset([*(r["district_code"] for r in seed_rows()["districts"]), *feeds.known_districts()])
    monkeypatch.setattr(feeds, "known_districts", lambda: districts)
    real = landing.known_reporters
    monkeypatch.setattr(landing, "known_reporters", lambda s: real(s) | datong_canteens if s == "canteens" else real(s))
    night = datong.write_night(DAY, tmp_path, feeds=["canteens"])
    summary = batches.run_batch(fresh_warehouse, tmp_path, batches.plan(tmp_path, "canteens", DAY)[0])
    assert summary["statuses"] == {"loaded": len(datong.canteens)}
    assert (summary["rows_loaded"], summary["rows_rejected"]) == (len(night.meals), 0)
