"""Shared fixtures: a fresh warehouse database per test session on a real PostgreSQL.

TEST_DATABASE_URL (CI: the machine's PostgreSQL) is used when set; otherwise an embedded server
is started under a temporary directory.

`make test` spreads the suite over processes (pytest-xdist, `--dist loadgroup`; tests/README.md): each
module runs whole in one worker (its module fixtures are made once), the groups below keep together
what shares a session fixture or a server-wide resource, and the slowest groups start first.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from warehouse import conninfo

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "False")
os.environ.setdefault("PII_HASH_KEY", "test-key-" + "x" * 24)
# dbt's unit tests take fixed inputs, so their outcome is the same in every build of the suite: they run
# in one build (tests/dbt/conftest.py), which asserts on each of them, and no other dbt build repeats them
os.environ.setdefault("DBT_EXCLUDE_RESOURCE_TYPES", "unit_test")


# --- parallel runs (pytest-xdist) ---------------------------------------------------------------------
# With -n (pyproject's addopts: --dist loadgroup) the scheduler below hands each group of tests to one
# worker: a module by default (its module-scoped fixtures are made once), or a group named here for tests
# that must share a worker though they live in different modules: a session fixture one build makes for
# several modules (tests/dbt/conftest.py's `built`: the mart and grant tests), or a server-wide resource one of
# them changes (PostgreSQL roles are the server's, not a database's: the shared Airflow night gives every
# role a marker password, test_compose one role its password). Keys: a folder ("tests/x/"), a module, or a test.
# (xdist's own `xdist_group` mark does not group with pytest 9's node ids, which xdist 3.8 cannot rename:
# name the group here instead; a mark still works where xdist manages to put it in the node id.)
NODE_GROUPS = {
    # tests/dbt/conftest.py's `built` (one build of two nights) serves these two modules only; every other
    # module of tests/dbt makes databases of its own and runs on any worker
    "tests/dbt/test_dbt_warehouse.py": "dbt_warehouse",
    "tests/dbt/test_dbt_grants.py": "dbt_warehouse",
    # the session fixture `airflow_night` (one `gov-warehouse run` of two nights, tests/support/airflow_night.py),
    # which also sets every role's password
    "tests/end_to_end/test_end_to_end.py": "airflow_night",
    "tests/orchestration/test_airflow_ui.py": "airflow_night",
    "tests/warehouse/test_secrets.py": "airflow_night",
    "tests/deploy/test_compose.py::test_bootstrap_gives_gov_bi_reader_the_password_from_the_environment":
        "airflow_night",
}
# The slowest groups first, longest first (seconds measured with --durations on this machine): a worker
# is handed the next group when it finishes one, so a long group started last would be the run's tail.
SLOW_GROUPS = [
    # end to end, secrets, Airflow UI: one run of two nights (~690 s alone at load 6), the end-to-end re-run
    # (~130 s), the UI's Airflow processes (~150 s): ~1,060 s in all
    "airflow_night",
    "tests/orchestration/test_publish_gate.py",  # nine nights' steps, one after the other: ~1,110 s
    "tests/orchestration/test_airflow_distributed.py",  # ~335 s
    "tests/dbt/test_dbt_day_range.py",  # four builds of three nights: ~470 s
    "dbt_warehouse",
    "tests/orchestration/test_scoped_reruns.py",
    "tests/reports/test_acting_email.py",  # ~100 s
    "tests/orchestration/test_orchestration.py",
    "tests/orchestration/test_publish_watchdog.py",
    "tests/reports/test_notices.py",
    "tests/end_to_end/test_real_world_night.py",
    # the other dbt modules, each a few dbt builds of its own
    "tests/dbt/test_publish_delta.py",
    "tests/dbt/test_province_night.py",
    "tests/dbt/test_days_to_publish.py",
    "tests/dbt/test_late_files.py",
    "tests/dbt/test_case_key.py",
    "tests/dbt/test_party_grid_section.py",
    "tests/dbt/test_dbt_source_freshness.py",
]


def group_of(nodeid: str) -> str:
    """The group a test runs in, from its node id alone (the scheduler sees nothing else)."""
    tail = nodeid.rsplit("]", 1)[-1]
    if "@" in tail:  # an xdist_group mark xdist did put into the node id
        return tail.rsplit("@", 1)[1]
    for key, group in NODE_GROUPS.items():
        if nodeid.startswith(key) and (key.endswith("/") or nodeid[len(key):][:2] in ("", "::")):
            return group
    return nodeid.split("::")[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling (a worker runs a whole group), with the groups of group_of()."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a parallel run the slowest groups come first: the scheduler hands out groups in this order."""
    if not getattr(config.option, "loadgroup", False):  # a plain run keeps pytest's order
        return
    rank = {group: i for i, group in enumerate(SLOW_GROUPS)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))  # stable: a group keeps its order


