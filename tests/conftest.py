"""Fixtures shared by every test folder: database URLs and stores on each backend.

- ``store_url``: a fresh, empty database on each backend, ``sqlite`` (a file under ``tmp_path``) and
  ``postgres`` (an empty database on the test server, marked ``postgres``); tests using it run once per backend.
- ``store``: a migrated ``SqlStore`` on ``store_url``; ``open_store(url)``: more stores (e.g. a second "process"
  on the same database), all closed after the test.
- ``pg_empty_url``: an empty PostgreSQL database for one test; ``pg_url``: one for a whole module;
  ``pg_database()``: one more on each call (tests using these directly mark themselves ``postgres``).
- ``pg_terminate_connections(database)``: kill a database's connections, as a server restart would.
- ``pg_admin_url``: the maintenance database of the test server (``LRSERVE_TEST_PG_URL``, default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``, trust auth).

Databases created here are emptied and reused between tests, and dropped at the end of the session. Where the
server cannot be reached, PostgreSQL tests are skipped, except under ``CI=true``, where they fail: CI must not
pass by skipping them.

Heavy imports (SQLAlchemy, psycopg) happen inside the fixtures, so test folders that need only the base
install (schemas, client) do not need the server extras.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import settings

# CI replays the same examples every run (a red CI must be reproducible); locally hypothesis explores.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

if TYPE_CHECKING:
    from lrserve.service.store.sql import SqlStore

PG_ADMIN_URL = os.environ.get("LRSERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _libpq_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


def _admin_connect() -> Any:
    import psycopg

    return psycopg.connect(_libpq_dsn(PG_ADMIN_URL), autocommit=True, connect_timeout=3)


def _postgres_unreachable(reason: str) -> NoReturn:
    message = f"PostgreSQL at {PG_ADMIN_URL} is not usable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: PostgreSQL tests must run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    try:
        import psycopg
    except ImportError as e:  # the server extras are not installed
        _postgres_unreachable(str(e))
    try:
        with _admin_connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        _postgres_unreachable(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return PG_ADMIN_URL


class _PgDatabases:
    """Test databases: created on demand, emptied and reused, dropped at the end of the session.

    Reuse matters: PostgreSQL checkpoints on every DROP DATABASE, which costs seconds on a busy disk, whereas
    emptying a database (its connections terminated, ``public`` dropped and re-created) costs milliseconds.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []
        self.free: list[str] = []

    def url(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = f"lrserve_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        with _admin_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return name

    def recycle(self, name: str) -> None:
        import psycopg

        terminate_connections(name)
        try:
            with psycopg.connect(_libpq_dsn(self.url(name)), autocommit=True, connect_timeout=3) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
        except psycopg.Error:
            return  # not reused; still dropped at the end
        self.free.append(name)

    def drop_all(self) -> None:
        with _admin_connect() as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_connections(database: str) -> int:
    """Kill every connection to ``database``, as a server restart would; returns how many."""
    with _admin_connect() as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


@pytest.fixture(scope="session")
def _pg_databases(pg_admin_url: str) -> Iterator[_PgDatabases]:
    databases = _PgDatabases(pg_admin_url)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def pg_database(_pg_databases: _PgDatabases) -> Callable[[], str]:
    """A factory of empty databases (``postgresql+psycopg://`` URLs) for the rest of the session."""
    return lambda: _pg_databases.url(_pg_databases.take())


@pytest.fixture
def pg_empty_url(_pg_databases: _PgDatabases) -> Iterator[str]:
    """An empty database for one test, emptied and reused after it (the test should close its engines)."""
    name = _pg_databases.take()
    yield _pg_databases.url(name)
    _pg_databases.recycle(name)


@pytest.fixture(scope="module")
def pg_url(_pg_databases: _PgDatabases) -> Iterator[str]:
    """An empty database shared by a module's tests."""
    name = _pg_databases.take()
    yield _pg_databases.url(name)
    _pg_databases.recycle(name)


@pytest.fixture(scope="session")
def pg_terminate_connections(pg_admin_url: str) -> Callable[[str], int]:
    """``terminate(database)``: kill every connection to it, as a server restart would; returns how many."""
    return terminate_connections


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lrserve.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty (not migrated) database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lrserve.db'}"
    url: str = request.getfixturevalue("pg_empty_url")
    return url


@pytest.fixture
def open_store() -> Iterator[Callable[[str], SqlStore]]:
    """``open_store(url)``: a new ``SqlStore`` (own engine and pool) closed after the test."""
    from lrserve.service.store.sql import SqlStore

    opened: list[SqlStore] = []

    def open_(url: str) -> SqlStore:
        store = SqlStore(url)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(store_url: str, open_store: Callable[[str], SqlStore]) -> SqlStore:
    """A migrated store on a fresh database, once per backend."""
    s = open_store(store_url)
    s.migrate()
    return s
