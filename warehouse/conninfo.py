"""Connection parameters of a PostgreSQL server: parsed from a URL, rendered for psycopg and SQLAlchemy."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit


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
