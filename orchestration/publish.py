"""Write-audit-publish: dbt builds the night's marts in `marts_candidate`, where BI cannot see them;
once the checks pass they are published into `marts` in one transaction.

How a night is published: in one transaction, each `marts` table keeps its place and has its rows
replaced (delete, then insert the candidate's rows); a table the candidate no longer has is dropped.
Only what changed moves (O(night), not O(history)): every incremental mart's dbt merge records the keys
it rewrote in audit.mart_changes, in its own transaction (dbt_project/macros/publish_delta.sql); the
publish replaces the rows of the keys recorded since that table's last publish (audit.publish_state
keeps the candidate table it came from and the publish's snapshot: a change the snapshot did not see is
pending). A table dbt made anew (a `table` model such as the small dims, a full refresh: another
candidate table than last time) or one never published is copied whole. The transaction is REPEATABLE
READ, so the candidate's rows, the recorded changes and the snapshot stored are one state of the candidate.
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

import json
import logging
import time

import psycopg
from psycopg import sql

from warehouse import settings
from warehouse.connections import PUBLISHER, connect_as
from warehouse.conninfo import ConnInfo

log = logging.getLogger(__name__)
CANDIDATE, PUBLISHED = "marts_candidate", "marts"
TRANSFORMER, BI_READER = "gov_transformer", "gov_bi_reader"
PUBLISH_LOCK = 7261002  # advisory lock: one publisher at a time


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
    """Make every `marts` table equal to the candidate's, atomically (moving the rows of the keys changed
    since its last publish, or every row); returns the tables published. Raises PublishLockTimeout when
    every attempt timed out waiting for a lock."""
    lock_timeout_s = settings.number("GOV_PUBLISH_LOCK_TIMEOUT_S", 10) if lock_timeout_s is None else lock_timeout_s
    attempts = int(settings.number("GOV_PUBLISH_ATTEMPTS", 3)) if attempts is None else attempts
    retry_delay_s = settings.number("GOV_PUBLISH_RETRY_DELAY_S", 5) if retry_delay_s is None else retry_delay_s
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
    with connect_as(PUBLISHER, wh, autocommit=True) as conn:
        conn.execute(f"set lock_timeout = '{max(1, round(lock_timeout_s * 1000))}ms'")
        # one publisher at a time, taken before the transaction's snapshot (so this publish sees the last
        # one's rows); bounded by lock_timeout too; released when the connection closes
        conn.execute("select pg_advisory_lock(%s)", (PUBLISH_LOCK,))
        # one snapshot for every read: the candidate's rows, the recorded changes and the snapshot stored
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            snapshot = conn.execute("select pg_current_snapshot()::text").fetchone()[0]
            tables = candidate_tables(conn)
            if not tables:
                raise RuntimeError(f"nothing to publish: schema {CANDIDATE} has no tables")
            published = set(_tables(conn, PUBLISHED))
            state = {t: (oid, snap) for t, oid, snap in conn.execute(
                "select table_name, candidate_oid, snapshot::text from audit.publish_state").fetchall()}
            moves = [_publish_table(conn, table, table in published, state.get(table)) for table in tables]
            for gone in sorted(published - set(tables)):
                conn.execute(sql.SQL("drop table {}").format(sql.Identifier(PUBLISHED, gone)))
            _record_state(conn, tables, snapshot)
    log.info("moved: %s", "; ".join(moves))
    return tables


def _publish_table(conn: psycopg.Connection, table: str, exists: bool, last: tuple[int, str] | None) -> str:
    """Publish one table: the rows of the keys changed since its last publish when the candidate table is
    the one it was last published from (an incremental mart, see _changed_keys); otherwise every row."""
    target, source = sql.Identifier(PUBLISHED, table), sql.Identifier(CANDIDATE, table)
    if exists and _structure(conn, PUBLISHED, table) != _structure(conn, CANDIDATE, table):
        log.info("%s.%s changed structure: replacing the table", PUBLISHED, table)
        conn.execute(sql.SQL("drop table {}").format(target))
        exists = False
    changed = _changed_keys(conn, table, last) if exists else None
    if changed is not None:
        moved = _publish_keys(conn, table, *changed)
    else:
        if exists:
            conn.execute(sql.SQL("delete from {}").format(target))
        else:
            conn.execute(sql.SQL("create table {} (like {} including all)").format(target, source))
            conn.execute(sql.SQL("grant select on {} to {}").format(target, sql.Identifier(BI_READER)))
        rows = conn.execute(sql.SQL("insert into {} select * from {}").format(target, source)).rowcount
        moved = f"{table}: all {rows} rows"
    comment = _comment(conn, CANDIDATE, table)
    if comment != _comment(conn, PUBLISHED, table):
        conn.execute(sql.SQL("comment on table {} is {}").format(target, sql.Literal(comment)))
    return moved


def _changed_keys(conn: psycopg.Connection, table: str, last: tuple[int, str] | None) -> tuple[list[str], str] | None:
    """(key columns, the keys as a JSON array) that dbt's delete+insert merges rewrote in the candidate
    table since its last publish (audit.mart_changes, recorded by dbt_project/macros/publish_delta.sql in
    the merge's own transaction: a change is covered when the last publish's snapshot did not see it).
    None when only a whole copy is safe: no earlier publish, or the candidate table is another one than
    then (dbt made it anew: a table model, a full refresh), or the key columns changed."""
    oid = conn.execute("select %s::regclass::oid", (sql.Identifier(CANDIDATE, table).as_string(conn),)).fetchone()[0]
    if last is None or last[0] != oid:
        return None
    key_columns, keys = conn.execute(
        """select array_agg(distinct m.key_columns::text), coalesce(jsonb_agg(distinct k.key), '[]')
           from audit.mart_changes m cross join lateral jsonb_array_elements(m.keys) k (key)
           where m.model = %s and m.xact >= pg_snapshot_xmin(%s::pg_snapshot)
             and not pg_visible_in_snapshot(m.xact, %s::pg_snapshot)""", (table, last[1], last[1])).fetchone()
    if not key_columns:
        return [], "[]"  # nothing changed since the last publish
    if len(key_columns) > 1:
        return None
    columns = conn.execute("select %s::text[]", (key_columns[0],)).fetchone()[0]
    return columns, json.dumps(keys)


def _publish_keys(conn: psycopg.Connection, table: str, columns: list[str], keys: str) -> str:
    """Replace the published rows of these keys by the candidate's (delete, then insert, as dbt merged them)."""
    if not columns:
        return f"{table}: unchanged"
    target, source = sql.Identifier(PUBLISHED, table), sql.Identifier(CANDIDATE, table)
    _ensure_key_index(conn, table, columns)
    key = sql.SQL(", ").join(map(sql.Identifier, columns))
    # the keys typed as the candidate's columns (its row type), compared as dbt's merge compares them
    chosen = sql.SQL("({}) in (select {} from jsonb_populate_recordset(null::{}, %s::jsonb))").format(
        key, key, source)
    deleted = conn.execute(sql.SQL("delete from {} where ").format(target) + chosen, (keys,)).rowcount
    inserted = conn.execute(sql.SQL("insert into {} select * from {} where ").format(target, source) + chosen,
                            (keys,)).rowcount
    return f"{table}: {len(json.loads(keys))} keys, {deleted} rows out, {inserted} in"


