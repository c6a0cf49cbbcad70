"""Re-runs scoped by gov_ingest's params, run through Airflow (`airflow dags test` with the run's conf, what
*Trigger* with params starts; README, For data engineers): `feed=canteens` reloads that feed and no other,
`reporter=<code>` that reporter's file and nobody else's.

One night of the scenario, loaded by the night's own step, serves both. Before each re-run, revised files
of several reporters wait in the landing zone (each with its last row cut, as an office re-sending its
day); the re-run must load exactly those in its scope, and the revisions outside it stay unloaded.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from orchestration import airflow_local, steps
from reports import smtp_sink
from scenario.generator import Scenario
from tests.conftest import create_database, drop_database
from tests.support.airflow_home import seed_home
from warehouse import conninfo, settings

pytestmark = pytest.mark.e2e

DAY = date(2023, 11, 7)


class Night:
    def __init__(self, wh: conninfo.ConnInfo, env: dict[str, str], files: dict[str, list[Path]]):
        self.wh, self.env, self.files = wh, env, files
        self.runs = 0

    def rerun(self, **params: str) -> list[tuple[str, str, str]]:
        """gov_ingest for DAY with these params through Airflow; the ledger rows it added (source, reporter, status)."""
        before = self.ledger("select coalesce(max(load_id), 0) from audit.load_ledger")[0][0]
        self.runs += 1  # each re-run its own logical date, as each trigger of the day makes its own run
        logical = airflow_local.logical_date_for(DAY) + timedelta(hours=self.runs)
        conf = json.dumps({"service_date": DAY.isoformat(), **params})
        proc = subprocess.run([airflow_local.airflow_bin(), "dags", "test", "gov_ingest", logical.isoformat(),
                               "--conf", conf], env=self.env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return self.ledger("select source, reporter_code, status from audit.load_ledger where load_id > %s "
                           "order by load_id", (before,))

    def revisable(self, feed: str) -> list[Path]:
        """The feed's files with rows to cut (a point with no case that day sends an empty file)."""
        return [p for p in self.files[feed] if len(p.read_bytes().splitlines()) > 2]

    def ledger(self, sql: str, params=()) -> list[tuple]:
        with psycopg.connect(self.wh.conninfo()) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def night(server_url, tmp_path_factory, airflow_db_template):
    from warehouse.bootstrap import bootstrap

    root = tmp_path_factory.mktemp("scoped_reruns")
    wh = create_database(server_url, "gov_scoped")
    mp = pytest.MonkeyPatch()
    for name, value in {"GOV_LOCAL_DIR": root / "local", "LANDING_DIR": root / "landing",
                        "OUTBOX_DIR": root / "outbox", "WAREHOUSE_URL": wh.sqlalchemy_url()}.items():
        mp.setenv(name, str(value))
    for name in ("AIRFLOW_HOME", "AIRFLOW_CONN_SMTP_DEFAULT"):
        mp.delenv(name, raising=False)
    mp.setenv("GOV_TASK_RETRIES", "0")  # a broken step fails the test at once
    sink = smtp_sink.start(root / "outbox")
    try:
        bootstrap(wh)
        generated = Scenario().write_night(DAY, settings.landing_dir())
        for feed in settings.FEEDS:
            steps.load_feed(wh, feed, DAY.isoformat())
        env = airflow_local.airflow_env(sink.port, wh.sqlalchemy_url())
        seed_home(airflow_db_template, Path(env["AIRFLOW_HOME"]))
        airflow_local.migrate(env)
        files = {feed: sorted(p for p in generated.files if p.parent.parent.name == feed) for feed in settings.FEEDS}
        yield Night(wh, env, files)
    finally:
        sink.stop()
        mp.undo()
        drop_database(wh)


def revise(path: Path) -> str:
    """Re-send the file without its last row (a revision: new content under the same name); its reporter."""
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > 2, path
    path.write_bytes(b"".join(lines[:-1]))
    return path.stem


def test_a_rerun_with_feed_reloads_only_that_feed(night):
    canteen = revise(night.revisable("canteens")[0])
    revise(night.revisable("assistance")[0])  # waiting too, but not in the run's feed

    added = night.rerun(feed="canteens")

    assert {source for source, _, _ in added} == {"canteens"}  # no other feed was looked at
    assert [(r, s) for _, r, s in added if s != "skipped_duplicate"] == [(canteen, "loaded")]
    assert sum(s == "skipped_duplicate" for _, _, s in added) == len(night.files["canteens"]) - 1
    assert night.ledger("select status from audit.load_ledger where reporter_code = %s order by load_id",
                        (canteen,)) == [("replaced",), ("loaded",)]


def test_a_rerun_with_reporter_reloads_only_that_reporter_s_file(night):
    mine, other = (revise(p) for p in night.revisable("canteens")[1:3])
    waiting = revise(night.revisable("assistance")[1])  # another feed's revision

    added = night.rerun(reporter=mine)

    # nothing else: no other file of any feed was read (the other canteen's and the point's revisions wait)
    assert added == [("canteens", mine, "loaded")]
    assert {other, waiting}.isdisjoint(r for _, r, _ in added)
    statuses = night.ledger("select status from audit.load_ledger where reporter_code = %s order by load_id", (mine,))
    assert (statuses[0], statuses[-1]) == (("replaced",), ("loaded",))  # the night's file gave way to the revision
