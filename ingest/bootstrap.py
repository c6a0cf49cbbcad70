"""Create roles, schemas and the raw/audit tables; safe to run any number of times."""

from __future__ import annotations

from importlib import resources

import psycopg

from ingest.config import ConnInfo


def bootstrap(wh: ConnInfo) -> None:
    sql = resources.files("ingest").joinpath("sql/bootstrap.sql").read_text(encoding="utf-8")
    sql = sql.replace("current_database_placeholder", f'"{wh.dbname}"')
    with psycopg.connect(wh.conninfo(), autocommit=True) as conn:
        # roles are cluster-wide: serialise concurrent bootstraps of several databases
        conn.execute("select pg_advisory_lock(7261001)")
        try:
            conn.execute(sql)
        finally:
            conn.execute("select pg_advisory_unlock(7261001)")
