"""The one place that knows where things are and how to connect to the warehouse.

Loader, dbt, Great Expectations, reports and the DAGs all take their connection details from
here, so that one environment variable (`WAREHOUSE_URL`) moves the whole platform. That URL is the
administrator's and only the bootstrap logs in with it: every step logs in as its own role
(`connect_as` / `role_conninfo`), with the password of that role's variable (ROLE_PASSWORD_ENV).
See docs/security.md.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    import psycopg

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


PII_KEY_VAR = "PII_HASH_KEY"
MAKE_KEY_HINT = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


class MissingSecret(RuntimeError):
    """A secret the run cannot do without is not configured (raised before any file is read)."""


def pii_hash_key() -> bytes:
    """Secret for keyed hashing of personal identifiers (`PII_HASH_KEY`).

    Required for any warehouse but the embedded demo server: a run without it refuses with
    MissingSecret. The embedded demo generates a key once into the local directory (mode 0600,
    outside the repository) and warns that it is a demo key."""
    key = os.environ.get(PII_KEY_VAR)
    if key:
        return key.encode()
    url = os.environ.get("WAREHOUSE_URL")
    if url and not is_embedded(parse_url(url)):
        raise MissingSecret(
            f"{PII_KEY_VAR} is not set: personal identifiers cannot be hashed, so nothing is loaded. "
            f"Make a key with `{MAKE_KEY_HINT}`, keep it in your secret store and set {PII_KEY_VAR} for every "
            "task (docs/security.md: key rotation)")
    return _demo_pii_key()


_DEMO_KEY_WARNED = False


def _demo_pii_key() -> bytes:
    global _DEMO_KEY_WARNED
    path = local_dir() / "secrets" / "pii_hash_key"
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    if not _DEMO_KEY_WARNED:
        warnings.warn(f"{PII_KEY_VAR} is unset: the embedded demo uses the key generated into {path}; "
                      f"set {PII_KEY_VAR} for real data", stacklevel=3)
        _DEMO_KEY_WARNED = True
    return path.read_text(encoding="utf-8").strip().encode()


def write_secret(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600, created so: never readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    path.chmod(0o600)


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
        """Environment read by dbt_project/profiles.yml: dbt logs in as gov_transformer."""
        dbt = role_conninfo(TRANSFORMER, self)
        return {
            "WH_HOST": dbt.host,
            "WH_PORT": str(dbt.port),
            "WH_USER": dbt.user,
            "WH_PASSWORD": dbt.password,
            "WH_DBNAME": dbt.dbname,
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

    # named for its role in pg_stat_activity and the server's log (tests/test_secrets.py reads it)
    kwargs.setdefault("application_name", f"gov:{role}")
    return psycopg.connect(role_conninfo(role, wh).conninfo(), **kwargs)


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


# What a deployment's start refuses (docker-compose.yml's secrets-check): a secret left empty or at
# the placeholder .env.example ships with
SECRET_NAME = re.compile(r"(PASSWORD|_PASS|SECRET|FERNET_KEY|HASH_KEY)$")
PLACEHOLDERS = frozenset({"", "change-me", "changeme", "change_me", "password", "secret"})


def weak_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """Names of the secret-looking variables (…PASSWORD, …SECRET, …KEY) that are empty or a placeholder."""
    environ = os.environ if environ is None else environ
    return sorted(k for k, v in environ.items() if SECRET_NAME.search(k) and v.strip().lower() in PLACEHOLDERS)


def refuse_weak_secrets(environ: dict[str, str] | None = None) -> None:
    """Exit non-zero naming every weak secret (values are never printed)."""
    weak = weak_secrets(environ)
    if weak:
        raise SystemExit(f"refusing to start: {', '.join(weak)} empty or still 'change-me'; set real values in .env "
                         f"(e.g. `{MAKE_KEY_HINT}`)")
    print("secrets-check: every secret is set")
