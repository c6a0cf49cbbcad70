"""WAREHOUSE_URL's parameters reach the server by every path: psycopg (each step's role), SQLAlchemy (what GX is
given) and dbt. Two parameters show it: `application_name` is visible in pg_stat_activity, and `sslmode=require`
fails against this test server, which has no SSL (a dropped sslmode would connect without a word)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import psycopg
import pytest
import sqlalchemy

from orchestration.dbt_run import dbt_env, dbt_executable
from warehouse import connections, settings
from warehouse.conninfo import parse_url

pytestmark = pytest.mark.integration

APP = "probe-from-the-url"
SEEN = "select application_name from pg_stat_activity where pid = pg_backend_pid()"


def with_params(wh, **params):
    return replace(wh, params=tuple(sorted({**dict(wh.params), **params}.items())))


def test_the_parameters_survive_parsing_and_rendering():
    url = "postgresql://gov:p%40ss@db.example:6432/wh?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=bi"
    info = parse_url(url)
    assert (info.host, info.port, info.user, info.password, info.dbname) == ("db.example", 6432, "gov", "p@ss", "wh")
    assert info.param("sslmode") == "verify-full" and info.param("sslrootcert") == "/etc/ca.pem"
    assert parse_url(info.sqlalchemy_url()) == info
    assert "p@ss" not in info.display_url() and "p%40ss" not in info.display_url()
    assert "sslmode=verify-full" in info.display_url()
    assert "sslrootcert=/etc/ca.pem" in info.conninfo() and "application_name=bi" in info.conninfo()
    assert info.libpq_env() == {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem", "PGAPPNAME": "bi"}
    socket = parse_url("postgresql+psycopg://postgres@/gov?host=/run/pg&port=5433&connect_timeout=3")
    assert (socket.host, socket.port, socket.param("connect_timeout")) == ("/run/pg", 5433, "3")
    assert parse_url(socket.sqlalchemy_url()) == socket


def test_psycopg_and_sqlalchemy_connections_carry_the_url_parameters(fresh_warehouse):
    wh = with_params(fresh_warehouse, application_name=APP, sslmode="disable")
    with connections.connect_as(connections.REPORTER, wh) as conn:
        assert conn.execute(SEEN).fetchone()[0] == APP
    # without a name in the URL each role names itself (the server's log and pg_stat_activity say who)
    with connections.connect_as(connections.REPORTER, fresh_warehouse) as conn:
        assert conn.execute(SEEN).fetchone()[0] == "gov:gov_reporter"
    engine = sqlalchemy.create_engine(connections.role_conninfo(connections.CHECKER, wh).sqlalchemy_url())
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text(SEEN)).scalar() == APP
    engine.dispose()
    strict = with_params(fresh_warehouse, sslmode="require")
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        connections.connect_as(connections.REPORTER, strict).close()
    with pytest.raises(sqlalchemy.exc.OperationalError, match="SSL"):
        sqlalchemy.create_engine(strict.sqlalchemy_url()).connect()


def dbt(wh, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **dbt_env(wh), "DBT_SEND_ANONYMOUS_USAGE_STATS": "False"}
    return subprocess.run([dbt_executable(), *args, "--project-dir", str(settings.DBT_PROJECT_DIR),
                           "--profiles-dir", str(settings.DBT_PROJECT_DIR)], env=env, capture_output=True, text=True,
                          cwd=settings.DBT_PROJECT_DIR, timeout=300)


def test_dbt_connects_with_the_url_parameters(fresh_warehouse):
    wh = with_params(fresh_warehouse, application_name=APP, sslmode="disable")
    shown = dbt(wh, "show", "--inline", "select current_setting('application_name') as app", "--output", "json")
    assert shown.returncode == 0, shown.stdout[-2000:] + shown.stderr[-2000:]
    assert f'"app": "{APP}"' in shown.stdout
    strict = dbt(with_params(fresh_warehouse, sslmode="require"), "debug", "--connection")
    assert strict.returncode != 0
    assert "does not support SSL" in strict.stdout + strict.stderr
