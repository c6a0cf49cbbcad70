"""Create roles, schemas and the raw/audit tables; safe to run any number of times."""

from __future__ import annotations

import os
from importlib import resources

import psycopg
from psycopg import sql

from ingest.config import ROLE_PASSWORD_ENV, ConnInfo

# Login passwords of the warehouse roles, set when these variables are given (a deployment's
# secrets, e.g. from docker-compose's .env): each step logs in as its role with the same variable
# (ingest.config.role_conninfo); BI tools such as Metabase log in as gov_bi_reader. Without them the
# roles have no password, which the embedded server's socket (trust) and a server's own rules allow.
__all__ = ["ROLE_PASSWORD_ENV", "bootstrap", "set_role_passwords"]


def bootstrap(wh: ConnInfo) -> None:
    text = resources.files("ingest").joinpath("sql/bootstrap.sql").read_text(encoding="utf-8")
    text = text.replace("current_database_placeholder", f'"{wh.dbname}"')
    with psycopg.connect(wh.conninfo(), autocommit=True, application_name="gov:bootstrap") as conn:
        # roles are cluster-wide: serialise concurrent bootstraps of several databases
        conn.execute("select pg_advisory_lock(7261001)")
        try:
            conn.execute(text)
            set_role_passwords(conn)
        finally:
            conn.execute("select pg_advisory_unlock(7261001)")


def set_role_passwords(conn: psycopg.Connection, environ: dict[str, str] | None = None) -> list[str]:
    """Give each role whose password variable is set that password; return the roles changed."""
    environ = os.environ if environ is None else environ
    changed = []
    for role, var in ROLE_PASSWORD_ENV.items():
        password = environ.get(var)
        if not password:
            continue
        # hashed (SCRAM) on this side by libpq, so the plain password never reaches the server's logs
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()
        conn.execute(sql.SQL("alter role {} with login password {}").format(sql.Identifier(role), sql.Literal(verifier)))
        changed.append(role)
    return changed
