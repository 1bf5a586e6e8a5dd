"""SQLAlchemy engines for the two supported databases, chosen by URL.

- ``sqlite:///./lrserve.db`` (the default): one file, WAL journal, ``synchronous=FULL`` so a commit is on disk
  before it returns, a 5 s busy timeout, foreign keys on. pysqlite's own transaction handling is switched off
  and SQLAlchemy emits ``BEGIN`` itself: ``BEGIN IMMEDIATE`` on connections carrying the ``WRITE`` execution
  option, so a write transaction takes the database's write lock at its start and serializes with every other
  writer, in this process or another.
- ``postgresql+psycopg://user@host/db`` (``postgresql://`` and ``postgres://`` mean the same): psycopg 3 with
  ``pool_pre_ping``, so connections killed by a PostgreSQL restart are replaced on their next checkout.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.pool import ConnectionPoolEntry

DEFAULT_URL = "sqlite:///./lrserve.db"

#: Execution option marking a connection whose transactions write (SQLite: ``BEGIN IMMEDIATE``).
WRITE = "lrserve_write"

SQLITE_BUSY_TIMEOUT_MS = 5_000
PG_CONNECT_TIMEOUT_S = 5


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``; bare ``postgresql://``/``postgres://`` select the psycopg 3 driver."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each pooled connection would get a database of its own; the in-process store is store.memory.
        raise ValueError("an in-memory SQLite database cannot be shared by the store's connections: use a file")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
            "use sqlite:///path or postgresql+psycopg://..."
        )
    return parsed


def make_engine(url: str | URL = DEFAULT_URL) -> Engine:
    """A configured engine for ``url`` (no connection is opened yet)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return _postgres_engine(parsed)


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # isolation_level=None stops pysqlite from issuing BEGIN (lazily, and never before SELECT); the
        # "begin" listener below emits it instead. The pragmas then run outside any transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    # Defaults only: what the URL's query string says wins.
    defaults = {"application_name": "lrserve", "connect_timeout": PG_CONNECT_TIMEOUT_S}
    connect_args = {k: v for k, v in defaults.items() if k not in url.query}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def libpq_dsn(url: URL) -> str:
    """The libpq connection URI of a PostgreSQL URL (for connections made outside the engine's pool)."""
    dsn: str = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return dsn
