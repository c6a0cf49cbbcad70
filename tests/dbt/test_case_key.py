"""The same service_request_id sent by two points is two cases (issue 14): a generated night of the points'
feed, plus a point that numbers its cases like another one (the same ids), loaded and built with dbt.
Expected counts are the distinct (point, id) pairs of the events written here, never read back.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from ingest import loader
from scenario.generator import Scenario
from tests.conftest import create_database, drop_database
from tests.dbt.test_dbt_warehouse import M, dbt, query
from warehouse.bootstrap import bootstrap

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 6)


@pytest.fixture
def warehouse(server_url):
    wh = create_database(server_url, "gov_case")
    bootstrap(wh)
    yield wh
    drop_database(wh)


def test_same_case_id_from_two_points_is_two_cases(warehouse, tmp_path):
    wh = warehouse
    night = Scenario().write_night(DAY, tmp_path / "landing", feeds=("assistance",))
    by_point: dict[str, list[dict]] = {}
    for e in night.events:
        by_point.setdefault(e["point_code"], []).append(e)
    busy = max(by_point, key=lambda p: (sum(e["event"] == "received" for e in by_point[p]), p))
    folder = tmp_path / "landing" / "assistance" / DAY.isoformat()
    quiet = next(p.stem for p in sorted(folder.glob("*.jsonl")) if p.stem not in by_point)  # no events tonight
    # the quiet point's own cases, numbered like the busy point's: the same ids, other times
    copies = [{**e, "point_code": quiet, "event_at": e["event_at"].replace(minute=(e["event_at"].minute + 7) % 60)}
              for e in by_point[busy]]
    (folder / f"{quiet}.jsonl").write_text(
        "".join(json.dumps({**e, "event_at": e["event_at"].isoformat()}, ensure_ascii=False) + "\n" for e in copies),
        encoding="utf-8")
    events = night.events + copies
    results = loader.load_night(wh, tmp_path / "landing", "assistance", DAY)
    assert {r.status for r in results} == {"loaded"} and sum(r.rows_loaded for r in results) == len(events)

    dbt(wh, tmp_path / "target", "build", "--select", "+fct_assistance_case", day=DAY, strict=False)
    cases = query(wh, f"select point_code, service_request_id, received_at from {M}.fct_assistance_case")
    expected = {(e["point_code"], e["service_request_id"]) for e in events}
    shared = {e["service_request_id"] for e in by_point[busy]}
    assert len(cases) == len(expected) == len({e["service_request_id"] for e in events}) + len(shared)
    assert {(c["point_code"], c["service_request_id"]) for c in cases} == expected
    received = [e for e in events if e["event"] == "received"]
    assert sum(c["received_at"] is not None for c in cases) == len(received)
    for sid in shared:  # each point's case keeps its own receipt
        mine = {c["point_code"]: c["received_at"] for c in cases if c["service_request_id"] == sid}
        assert set(mine) == {busy, quiet}
        theirs = {e["point_code"]: e["event_at"] for e in events if e["service_request_id"] == sid
                  and e["event"] == "received"}
        assert mine == {p: theirs.get(p) for p in (busy, quiet)}


def test_raw_duplicate_event_check_keys_on_the_point(warehouse, tmp_path):
    """Two points numbering their cases alike may log an event of the same id in the same second: that is
    two cases, not a doubled delivery, so the raw suite's duplicate-event check must not count it. A point
    that sends the same event twice is still counted."""
    from expectations.runner import run_suites
    from expectations.suites import raw_suites

    wh = warehouse
    night = Scenario().write_night(DAY, tmp_path / "landing", feeds=("assistance",))
    folder = tmp_path / "landing" / "assistance" / DAY.isoformat()
    busy = max({e["point_code"] for e in night.events}, key=lambda p: sum(e["point_code"] == p for e in night.events))
    mine = [e for e in night.events if e["point_code"] == busy]
    quiet = next(p.stem for p in sorted(folder.glob("*.jsonl")) if p.stem != busy and not p.read_bytes())
    twins = [{**e, "point_code": quiet} for e in mine]  # same ids, same events, same seconds
    (folder / f"{quiet}.jsonl").write_text(
        "".join(json.dumps({**e, "event_at": e["event_at"].isoformat()}, ensure_ascii=False) + "\n" for e in twins),
        encoding="utf-8")
    assert {r.status for r in loader.load_night(wh, tmp_path / "landing", "assistance", DAY)} == {"loaded"}

    suites = [s for s in raw_suites(DAY.isoformat()) if s.name == "raw_assistance_case_events"]
    run = run_suites(wh, suites, run_id="case-key-unique", service_date=DAY.isoformat())
    unique = [r for r in run.results if r.expectation == "expect_compound_columns_to_be_unique"]
    assert len(unique) == 1 and unique[0].success, unique
