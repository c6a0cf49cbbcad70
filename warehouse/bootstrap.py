"""Create roles, schemas and the raw/audit tables; safe to run any number of times."""

from __future__ import annotations

import hashlib
import os
from importlib import resources

import psycopg
from psycopg import sql

from warehouse.connections import LOADER, ROLE_PASSWORD_ENV, connect_as
from warehouse.conninfo import ConnInfo

# Login passwords of the warehouse roles, set when these variables are given (a deployment's
# secrets, e.g. from docker-compose's .env): each step logs in as its role with the same variable
# (warehouse.connections.role_conninfo); BI tools such as Metabase log in as gov_bi_reader. Without them the
# roles have no password, which the embedded server's socket (trust) and a server's own rules allow.
__all__ = ["ROLE_PASSWORD_ENV", "NotBootstrapped", "bootstrap", "set_role_passwords"]


# "apply" (default): run the bootstrap as the WAREHOUSE_URL administrator. "verify": a deployment's
# workers hold no administrator password (docker-compose.yml: airflow-init bootstraps); the nightly
# bootstrap task then only checks, as gov_loader, that the warehouse was bootstrapped by this version.
BOOTSTRAP_MODE_VAR = "GOV_BOOTSTRAP"


class NotBootstrapped(RuntimeError):
    """The warehouse was not bootstrapped by this version of the project."""


def bootstrap(wh: ConnInfo) -> None:
    text = resources.files("warehouse").joinpath("sql/bootstrap.sql").read_text(encoding="utf-8")
    version = hashlib.sha256(text.encode()).hexdigest()[:16]
    if os.environ.get(BOOTSTRAP_MODE_VAR, "apply") == "verify":
        _verify(wh, version)
        return
    text = text.replace("current_database_placeholder", f'"{wh.dbname}"')
    with psycopg.connect(wh.conninfo(), autocommit=True, application_name="gov:bootstrap") as conn:
        # roles are cluster-wide: serialise concurrent bootstraps of several databases
        conn.execute("select pg_advisory_lock(7261001)")
        try:
            conn.execute(text)
            set_role_passwords(conn)
            conn.execute(sql.SQL("comment on schema audit is {}").format(sql.Literal(f"{_MARK}{version}")))
        finally:
            conn.execute("select pg_advisory_unlock(7261001)")


_MARK = "gov bootstrap "


def _verify(wh: ConnInfo, version: str) -> None:
    with connect_as(LOADER, wh) as conn:
        found = conn.execute("select obj_description(to_regnamespace('audit'), 'pg_namespace')").fetchone()[0]
    if found != f"{_MARK}{version}":
        raise NotBootstrapped(
            f"warehouse {wh.dbname} on {wh.host} is not bootstrapped by this version (found {found!r}, expected "
            f"{_MARK}{version!r}): run the administrator's bootstrap, e.g. `docker compose run --rm airflow-init`")


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
