"""Write-audit-publish: dbt builds the night's marts in `marts_candidate`, where BI cannot see them;
once the checks pass they are published into `marts` in one transaction.

How a night is published: in one transaction, each `marts` table keeps its place and has its rows
replaced (delete, then insert the candidate's rows); a table the candidate no longer has is dropped.
This relies on MVCC rather than on renaming schemas:

- A BI transaction that started before the commit keeps seeing the previous night whole, even in
  REPEATABLE READ and even for a mart it first reads after the publish: its snapshot still sees the
  deleted rows and none of the inserted ones. (The earlier design copied the candidate into a new
  schema and swapped it for `marts`; such a transaction then resolved `marts.x` to the NEW table,
  whose rows were all written after its snapshot, and saw the mart empty.)
- A transaction that starts after the commit sees the new night whole; nobody sees a mix.
- DELETE and INSERT take ROW EXCLUSIVE locks, which conflict with nothing a BI reader can hold
  (SELECT's ACCESS SHARE; gov_bi_reader has no UPDATE privilege, so no row locks either): an open BI
  transaction never holds up the publish, and new BI queries never queue behind a publish.

Only a table whose structure changed between nights (a new model contract) is dropped and created
again, which needs an ACCESS EXCLUSIVE lock: it waits for BI transactions open on that table, and a
REPEATABLE READ transaction spanning that one publish sees that one table as new. A first publish
creates the tables.

Every lock wait is bounded (`lock_timeout`, GOV_PUBLISH_LOCK_TIMEOUT_S): a session holding a
conflicting lock (an engineer's `LOCK TABLE` in psql, another publisher, a long ALTER) makes the
attempt roll back, untouched, and the publish tries again after a delay, up to GOV_PUBLISH_ATTEMPTS
times; then it fails with PublishLockTimeout, which names the sessions that held locks on the marts.
The candidate schema itself is kept, so the next night's incremental dbt build continues from it.
"""

from __future__ import annotations

import logging
import os
import time

import psycopg
from psycopg import sql

from warehouse.connections import PUBLISHER, connect_as
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)
CANDIDATE, PUBLISHED = "marts_candidate", "marts"
TRANSFORMER, BI_READER = "gov_transformer", "gov_bi_reader"
PUBLISH_LOCK = 7261002  # advisory lock: one publisher at a time


def _setting(name: str, default: str) -> float:
    return float(os.environ.get(name, default))


class PublishLockTimeout(RuntimeError):
    """The publish could not take its locks within its bound on any attempt; `marts` is unchanged."""


def candidate_tables(conn: psycopg.Connection) -> list[str]:
    return _tables(conn, CANDIDATE)


def _tables(conn: psycopg.Connection, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select table_name from information_schema.tables where table_schema = %s and table_type = 'BASE TABLE' "
        "order by table_name", (schema,)).fetchall()]


def publish_candidate(wh: ConnInfo, lock_timeout_s: float | None = None, attempts: int | None = None,
                      retry_delay_s: float | None = None) -> list[str]:
    """Replace the rows of every `marts` table by the candidate's, atomically; returns the tables
    published. Raises PublishLockTimeout when every attempt timed out waiting for a lock."""
    lock_timeout_s = _setting("GOV_PUBLISH_LOCK_TIMEOUT_S", "10") if lock_timeout_s is None else lock_timeout_s
    attempts = int(_setting("GOV_PUBLISH_ATTEMPTS", "3")) if attempts is None else attempts
    retry_delay_s = _setting("GOV_PUBLISH_RETRY_DELAY_S", "5") if retry_delay_s is None else retry_delay_s
    for attempt in range(1, attempts + 1):
        try:
            tables = _publish_once(wh, lock_timeout_s)
        except psycopg.errors.LockNotAvailable as err:
            holders = _lock_holders(wh)
            log.warning("publish attempt %d of %d waited more than %ss for a lock (%s); held by: %s",
                        attempt, attempts, lock_timeout_s, str(err).strip(), holders)
            if attempt == attempts:
                raise PublishLockTimeout(
                    f"publish gave up after {attempts} attempts: each waited more than {lock_timeout_s}s for a "
                    f"lock ({str(err).strip()}); `marts` is unchanged. Sessions holding locks on the marts: "
                    f"{holders}. End those sessions (or wait for them) and run publish again.") from err
            time.sleep(retry_delay_s)
            continue
        log.info("published %d tables into %s", len(tables), PUBLISHED)
        return tables
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def _publish_once(wh: ConnInfo, lock_timeout_s: float) -> list[str]:
    with connect_as(PUBLISHER, wh) as conn:
        with conn.transaction():
            conn.execute(f"set local lock_timeout = '{max(1, round(lock_timeout_s * 1000))}ms'")
            conn.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK,))  # bounded by lock_timeout too
            tables = candidate_tables(conn)
            if not tables:
                raise RuntimeError(f"nothing to publish: schema {CANDIDATE} has no tables")
            published = set(_tables(conn, PUBLISHED))
            for table in tables:
                _publish_table(conn, table, exists=table in published)
            for gone in sorted(published - set(tables)):
                conn.execute(sql.SQL("drop table {}").format(sql.Identifier(PUBLISHED, gone)))
    return tables


