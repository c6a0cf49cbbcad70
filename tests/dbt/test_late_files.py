"""A late file shows as received late: a canteen's file that missed its night and came with a later
delivery is, after the reload's incremental build, received and late in mart_source_freshness (and in the
ledger lines the officials' email counts as 迟报), while its night showed it missing.

Lateness is measured on the ledger's clock (audit.load_ledger.started_at): the reporter's first accepted
file loaded more than an hour after its source's first file of that service day. The test does not wait an
hour: once the night is loaded its ledger rows are moved two hours back, as if it had run then.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from ingest import loader
from reports.send import ledger_files
from scenario.generator import Scenario
from tests.support.dbt_cli import dbt

pytestmark = pytest.mark.integration

DAY = date(2023, 11, 7)


# the mart and what it is built from (seeds, the ledger's staging view), with the tests of those alone
# (cautious: a test that also reads a model left out of the selection is not run)
BUILD = ("build", "--select", "+mart_source_freshness", "--indirect-selection", "cautious")


def freshness(wh) -> dict[str, tuple[bool, bool, bool]]:
    """reporter -> (received, late, missing) of the day's canteens in the candidate mart dbt built."""
    with psycopg.connect(wh.conninfo()) as conn:
        rows = conn.execute("select reporter_code, received, late, missing from marts_candidate.mart_source_freshness "
                            "where source = 'canteens' and service_date = %s", (DAY,)).fetchall()
    return {code: (received, late, missing) for code, received, late, missing in rows}


def test_a_file_loaded_after_its_night_is_received_late(fresh_warehouse, tmp_path):
    wh = fresh_warehouse
    landing, held_back = tmp_path / "landing", tmp_path / "not_yet_sent"
    night = Scenario().write_night(DAY, landing, feeds=("canteens",))
    late_file = night.files[0]
    late_code = late_file.stem  # a canteen's file is named by its code
    assert late_code.startswith("CT") and sum(p.stem == late_code for p in night.files) == 1
    held_back.mkdir()
    late_file.rename(held_back / late_file.name)

    # the night: every canteen but one; built as the nightly run builds (only what its day can change)
    on_time = loader.load_night(wh, landing, "canteens", DAY)
    assert len(on_time) == len(night.files) - 1 and {r.status for r in on_time} == {"loaded"}
    dbt(wh, tmp_path / "target", *BUILD, day=DAY)
    at_night = freshness(wh)
    assert at_night[late_code] == (False, False, True)  # missing on its night
    others = set(at_night) - {late_code}
    assert others and {at_night[c] for c in others} == {(True, False, False)}

    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        conn.execute("update audit.load_ledger set started_at = started_at - interval '2 hours' where service_date = %s",
                     (DAY,))
    # the file arrives with a later delivery and is reloaded for its own day, then the day is built again
    (held_back / late_file.name).rename(late_file)
    [reload] = loader.load_night(wh, landing, "canteens", DAY, reporter=late_code)
    assert reload.status == "loaded"
    dbt(wh, tmp_path / "target", *BUILD, day=DAY)

    after = freshness(wh)
    assert after[late_code] == (True, True, False)  # received, late, no longer missing
    assert {after[c] for c in others} == {(True, False, False)}  # the night's own files are not late
    # the officials' email counts the night's late reporters from the same ledger rule
    assert {(f.reporter_code, f.late) for f in ledger_files(wh, DAY)} == {(late_code, True)} | {(c, False) for c in others}