def _ensure_key_index(conn: psycopg.Connection, table: str, columns: list[str]) -> None:
    """An index on the key of a published mart, so that a night's delete finds its rows without a scan.
    Made once (tables created from a candidate that has dbt's key index copy it with `including all`)."""
    relation = sql.Identifier(PUBLISHED, table).as_string(conn)
    has = conn.execute(
        """select exists (select from pg_index i where i.indrelid = %s::regclass
                          and (select array_agg(a.attname::text order by k.n)
                               from unnest(i.indkey) with ordinality k (attnum, n)
                               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum) = %s::text[])""",
        (relation, columns)).fetchone()[0]
    if not has:
        conn.execute(sql.SQL("create index on {} ({})").format(
            sql.Identifier(PUBLISHED, table), sql.SQL(", ").join(map(sql.Identifier, columns))))


def _record_state(conn: psycopg.Connection, tables: list[str], snapshot: str) -> None:
    """What each table was published from (the next publish moves what changed since), and the recorded
    changes this publish covered pruned: every one older than its snapshot's oldest running transaction."""
    conn.execute("delete from audit.publish_state where table_name <> all(%s)", (tables,))
    for table in tables:
        conn.execute(
            """insert into audit.publish_state (table_name, candidate_oid, snapshot)
               values (%s, %s::regclass::oid, %s::pg_snapshot)
               on conflict (table_name) do update
               set candidate_oid = excluded.candidate_oid, snapshot = excluded.snapshot, published_at = now()""",
            (table, sql.Identifier(CANDIDATE, table).as_string(conn), snapshot))
    conn.execute("delete from audit.mart_changes where xact < pg_snapshot_xmin(%s::pg_snapshot)", (snapshot,))


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
