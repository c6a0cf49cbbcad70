"""The one place that knows where things are and how to connect to the warehouse.

Loader, dbt, Great Expectations, reports and the DAGs all take their connection details from
here, so that one environment variable (`WAREHOUSE_URL`) moves the whole platform. That URL is the
administrator's and only the bootstrap logs in with it: every step logs in as its own role
(`connect_as` / `role_conninfo`), with the password of that role's variable (ROLE_PASSWORD_ENV).
See docs/security.md.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.conninfo import ConnInfo, parse_url
from warehouse.settings import WAREHOUSE_DB, local_dir

if TYPE_CHECKING:
    import psycopg


def warehouse() -> ConnInfo:
    """The warehouse: `WAREHOUSE_URL` when set, else the embedded server (started if needed)."""
    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return parse_url(url)
    from warehouse import embedded

    return embedded.ensure_running().with_db(WAREHOUSE_DB)


# The roles each step logs in as (docs/security.md has what each may do), and the variable holding
# each one's password. The bootstrap sets these passwords; the steps log in with them.
LOADER, TRANSFORMER, CHECKER, PUBLISHER, REPORTER, BI_READER = (
    "gov_loader", "gov_transformer", "gov_checker", "gov_publisher", "gov_reporter", "gov_bi_reader")
ROLE_PASSWORD_ENV = {
    LOADER: "GOV_LOADER_PASSWORD",
    TRANSFORMER: "GOV_TRANSFORMER_PASSWORD",
    CHECKER: "GOV_CHECKER_PASSWORD",
    PUBLISHER: "GOV_PUBLISHER_PASSWORD",
    REPORTER: "GOV_REPORTER_PASSWORD",
    BI_READER: "GOV_BI_READER_PASSWORD",
}


def role_conninfo(role: str, wh: ConnInfo | None = None) -> ConnInfo:
    """How `role` logs in to the warehouse `wh` (default: `warehouse()`): same server and database,
    the role's own name and the password of its variable. Without that variable no password is sent:
    the embedded server trusts its Unix socket, and elsewhere libpq's ~/.pgpass or the server's own
    rules (peer, certificates) apply."""
    if role not in ROLE_PASSWORD_ENV:
        raise ValueError(f"unknown warehouse role {role!r}; known: {', '.join(ROLE_PASSWORD_ENV)}")
    wh = warehouse() if wh is None else wh
    return replace(wh, user=role, password=os.environ.get(ROLE_PASSWORD_ENV[role], ""))


def connect_as(role: str, wh: ConnInfo | None = None, **kwargs: Any) -> psycopg.Connection:
    """A psycopg connection logged in as `role` (see role_conninfo); kwargs go to psycopg.connect."""
    import psycopg

    info = role_conninfo(role, wh)
    if info.param("application_name") is None:
        # named for its role in pg_stat_activity and the server's log (tests/warehouse/test_secrets.py reads it)
        kwargs.setdefault("application_name", f"gov:{role}")
    return psycopg.connect(info.conninfo(), **kwargs)


def is_embedded(wh: ConnInfo) -> bool:
    """True when `wh` is the embedded demo server of this local directory (its Unix socket)."""
    if not wh.host.startswith("/"):
        return False
    pid_file = local_dir() / "pgdata" / "postmaster.pid"
    try:
        lines = pid_file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return False
    # postmaster.pid: pid, data directory, start time, port, socket directory, ...
    return len(lines) > 4 and Path(lines[4]).resolve() == Path(wh.host).resolve()
