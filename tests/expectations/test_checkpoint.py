"""One GX checkpoint per validation task: every declared check lands in audit.dq_results with GX's severity,
and the shared Data Docs site lists the night once, under the Airflow run id, whichever machine ran it.

Expected counts and severities come from the suites' declarations (expectations/suites.py), read here
without the runner; the site is read from its index page as GX wrote it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from great_expectations.expectations.metadata_types import FailureSeverity

from expectations.suites import Suite, raw_suites
from ingest import loader
from orchestration import steps
from scenario.generator import Scenario
from tests.conftest import create_database, drop_database
from warehouse import settings

pytestmark = pytest.mark.integration

DAY, EMPTY_DAY = date(2023, 11, 6), date(2023, 11, 7)
STORED = {FailureSeverity.CRITICAL: "fail", FailureSeverity.WARNING: "warn"}  # what the publish step reads


@pytest.fixture(scope="module")
def night(server_url, local_dir, tmp_path_factory):
    """A warehouse with one night of every feed loaded, and a GX store of its own (the shared volume)."""
    from warehouse.bootstrap import bootstrap

    wh = create_database(server_url, "gov_gx")
    bootstrap(wh)
    landing = tmp_path_factory.mktemp("gx_landing")
    Scenario().write_night(DAY, landing)
    for feed in settings.FEEDS:
        loader.load_night(wh, landing, feed, DAY)
    mp = pytest.MonkeyPatch()
    mp.setenv("GOV_GX_DIR", str(tmp_path_factory.mktemp("gx_shared")))
    yield wh
    mp.undo()
    drop_database(wh)


def declared(suites: list[Suite]) -> Counter:
    return Counter((s.name, c.expectation.expectation_type, getattr(c.expectation, "column", None),
                    STORED[c.expectation.severity]) for s in suites for c in s.checks)


def stored(wh, run_id: str, day: date | None = None) -> Counter:
    with psycopg.connect(wh.conninfo()) as conn:
        rows = conn.execute("select suite, expectation, column_name, severity from audit.dq_results "
                            "where run_id = %s and (%s::date is null or service_date = %s)",
                            (run_id, day, day)).fetchall()
    return Counter(rows)


def index_rows(docs: Path) -> list[tuple[str, str, str, str]]:
    """(run name, suite, result page, suite page) of every validation the site's index lists (a table row each)."""
    page = (docs / "index.html").read_text(encoding="utf-8")
    out = []
    for row in page.split("{'validation_success'")[1:]:
        field = {k: re.search(rf"'{k}': '([^']*)'", row).group(1)
                 for k in ("run_name", "_expectation_suite_name_sort", "_table_row_link_path")}
        suite_page = re.search(r'href="(expectations/[^"]*)"', row).group(1)
        out.append((field["run_name"], field["_expectation_suite_name_sort"], field["_table_row_link_path"],
                    suite_page))
    return out


def docs_dir() -> Path:
    return Path(os.environ["GOV_GX_DIR"]) / "data_docs"


def test_a_checkpoint_records_every_declared_check_with_gx_severity(night):
    run_id = "scheduled__2023-11-06T18:00:00+00:00"
    expected = declared(raw_suites(DAY.isoformat()))
    assert {"fail", "warn"} <= {sev for *_, sev in expected}  # both severities are exercised
    outcome = steps.validate_raw(night, DAY.isoformat(), run_id=run_id)
    assert outcome["checks"] == sum(expected.values())
    assert stored(night, run_id) == expected
    # a clean night: no blocking check failed
    assert outcome["failed"] == []


def test_one_data_docs_run_per_night_under_the_run_id_even_after_a_retry(night):
    run_id = "scheduled__2023-11-06T19:00:00+00:00"
    suites = {s.name for s in raw_suites(DAY.isoformat())}
    steps.validate_raw(night, DAY.isoformat(), run_id=run_id)
    steps.validate_raw(night, DAY.isoformat(), run_id=run_id)  # Airflow's retry of the same task
    listed = [row for row in index_rows(docs_dir()) if row[0] == run_id]
    assert sorted(suite for _, suite, *_ in listed) == sorted(suites)  # once each, not twice
    # every row's result page and suite page are on the site
    assert all((docs_dir() / unquote(link)).is_file() for row in listed for link in row[2:])
    assert stored(night, run_id) == declared(raw_suites(DAY.isoformat()))  # the retry replaced, not added
    assert steps._data_docs() == docs_dir() / "index.html"


def test_one_checkpoint_covers_several_days(night):
    from expectations.runner import run_checkpoint

    run_id = "manual__backfill"
    days = [DAY.isoformat(), EMPTY_DAY.isoformat()]
    run = run_checkpoint(night, "raw", {d: raw_suites(d) for d in days}, run_id=run_id)
    for d in days:
        assert stored(night, run_id, date.fromisoformat(d)) == declared(raw_suites(d))
    # each day was checked against its own declaration: the served-day check passes on the loaded night and
    # finds nothing to fail on the empty one, whose empty-feed check warns
    by_day = {(r.service_date, r.suite, r.expectation, r.column): r for r in run.results}
    assert by_day[(days[0], "raw_canteens_meals", "expect_table_row_count_to_be_between", None)].success
    assert not by_day[(days[1], "raw_canteens_meals", "expect_table_row_count_to_be_between", None)].success
    assert len([row for row in index_rows(docs_dir()) if row[0] == run_id]) == 2 * len(raw_suites(days[0]))


MACHINE = """
import sys
from orchestration import steps
from warehouse.conninfo import parse_url
steps.validate_raw(parse_url(sys.argv[1]), sys.argv[2], run_id=sys.argv[3])
"""


def test_two_machines_share_one_site_without_a_lock(night, tmp_path):
    """Two workers, each with its own local disk, validate at the same time; only GOV_GX_DIR is shared.
    The checker's password (a marker here) is written to no file of the shared store."""
    marker = "Pw-marker-7f3a91"
    procs = []
    for n in (1, 2):
        env = {**os.environ, "GOV_LOCAL_DIR": str(tmp_path / f"machine{n}"), "GOV_CHECKER_PASSWORD": marker,
               "PYTHONPATH": str(settings.REPO_ROOT)}
        env.pop("GOV_GX_WAREHOUSE_URL", None)
        procs.append(subprocess.Popen([sys.executable, "-c", MACHINE, night.sqlalchemy_url(), DAY.isoformat(),
                                       f"machine{n}__run"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all(marker not in out for out in outputs)
    suites = sorted(s.name for s in raw_suites(DAY.isoformat()))
    for n in (1, 2):
        assert sum(stored(night, f"machine{n}__run").values()) == sum(declared(raw_suites(DAY.isoformat())).values())
    # an index built while the other machine was still writing may lack that machine's newest pages until the
    # next build: the next night's build lists both machines' runs in full
    steps.validate_raw(night, DAY.isoformat(), run_id="next_night")
    listed = index_rows(docs_dir())
    for n in (1, 2):
        assert sorted(s for run, s, *_ in listed if run == f"machine{n}__run") == suites
    shared = Path(os.environ["GOV_GX_DIR"])
    assert [p for p in shared.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()] == []
    assert list(tmp_path.rglob("great_expectations.yml")) == []  # neither machine wrote a GX project
