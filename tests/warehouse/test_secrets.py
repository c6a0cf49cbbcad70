"""No secret anywhere, and each step by its own role: the session's run of two nights through Airflow
(`gov-warehouse run`, tests/support/airflow_night.py) had a marker password in the administrator's URL and
in every role's password variable (trust authentication accepts any password, so each is a string to look
for, set on real roles by the bootstrap), and a marker PII key. Afterwards no file the run produced (logs,
GX project, dbt target and logs, Airflow's home, the outbox) and no text column of the warehouse holds any
of them; every connection during the run logged in as the role of its step, and the administrator only for
the bootstrap.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import psycopg
import pytest

from ingest import loader
from scenario.generator import Scenario
from tests.conftest import create_database, drop_database
from tests.support.airflow_night import AUDIT_TABLES, DAYS
from warehouse import connections, conninfo, credentials, settings

pytestmark = pytest.mark.e2e

DAY = date(2023, 11, 7)
STEP_ROLES = {connections.LOADER, connections.TRANSFORMER, connections.CHECKER, connections.PUBLISHER, connections.REPORTER,
              connections.BI_READER}
# who may write which audit table (recorded by the run's triggers, as the session's login role)
WRITERS = {"load_ledger": {connections.LOADER}, "rejected_rows": {connections.LOADER}, "dq_results": {connections.CHECKER},
           "publish_log": {connections.PUBLISHER}, "summary_sends": {connections.REPORTER}}


@pytest.fixture(scope="module")
def night(airflow_night):
    assert set(WRITERS) == set(AUDIT_TABLES)  # every audit table the run's trigger watched has its writers here
    return {"wh": airflow_night.wh, "local": airflow_night.local, "markers": airflow_night.markers,
            "proc": airflow_night.proc, "started": airflow_night.started, "connections": airflow_night.connections,
            "writes": airflow_night.writes}


def _modified_since(path: Path, started: float) -> bool:
    try:
        return path.stat().st_mtime >= started
    except OSError:  # gone since the walk listed it (another process's temporary file)
        return False


def produced_files(night) -> list[Path]:
    """Every file under the run's local directory, and every file of the checkout written during the run."""
    files = [p for p in night["local"].rglob("*") if p.is_file()]
    skip = {".git", ".venv", ".local", "node_modules"}
    for root, dirs, names in os.walk(settings.REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in skip]
        files += [Path(root) / n for n in names if _modified_since(Path(root) / n, night["started"])]
    return files


def test_the_night_published_and_sent(night):
    with psycopg.connect(night["wh"].conninfo()) as conn:
        # the runs' own rows (tests reading the same warehouse may publish again under other run ids)
        assert sorted(conn.execute("select service_date, status from audit.publish_log where run_id like 'local__%'")
                      .fetchall()) == [(day, "published") for day in DAYS]
        sent = conn.execute("select distinct service_date from audit.summary_sends").fetchall()
        assert sorted(sent) == [(day,) for day in DAYS]
    assert list((night["local"] / "outbox").glob("*.eml"))


def test_no_secret_in_any_file_the_run_produced(night):
    files = produced_files(night)
    kinds = {p.relative_to(night["local"]).parts[0] for p in files if night["local"] in p.parents}
    assert {"logs", "gx", "dbt_target", "outbox", "airflow"} <= kinds  # the places looked into exist
    found = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += [(str(path), name) for name, marker in night["markers"].items() if marker.encode() in data]
    assert found == []
    output = night["proc"].stdout + night["proc"].stderr
    assert [name for name, marker in night["markers"].items() if marker in output] == []


def test_gx_writes_no_configuration_and_no_url(night):
    # the GX context is ephemeral (expectations/gx_context.py): its connection is never written anywhere;
    # what it does write (validation results, Data Docs) names no server
    assert list(night["local"].rglob("great_expectations.yml")) == []
    written = [p for p in (night["local"] / "gx").rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in written) and any(p.name == "index.html" for p in written)
    assert [p for p in written if b"postgresql" in p.read_bytes()] == []


def test_no_secret_in_any_text_column(night):
    wh = night["wh"]
    with psycopg.connect(wh.conninfo()) as conn:
        columns = conn.execute("""
            select table_schema, table_name, column_name from information_schema.columns
            where table_schema not in ('pg_catalog', 'information_schema')
              and data_type in ('text', 'character varying', 'jsonb', 'json', 'character')""").fetchall()
        assert len(columns) > 50
        found = []
        for schema, table, column in columns:
            for name, marker in night["markers"].items():
                hit = conn.execute(f'select 1 from "{schema}"."{table}" where "{column}"::text like %s limit 1',
                                   (f"%{marker}%",)).fetchone()
                if hit:
                    found.append((schema, table, column, name))
    assert found == []


def test_every_step_logged_in_as_its_own_role(night):
    seen = night["connections"]
    users = {user for user, _ in seen}
    assert STEP_ROLES <= users, seen
    admin = night["wh"].user
    # the administrator connected only to bootstrap; nothing else logged in
    assert {app for user, app in seen if user == admin} <= {"gov:bootstrap"}
    assert users <= STEP_ROLES | {admin}
    writes = night["writes"]
    assert {t for t, _, _ in writes} >= {"load_ledger", "dq_results", "publish_log", "summary_sends"}
    for table, login, acting in writes:
        assert acting == "none" and login in WRITERS[table], (table, login, acting)  # no SET ROLE either


def test_a_run_without_pii_hash_key_refuses_before_reading_a_file(server_url, tmp_path, monkeypatch):
    wh = create_database(server_url, "gov_nokey")
    try:
        from warehouse.bootstrap import bootstrap

        bootstrap(wh)
        Scenario().write_night(DAY, tmp_path, feeds=("canteens",))
        monkeypatch.delenv("PII_HASH_KEY", raising=False)
        monkeypatch.setenv("WAREHOUSE_URL", wh.sqlalchemy_url())
        monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path / "local"))
        with pytest.raises(credentials.MissingSecret, match="PII_HASH_KEY.*secrets.token_urlsafe"):
            loader.load_night(wh, tmp_path, "canteens", DAY)
        with psycopg.connect(wh.conninfo()) as conn:
            assert conn.execute("select count(*) from audit.load_ledger").fetchone() == (0,)
        assert not (tmp_path / "local").exists()  # no key was made up
    finally:
        drop_database(wh)


def test_airflow_processes_get_no_administrator_password(tmp_path, monkeypatch):
    from orchestration import airflow_local

    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("GOV_BOOTSTRAP", raising=False)
    env = airflow_local.airflow_env(None, "postgresql+psycopg://postgres:AdminPw-x1@db.example:5432/gov_warehouse")
    assert "AdminPw-x1" not in "".join(env.values())
    wh = conninfo.parse_url(env["WAREHOUSE_URL"])
    assert (wh.user, wh.password, wh.host, wh.dbname) == ("postgres", "", "db.example", "gov_warehouse")
    assert env["GOV_BOOTSTRAP"] == "verify"  # the night's bootstrap task checks, the caller bootstrapped
