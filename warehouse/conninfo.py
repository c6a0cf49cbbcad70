"""Connection parameters of a PostgreSQL server: parsed from a URL, rendered for psycopg, SQLAlchemy and dbt.

Parsing and rendering are SQLAlchemy's (`make_url`, `URL.create`) and psycopg's (`make_conninfo`), so a URL's
query parameters (`?sslmode=verify-full&sslrootcert=…&application_name=…`) survive every hop: they are kept
in `params` and handed to psycopg, to GX (through the SQLAlchemy URL) and to dbt (`libpq_env`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

DRIVER = "postgresql+psycopg"

# libpq reads each of these parameters from its environment variable when a connection does not name it
# (PostgreSQL docs: libpq, Environment Variables): how dbt's driver receives every parameter of the URL.
LIBPQ_ENV = {
    "application_name": "PGAPPNAME", "channel_binding": "PGCHANNELBINDING", "connect_timeout": "PGCONNECT_TIMEOUT",
    "gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "options": "PGOPTIONS", "passfile": "PGPASSFILE", "require_auth": "PGREQUIREAUTH", "service": "PGSERVICE",
    "sslcert": "PGSSLCERT", "sslcertmode": "PGSSLCERTMODE", "sslcompression": "PGSSLCOMPRESSION",
    "sslcrl": "PGSSLCRL", "sslcrldir": "PGSSLCRLDIR", "sslkey": "PGSSLKEY", "sslmode": "PGSSLMODE",
    "sslnegotiation": "PGSSLNEGOTIATION", "sslrootcert": "PGSSLROOTCERT", "sslsni": "PGSSLSNI",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


@dataclass(frozen=True)
class ConnInfo:
    """libpq-style connection parameters; host may be a socket directory. `params` holds every other
    parameter of the URL (sslmode, sslrootcert, application_name, connect_timeout, …), sorted by name."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    params: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        return dict(self.params).get(name)

    def conninfo(self) -> str:
        """A psycopg/libpq keyword string with every parameter."""
        from psycopg.conninfo import make_conninfo

        fixed = {"host": self.host, "port": str(self.port), "user": self.user, "dbname": self.dbname}
        if self.password:
            fixed["password"] = self.password
        return make_conninfo(**fixed, **dict(self.params))

    def url(self) -> URL:
        # imported here: the loader and the readers never need SQLAlchemy (12 MB at import)
        from sqlalchemy.engine import URL

        query = dict(self.params)
        host: str | None = self.host
        port: int | None = self.port
        if self.host.startswith("/"):  # a socket directory goes in the query, as libpq's `host`
            query = {"host": self.host, "port": str(self.port), **query}
            host = port = None
        return URL.create(DRIVER, username=self.user, password=self.password or None, host=host, port=port,
                          database=self.dbname, query=query)

    def sqlalchemy_url(self) -> str:
        return self.url().render_as_string(hide_password=False)

    def display_url(self) -> str:
        """The URL for people and logs: the password, if any, never printed."""
        return self.url().render_as_string(hide_password=True)

    def with_db(self, dbname: str) -> ConnInfo:
        return replace(self, dbname=dbname)

    def libpq_env(self) -> dict[str, str]:
        """The URL's parameters as libpq's environment variables (for a client given only host, port, user,
        password and database, such as dbt); a parameter libpq has no variable for raises ValueError."""
        unknown = [k for k, _ in self.params if k not in LIBPQ_ENV]
        if unknown:
            raise ValueError(f"connection parameter(s) {', '.join(unknown)} cannot be passed on to dbt")
        return {LIBPQ_ENV[k]: v for k, v in self.params}


def parse_url(url: str) -> ConnInfo:
    """Parse a SQLAlchemy/libpq URL (TCP, or a socket directory as `?host=/socket/dir`), keeping its parameters."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    query = {k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()}
    host = query.pop("host", None) or u.host or "localhost"
    port = int(query.pop("port", None) or u.port or 5432)
    return ConnInfo(host=host, port=port, user=u.username or "postgres", password=u.password or "",
                    dbname=u.database or "postgres", params=tuple(sorted(query.items())))
