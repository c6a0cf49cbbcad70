"""dbt's own source freshness (the sources' `loaded_at_query`: the newest accepted load in audit.load_ledger).

A feed whose newest load is two nights old fails `dbt source freshness` (ERROR STALE, non-zero exit), one a
night and a half old warns, a fresh one passes; what dbt reads is the ledger's load time of the feed's newest
service day (a reload of an older day does not freshen it), not the service day's own date. In the nightly
path the same dbt result only warns (orchestration.dbt_tasks' SourceFreshnessOperator): a missing feed never
blocks publish; a freshness query that cannot run still fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from orchestration import dbt_tasks
from orchestration.dbt_run import dbt_env
from warehouse import settings

pytestmark = pytest.mark.integration

# hours since each feed's newest accepted load (warn_after 30 h, error_after 54 h in the sources' YAML)
LOADED_HOURS_AGO = {"streets": 2, "assistance": 40, "canteens": 80}
EXPECTED = {"source.gov_warehouse.streets.compounds": "pass", "source.gov_warehouse.assistance.case_events": "warn",
            "source.gov_warehouse.canteens.meals": "error", "source.gov_warehouse.audit.load_ledger": "pass"}


def _ledger(wh) -> None:
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        for source, hours in LOADED_HOURS_AGO.items():
            # the accepted load, and a newer file of the same feed that was rejected (it loaded nothing)
            conn.execute(
                "insert into audit.load_ledger (source, reporter_code, service_date, file_path, rows_read, "
                "rows_loaded, status, started_at, finished_at) values "
                "(%s, 'X1', current_date - 3, %s, 5, 5, 'loaded', now() - make_interval(hours => %s), "
                " now() - make_interval(hours => %s)), "
                "(%s, 'X2', current_date - 1, %s, 0, 0, 'rejected', now() - interval '1 hour', now())",
                (source, f"{source}/a.csv", hours, hours, source, f"{source}/b.csv"))
            # an older service day reloaded an hour ago (a backfill, a late revision): the feed's newest night is
            # still as old as its own load, so this must not make the feed look fresh
            conn.execute(
                "insert into audit.load_ledger (source, reporter_code, service_date, file_path, rows_read, "
                "rows_loaded, status, started_at, finished_at) values "
                "(%s, 'X3', current_date - 20, %s, 4, 4, 'loaded', now() - interval '1 hour', now())",
                (source, f"{source}/old.csv"))


def test_a_feed_without_a_recent_load_fails_dbt_source_freshness(fresh_warehouse, tmp_path):
    _ledger(fresh_warehouse)
    target = tmp_path / "target"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "source", "freshness", "--project-dir",
         str(settings.DBT_PROJECT_DIR), "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path",
         str(target), "--log-path", str(target / "logs")],
        env={**os.environ, **dbt_env(fresh_warehouse), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"},
        cwd=settings.DBT_PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "ERROR STALE freshness of canteens.meals" in proc.stdout
    results = json.loads((target / "sources.json").read_text())["results"]
    assert {r["unique_id"]: r["status"] for r in results} == EXPECTED
    ages = {r["unique_id"]: r["max_loaded_at_time_ago_in_s"] / 3600 for r in results}
    assert round(ages["source.gov_warehouse.canteens.meals"]) == 80  # the load's time, not the rejected file's


def _freshness_in_process(wh, monkeypatch, select: str, target: Path):
    from dbt.cli.main import dbtRunner

    for key, value in dbt_env(wh).items():
        monkeypatch.setenv(key, value)
    return dbtRunner().invoke(["source", "freshness", "--select", select, "--project-dir",
                               str(settings.DBT_PROJECT_DIR), "--profiles-dir", str(settings.DBT_PROJECT_DIR),
                               "--target-path", str(target)])


def test_the_nightly_source_task_warns_on_a_stale_feed_and_fails_on_a_broken_query(fresh_warehouse, monkeypatch,
                                                                                 tmp_path):
    from cosmos import ProfileConfig

    _ledger(fresh_warehouse)
    operator = dbt_tasks.SourceFreshnessOperator(
        task_id="canteens_meals_source", project_dir=str(settings.DBT_PROJECT_DIR),
        profile_config=ProfileConfig(profile_name=dbt_tasks.PROFILE_NAME, target_name=dbt_tasks.TARGET_NAME,
                                     profiles_yml_filepath=settings.DBT_PROJECT_DIR / "profiles.yml"))
    stale = _freshness_in_process(fresh_warehouse, monkeypatch, "source:canteens.meals", tmp_path)
    assert not stale.success  # what dbt says of it: ERROR STALE ...
    operator.handle_exception_dbt_runner(stale)  # ... and the night goes on
    assert dbt_tasks.stale_sources(stale.result.results) == ["canteens.meals: error"]

    with psycopg.connect(fresh_warehouse.conninfo(), autocommit=True) as conn:
        conn.execute("revoke select on audit.load_ledger from gov_transformer")
    broken = _freshness_in_process(fresh_warehouse, monkeypatch, "source:streets.compounds", tmp_path)
    assert dbt_tasks.stale_sources(broken.result.results) is None  # a runtime error, not staleness
    with pytest.raises(Exception, match="streets|compounds|permission"):
        operator.handle_exception_dbt_runner(broken)