def worker_shared_dir(tmp_path_factory) -> Path:
    """A directory every worker of this run sees (the run's base temp); the session's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Held by one process of the run at a time (flock; released when the process dies)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def local_dir(tmp_path_factory) -> Path:
    """The session's GOV_LOCAL_DIR (landing zone, outbox, GX, Airflow home), one per worker: no test writes
    into the checkout's .local, and no two processes of a parallel run share one."""
    path = tmp_path_factory.mktemp("local")
    os.environ["GOV_LOCAL_DIR"] = str(path)
    os.environ["LANDING_DIR"] = str(path / "landing")
    os.environ["OUTBOX_DIR"] = str(path / "outbox")
    os.environ.pop("AIRFLOW_HOME", None)
    return path


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory) -> Path:
    """A migrated SQLite Airflow metadata database, copied into each Airflow home (tests/support/airflow_home.py);
    made once per run, by the first worker that needs it (the others wait for it and copy it)."""
    from tests.support import airflow_home

    shared = worker_shared_dir(tmp_path_factory)
    with file_lock(shared / "airflow_template.lock"):
        return airflow_home.ensure_template(shared / "airflow_template")


@pytest.fixture(scope="session")
def server_url(local_dir):
    """Admin URL of a PostgreSQL server (database `postgres`)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from warehouse import embedded

    yield embedded.ensure_running().sqlalchemy_url()
    embedded.stop()


def create_database(server_url: str, prefix: str = "gov_test") -> conninfo.ConnInfo:
    admin = conninfo.parse_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return admin.with_db(name)


def clone_database(source: conninfo.ConnInfo, prefix: str = "gov_test") -> conninfo.ConnInfo:
    """A copy of `source` made by PostgreSQL (CREATE DATABASE ... TEMPLATE: seconds, where loading and building
    it again takes minutes), then bootstrapped again: a database's own grants and settings (who may connect,
    jit) are not part of the copy. Nobody may be connected to `source` meanwhile."""
    from warehouse.bootstrap import bootstrap

    admin = source.with_db("postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{source.dbname}"')
    info = admin.with_db(name)
    bootstrap(info)
    return info


def drop_database(info: conninfo.ConnInfo) -> None:
    admin = info.with_db("postgres")
    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{info.dbname}" with (force)')


@pytest.fixture
def fresh_warehouse(server_url):
    """An empty, bootstrapped warehouse database for one test."""
    from warehouse.bootstrap import bootstrap

    info = create_database(server_url)
    bootstrap(info)
    yield info
    drop_database(info)


@pytest.fixture(scope="session")
def airflow_night(server_url, tmp_path_factory, airflow_db_template):
    """One `gov-warehouse run` of two generated nights through Airflow, read by the end-to-end, secrets and
    Airflow UI tests (tests/support/airflow_night.py; their modules are one group, NODE_GROUPS)."""
    from tests.support.airflow_night import airflow_night as run

    with run(server_url, tmp_path_factory.mktemp("airflow_night"), airflow_db_template) as night:
        yield night
