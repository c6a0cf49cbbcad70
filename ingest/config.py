"""The one place that knows where things are and how to connect to the warehouse.

Loader, dbt, Great Expectations, reports and the DAGs all take their connection details from
here, so that one environment variable (`WAREHOUSE_URL`) moves the whole platform.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DAGS_DIR = REPO_ROOT / "dags"
SERVICE_TZ = "Asia/Shanghai"
WAREHOUSE_DB = "gov_warehouse"
FEEDS = ("streets", "canteens", "assistance")


def local_dir() -> Path:
    """Working data of a local install (embedded server, landing zone, outbox, Airflow home)."""
    return Path(os.environ.get("GOV_LOCAL_DIR", REPO_ROOT / ".local")).resolve()


def landing_dir() -> Path:
    return Path(os.environ.get("LANDING_DIR", local_dir() / "landing")).resolve()


def outbox_dir() -> Path:
    return Path(os.environ.get("OUTBOX_DIR", local_dir() / "outbox")).resolve()


def airflow_home() -> Path:
    return Path(os.environ.get("AIRFLOW_HOME", local_dir() / "airflow")).resolve()


_DEV_KEY_WARNED = False


def pii_hash_key() -> bytes:
    """Secret for keyed hashing of personal identifiers; a dev key (with a warning) when unset."""
    global _DEV_KEY_WARNED
    key = os.environ.get("PII_HASH_KEY")
    if key:
        return key.encode()
    if not _DEV_KEY_WARNED:
        warnings.warn("PII_HASH_KEY is unset: using the development key; set it in production", stacklevel=2)
        _DEV_KEY_WARNED = True
    return b"gov-warehouse-development-key-not-for-production"


@dataclass(frozen=True)
class ConnInfo:
    """libpq-style connection parameters; host may be a socket directory."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self, role_free: bool = True) -> str:
        """A psycopg/libpq keyword string."""
        parts = {"host": self.host, "port": str(self.port), "user": self.user, "dbname": self.dbname}
        if self.password:
            parts["password"] = self.password
        return " ".join(f"{k}='{_libpq_escape(v)}'" for k, v in parts.items())

    def sqlalchemy_url(self) -> str:
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        if self.host.startswith("/"):
            return f"postgresql+psycopg://{auth}@/{self.dbname}?host={self.host}&port={self.port}"
        return f"postgresql+psycopg://{auth}@{self.host}:{self.port}/{self.dbname}"

    def display_url(self) -> str:
        """The URL for people and logs: the password, if any, never printed."""
        url = self.sqlalchemy_url()
        if not self.password:
            return url
        return url.replace(":" + quote(self.password, safe="") + "@", ":***@", 1)

    def with_db(self, dbname: str) -> ConnInfo:
        return ConnInfo(self.host, self.port, self.user, self.password, dbname)

    def dbt_env(self) -> dict[str, str]:
        """Environment read by dbt_project/profiles.yml."""
        return {
            "WH_HOST": self.host,
            "WH_PORT": str(self.port),
            "WH_USER": self.user,
            "WH_PASSWORD": self.password,
            "WH_DBNAME": self.dbname,
        }


def _libpq_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def parse_url(url: str) -> ConnInfo:
    """Parse a SQLAlchemy/libpq URL (TCP or `?host=/socket/dir`)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    dbname = unquote(parts.path.lstrip("/")) or "postgres"
    return ConnInfo(
        host=host,
        port=port,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        dbname=dbname,
    )


def warehouse() -> ConnInfo:
    """The warehouse: `WAREHOUSE_URL` when set, else the embedded server (started if needed)."""
    url = os.environ.get("WAREHOUSE_URL")
    if url:
        return parse_url(url)
    from ingest import embedded

    return embedded.ensure_running().with_db(WAREHOUSE_DB)
