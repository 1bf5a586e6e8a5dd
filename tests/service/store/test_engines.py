"""Engines by URL: drivers, SQLite's per-connection settings, URLs refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from lrserve.schemas.errors import LrserveError, Unavailable
from lrserve.service.store.engines import make_engine, normalize_url
from lrserve.service.store.sql import SqlStore


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"])
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    assert normalize_url(url).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"mysql|memory"):
        make_engine(url)


def test_the_repr_hides_the_password() -> None:
    store = SqlStore("postgresql://lrserve:s3cret@127.0.0.1:1/lrserve")
    assert "s3cret" not in repr(store)
    assert "127.0.0.1:1/lrserve" in repr(store)
    store.close()


def test_sqlite_connections_are_durable_and_patient(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 5000}


def test_sqlite_in_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path}/no/such/folder/lrserve.db")
    try:
        with pytest.raises(Unavailable):
            store.ping()
    finally:
        store.close()


def test_a_schema_from_a_newer_release_is_reported(store_url: str, open_store: Callable[[str], SqlStore]) -> None:
    store = open_store(store_url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(LrserveError, match="cannot migrate") as info:
        store.migrate()
    assert type(info.value) is LrserveError
