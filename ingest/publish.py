"""Write-audit-publish: dbt builds the night's marts in `marts_candidate`, where BI cannot see them;
once the checks pass they are published into `marts` in one transaction.

Publishing copies the candidate tables (structure, constraints, comments and rows) into a fresh
schema and swaps it for `marts` atomically: BI sees the previous night or the new one, never a mix,
and a blocked night leaves `marts` as it was. The candidate schema itself is kept, so the next
night's incremental dbt build continues from it.
"""

from __future__ import annotations

import logging

import psycopg

from ingest.config import ConnInfo

log = logging.getLogger(__name__)
CANDIDATE, PUBLISHED = "marts_candidate", "marts"
TRANSFORMER, BI_READER = "gov_transformer", "gov_bi_reader"


def candidate_tables(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = %s and table_type = 'BASE TABLE' "
        "order by table_name", (CANDIDATE,)).fetchall()]


def publish_candidate(wh: ConnInfo) -> list[str]:
    """Copy every candidate table into `marts` atomically; returns the tables published."""
    with psycopg.connect(wh.conninfo()) as conn:
        conn.execute(f"set role {TRANSFORMER}")
        with conn.transaction():
            # one publisher at a time; BI keeps reading the old schema until the commit
            conn.execute("select pg_advisory_xact_lock(7261002)")
            tables = candidate_tables(conn)
            if not tables:
                raise RuntimeError(f"nothing to publish: schema {CANDIDATE} has no tables")
            conn.execute("drop schema if exists marts_next cascade")
            conn.execute("create schema marts_next")
            for t in tables:
                conn.execute(f'create table marts_next."{t}" (like {CANDIDATE}."{t}" including all)')
                conn.execute(f'insert into marts_next."{t}" select * from {CANDIDATE}."{t}"')
                comment = conn.execute("select obj_description(%s::regclass, 'pg_class')",
                                       (f'{CANDIDATE}."{t}"',)).fetchone()[0]
                if comment:
                    conn.execute(f'comment on table marts_next."{t}" is {_literal(conn, comment)}')
            conn.execute("drop schema if exists marts_retired cascade")
            conn.execute(f"alter schema {PUBLISHED} rename to marts_retired")
            conn.execute(f"alter schema marts_next rename to {PUBLISHED}")
            conn.execute(f"grant usage on schema {PUBLISHED} to {BI_READER}")
            conn.execute(f"grant select on all tables in schema {PUBLISHED} to {BI_READER}")
            conn.execute("drop schema marts_retired cascade")
    log.info("published %d tables into %s", len(tables), PUBLISHED)
    return tables


def _literal(conn: psycopg.Connection, text: str) -> str:
    from psycopg import sql

    return sql.Literal(text).as_string(conn)