def _publish_table(conn: psycopg.Connection, table: str, exists: bool) -> None:
    target, source = sql.Identifier(PUBLISHED, table), sql.Identifier(CANDIDATE, table)
    if exists and _structure(conn, PUBLISHED, table) != _structure(conn, CANDIDATE, table):
        log.info("%s.%s changed structure: replacing the table", PUBLISHED, table)
        conn.execute(sql.SQL("drop table {}").format(target))
        exists = False
    if exists:
        conn.execute(sql.SQL("delete from {}").format(target))
    else:
        conn.execute(sql.SQL("create table {} (like {} including all)").format(target, source))
        conn.execute(sql.SQL("grant select on {} to {}").format(target, sql.Identifier(BI_READER)))
    conn.execute(sql.SQL("insert into {} select * from {}").format(target, source))
    comment = _comment(conn, CANDIDATE, table)
    if comment != _comment(conn, PUBLISHED, table):
        conn.execute(sql.SQL("comment on table {} is {}").format(target, sql.Literal(comment)))


def _structure(conn: psycopg.Connection, schema: str, table: str) -> list[tuple]:
    """Columns (name, type, not null, comment) and constraints: what `like ... including all` copies."""
    relation = sql.Identifier(schema, table).as_string(conn)
    columns = conn.execute(
        "select attname, format_type(atttypid, atttypmod), attnotnull, col_description(attrelid, attnum) "
        "from pg_attribute where attrelid = %s::regclass and attnum > 0 and not attisdropped order by attnum",
        (relation,)).fetchall()
    constraints = conn.execute(
        "select contype, pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass order by 1, 2",
        (relation,)).fetchall()
    return [*columns, *constraints]


def _comment(conn: psycopg.Connection, schema: str, table: str) -> str | None:
    return conn.execute("select obj_description(%s::regclass, 'pg_class')",
                        (sql.Identifier(schema, table).as_string(conn),)).fetchone()[0]


def _lock_holders(wh: ConnInfo) -> str:
    """Other sessions holding locks on the marts, the candidate or the publish lock (for the message)."""
    with connect_as(PUBLISHER, wh) as conn:
        rows = conn.execute(
            """select l.pid, coalesce(a.usename, '?'), coalesce(nullif(a.application_name, ''), '-'),
                      coalesce(c.relname, 'publish lock'), l.mode
               from pg_locks l
               left join pg_class c on c.oid = l.relation
               left join pg_namespace n on n.oid = c.relnamespace
               left join pg_stat_activity a on a.pid = l.pid
               where l.granted and l.pid <> pg_backend_pid() and l.database = (
                         select oid from pg_database where datname = current_database())
                 and (n.nspname in (%s, %s) or (l.locktype = 'advisory' and l.objid = %s))
               order by l.pid, 4""",
            (PUBLISHED, CANDIDATE, PUBLISH_LOCK)).fetchall()
    if not rows:
        return "none any more"
    return "; ".join(f"pid {pid} (user {user}, application {app}) holds {mode} on {rel}"
                     for pid, user, app, rel, mode in rows)
