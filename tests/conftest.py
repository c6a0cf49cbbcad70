"""Shared fixtures: a fresh warehouse database per test session on a real PostgreSQL.

TEST_DATABASE_URL (CI: the machine's PostgreSQL) is used when set; otherwise an embedded server
is started under a temporary directory.
"""

from __future__ import annotations

import os
import uuid
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


@pytest.fixture(scope="session")
def local_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("local")
    os.environ["GOV_LOCAL_DIR"] = str(path)
    os.environ["LANDING_DIR"] = str(path / "landing")
    os.environ["OUTBOX_DIR"] = str(path / "outbox")
    os.environ.pop("AIRFLOW_HOME", None)
    return path


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory) -> Path:
    """A migrated SQLite Airflow metadata database, copied into each Airflow home (tests/support/airflow_home.py)."""
    from tests.support import airflow_home

    return airflow_home.make_template(tmp_path_factory.mktemp("airflow_template"))


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
def pipeline_warehouse(server_url, local_dir):
    """A warehouse database shared by the end-to-end tests, exported as WAREHOUSE_URL."""
    from warehouse.bootstrap import bootstrap

    info = create_database(server_url, "gov_e2e")
    bootstrap(info)
    os.environ["WAREHOUSE_URL"] = info.sqlalchemy_url()
    yield info
    os.environ.pop("WAREHOUSE_URL", None)
    drop_database(info)
