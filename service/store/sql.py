"""``SqlStore``: the ``Store`` contract (see ``base``) on SQLite and PostgreSQL, in SQLAlchemy Core.

Schema (created by ``migrations/versions/0001_initial.py``; ``tables`` below mirrors it, a test compares them):

    runs        run_id PK, spec, created_at, updated_at, revision, horizon, incarnation, last_seq,
                generation (0002: a random id per creation; '' for runs created before it)
    run_labels  (run_id -> runs ON DELETE CASCADE, key) PK, value         one row per label, for filtering
    events      (run_id -> runs ON DELETE CASCADE, seq) PK, kind, at, actor, reason, payload

``spec`` and ``payload`` are JSON kept as TEXT, written by ``json.dumps(allow_nan=True)``: payloads carry
floats such as a NaN loss, which PostgreSQL's ``json``/``jsonb`` refuse. Ids compare bytewise on both backends
(PostgreSQL columns use ``COLLATE "C"``), so listing order and pagination agree. Timestamps are UTC and come
back timezone-aware from both (SQLite stores them as naive UTC text).

Every public method runs inside ``translated()``, the one place where database errors become lrserve errors.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    TypeDecorator,
    delete,
    exc,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL

from lrserve.schemas.errors import Conflict, InvalidInput, LrserveError, RunNotFound, Unavailable
from lrserve.service.store.base import EventRecord, NewEvent, RunRecord
from lrserve.service.store.coherence import CHANNEL, AlwaysFresh, PgListener
from lrserve.service.store.engines import DEFAULT_URL, WRITE, libpq_dsn, make_engine

#: Default bound on how long a replica may answer from memory after another one deleted, re-created or resumed
#: a run (``coherence``); the ``replica_staleness`` setting.
DEFAULT_STALENESS = 1.0

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: Key of the PostgreSQL advisory lock held while migrating (any constant unlikely to clash: "lrserve" in hex).
MIGRATION_LOCK_KEY = 0x6C7273657276
#: How long a SQLite writer waits for its turn in this process before answering 503 (retryable).
WRITE_QUEUE_SECONDS = 10.0


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on both backends (SQLite's DATETIME drops the zone: it is stored as naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id_text() -> Text:
    return Text().with_variant(Text(collation="C"), "postgresql")


metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", _id_text(), primary_key=True),
    Column("spec", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Column("horizon", BigInteger, nullable=False, server_default=text("-1")),
    Column("incarnation", Integer, nullable=False, server_default=text("1")),
    Column("last_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("generation", Text, nullable=False, server_default=text("''")),
)

run_labels = Table(
    "run_labels",
    metadata,
    Column("run_id", _id_text(), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", _id_text(), primary_key=True),
    Column("value", _id_text(), nullable=False),
    Index("ix_run_labels_key_value", "key", "value"),
)

events = Table(
    "events",
    metadata,
    Column("run_id", _id_text(), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=True),
    Column("reason", Text, nullable=True),
    Column("payload", Text, nullable=False),
)


def dumps(obj: Mapping[str, Any]) -> str:
    """JSON text of a spec or payload; NaN and ±inf are written as the literals ``NaN``/``Infinity``."""
    return json.dumps(obj, allow_nan=True, ensure_ascii=False, separators=(",", ":"))


def loads(text_: str) -> dict[str, Any]:
    value = json.loads(text_)
    if not isinstance(value, dict):
        raise LrserveError(f"stored JSON is a {type(value).__name__}, not an object")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def _driver_message(error: exc.SQLAlchemyError) -> str:
    orig = getattr(error, "orig", None)
    lines = str(orig if orig is not None else error).strip().splitlines()
    message = lines[0] if lines else type(error).__name__
    return message if len(message) <= 300 else message[:297] + "..."


@contextmanager
def translated() -> Iterator[None]:
    """Turn database errors into lrserve errors (everything else passes through untouched)."""
    try:
        yield
    except exc.IntegrityError as e:
        raise Conflict(f"the database refused the change: {_driver_message(e)}") from e
    except exc.DataError as e:
        raise InvalidInput(f"the database refused a value: {_driver_message(e)}") from e
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as e:
        # Unreachable server, dropped connection, lock wait timeout, read-only or full SQLite file.
        raise Unavailable(f"the database is unavailable: {_driver_message(e)}") from e
    except exc.DBAPIError as e:
        if e.connection_invalidated:
            raise Unavailable(f"the database is unavailable: {_driver_message(e)}") from e
        raise LrserveError(f"database error: {_driver_message(e)}") from e
    except exc.SQLAlchemyError as e:
        raise LrserveError(f"database error: {_driver_message(e)}") from e


def _run_record(row: Row[Any], labels: dict[str, str]) -> RunRecord:
    return RunRecord(
        run_id=row.run_id,
        spec=loads(row.spec),
        labels=labels,
        created_at=row.created_at,
        updated_at=row.updated_at,
        revision=row.revision,
        horizon=row.horizon,
        incarnation=row.incarnation,
        last_seq=row.last_seq,
        generation=row.generation,
    )


def _notify(conn: Connection, run_id: str) -> None:
    """Tell the other replicas (``coherence``) that ``run_id`` was created, deleted or resumed, on commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(CHANNEL, run_id)))


def _event_record(row: Row[Any]) -> EventRecord:
    return EventRecord(
        run_id=row.run_id,
        seq=row.seq,
        kind=row.kind,
        at=row.at,
        actor=row.actor,
        reason=row.reason,
        payload=loads(row.payload),
    )


def _load_run(conn: Connection, run_id: str, *, lock: bool = False) -> RunRecord | None:
    query = select(runs).where(runs.c.run_id == run_id)
    if lock:
        query = query.with_for_update()  # PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the write lock
    row = conn.execute(query).first()
    if row is None:
        return None
    label_rows = conn.execute(select(run_labels.c.key, run_labels.c.value).where(run_labels.c.run_id == run_id))
    return _run_record(row, {r.key: r.value for r in label_rows})


def _select_events(conn: Connection, run_id: str, after: int, limit: int | None) -> list[EventRecord]:
    query = select(events).where(events.c.run_id == run_id, events.c.seq > after).order_by(events.c.seq)
    if limit is not None:
        query = query.limit(limit)
    return [_event_record(row) for row in conn.execute(query)]


def _insert_event(conn: Connection, run_id: str, seq: int, event: NewEvent) -> EventRecord:
    at = _now()
    payload = dumps(event.payload)
    conn.execute(
        insert(events).values(
            run_id=run_id, seq=seq, kind=event.kind, at=at, actor=event.actor, reason=event.reason, payload=payload
        )
    )
    return EventRecord(run_id, seq, event.kind, at, event.actor, event.reason, loads(payload))


class SqlRunTransaction:
    """``RunTransaction`` on one open connection. Counter changes are written once, just before the commit."""

    def __init__(self, conn: Connection, run: RunRecord) -> None:
        self._conn: Connection | None = conn
        self._run = run
        self._incarnation_at_start = run.incarnation
        self._dirty = False
        #: A database error seen inside the block: PostgreSQL has aborted the transaction, so the block must not
        #: look committed even if its caller swallowed the error.
        self._failed: LrserveError | None = None

    @property
    def run(self) -> RunRecord:
        return self._run

    def _open(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("the transaction is over: use the handle only inside its `with` block")
        return self._conn

    @contextmanager
    def _statement(self) -> Iterator[Connection]:
        try:
            with translated():
                yield self._open()
        except LrserveError as e:
            self._failed = e
            raise

    def events_after(self, seq: int) -> list[EventRecord]:
        with self._statement() as conn:
            return _select_events(conn, self._run.run_id, seq, None)

    def append(self, event: NewEvent) -> EventRecord:
        with self._statement() as conn:
            record = _insert_event(conn, self._run.run_id, self._run.last_seq + 1, event)
        self._run = replace(self._run, last_seq=record.seq, updated_at=record.at)
        self._dirty = True
        return record

    def update(
        self, *, horizon: int | None = None, revision: int | None = None, incarnation: int | None = None
    ) -> RunRecord:
        self._open()
        r = self._run
        self._run = replace(
            r,
            updated_at=_now(),
            horizon=r.horizon if horizon is None else horizon,
            revision=r.revision if revision is None else revision,
            incarnation=r.incarnation if incarnation is None else incarnation,
        )
        self._dirty = True
        return self._run

    def _flush(self) -> None:
        """Write the counters; called once, when the block ends normally, just before the commit."""
        conn = self._open()
        if self._failed is not None:
            raise self._failed
        if self._dirty:
            r = self._run
            if r.incarnation != self._incarnation_at_start:
                _notify(conn, r.run_id)
            conn.execute(
                update(runs)
                .where(runs.c.run_id == r.run_id)
                .values(
                    updated_at=r.updated_at,
                    revision=r.revision,
                    horizon=r.horizon,
                    incarnation=r.incarnation,
                    last_seq=r.last_seq,
                )
            )

    def _close(self) -> None:
        self._conn = None


class SqlStore:
    """The ``Store`` on SQLAlchemy: ``SqlStore("sqlite:///./lrserve.db")`` or ``SqlStore("postgresql://...")``.

    Creating one opens no connection; call ``migrate()`` once at start-up. One instance is safe to share
    between threads (each call checks a connection out of the engine's pool).
    """

    def __init__(
        self, url: str | URL = DEFAULT_URL, *, engine: Engine | None = None, staleness: float = DEFAULT_STALENESS
    ) -> None:
        self.engine = engine if engine is not None else make_engine(url)
        self._writer = self.engine.execution_options(**{WRITE: True})
        #: PostgreSQL may be written by several server processes; a SQLite file is one server's.
        self.shared: bool = self.engine.dialect.name == "postgresql"
        self._write_lock: threading.Lock | None = None if self.shared else threading.Lock()
        self._coherence: PgListener | AlwaysFresh = (
            PgListener(libpq_dsn(self.engine.url), staleness) if self.shared else AlwaysFresh()
        )

    def watch(self) -> PgListener | AlwaysFresh:
        return self._coherence

    def __repr__(self) -> str:
        return f"SqlStore({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with translated(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction: SQLite ``BEGIN IMMEDIATE``; committed on normal exit, rolled back otherwise.

        On SQLite the process's writers queue on a lock first: SQLite's own busy handler polls with sleeps and
        lets a burst of concurrent writers time out ("database is locked") where a queue serves them all.
        """
        lock = self._write_lock
        if lock is not None and not lock.acquire(timeout=WRITE_QUEUE_SECONDS):
            raise Unavailable(f"the database is busy: no write slot within {WRITE_QUEUE_SECONDS:g} s; retry")
        try:
            with translated(), self._writer.begin() as conn:
                yield conn
        finally:
            if lock is not None:
                lock.release()

    def migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with translated(), self._writer.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # SQLite's procedure for schema changes (sqlite.org/lang_altertable.html): foreign keys off, so
                # that batch-mode table rebuilds do not cascade-delete events; checked before the commit. The
                # pragma is a no-op inside a transaction, hence the driver connection, before BEGIN.
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
            try:
                with conn.begin():
                    if conn.dialect.name == "postgresql":
                        # Replicas starting together queue here; the later ones then find the schema at head.
                        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
                    config.attributes["connection"] = conn
                    try:
                        command.upgrade(config, "head")
                    except CommandError as e:  # e.g. a schema from a newer lrserve
                        raise LrserveError(f"cannot migrate the database: {e}") from e
                    if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise LrserveError("the migration left rows whose foreign keys point nowhere")
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]

    def ping(self) -> None:
        with self._reading() as conn:
            conn.execute(select(1))

    def create_run(
        self, run_id: str, spec: dict[str, Any], labels: Mapping[str, str], first: NewEvent
    ) -> tuple[RunRecord, bool]:
        spec_text = dumps(spec)
        existing = self.get_run(run_id)  # a retried create, the common case, takes no write lock
        if existing is not None:
            return existing, False
        try:
            with self._writing() as conn:
                existing = _load_run(conn, run_id)
                if existing is not None:
                    return existing, False
                now = _now()
                generation = uuid.uuid4().hex
                conn.execute(
                    insert(runs).values(
                        run_id=run_id, spec=spec_text, created_at=now, updated_at=now,
                        revision=0, horizon=-1, incarnation=1, last_seq=1, generation=generation,
                    )
                )  # fmt: skip
                if labels:
                    conn.execute(
                        insert(run_labels), [{"run_id": run_id, "key": k, "value": v} for k, v in labels.items()]
                    )
                _insert_event(conn, run_id, 1, first)
                _notify(conn, run_id)
        except Conflict:
            # PostgreSQL: a concurrent create of the same id committed first; its row is the answer.
            existing = self.get_run(run_id)
            if existing is None:
                raise
            return existing, False
        return RunRecord(run_id, loads(spec_text), dict(labels), now, now, last_seq=1, generation=generation), True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._reading() as conn:
            return _load_run(conn, run_id)

    def list_runs(self, *, labels: Mapping[str, str], limit: int, after: str | None) -> list[RunRecord]:
        if limit <= 0:
            return []
        query = select(runs).order_by(runs.c.run_id).limit(limit)
        if after is not None:
            query = query.where(runs.c.run_id > after)
        for key, value in labels.items():
            query = query.where(
                exists().where(
                    run_labels.c.run_id == runs.c.run_id, run_labels.c.key == key, run_labels.c.value == value
                )
            )
        with self._reading() as conn:
            rows: Sequence[Row[Any]] = conn.execute(query).all()
            found: dict[str, dict[str, str]] = {row.run_id: {} for row in rows}
            if found:
                label_rows = conn.execute(select(run_labels).where(run_labels.c.run_id.in_(list(found))))
                for row in label_rows:
                    found[row.run_id][row.key] = row.value
        return [_run_record(row, found[row.run_id]) for row in rows]

    def count_runs(self) -> int:
        """How many runs the store holds (the ``lrserve_runs`` gauge; not part of the ``Store`` contract)."""
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(runs)).scalar_one())

    def delete_run(self, run_id: str) -> bool:
        with self._writing() as conn:
            deleted = conn.execute(delete(runs).where(runs.c.run_id == run_id)).rowcount > 0
            if deleted:
                _notify(conn, run_id)
            return deleted

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        with self._reading() as conn:
            return _select_events(conn, run_id, after, limit)

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[SqlRunTransaction]:
        with self._writing() as conn:
            run = _load_run(conn, run_id, lock=True)
            if run is None:
                raise RunNotFound(f"run {run_id!r} not found")
            tx = SqlRunTransaction(conn, run)
            try:
                yield tx
                tx._flush()
            finally:
                tx._close()

    def close(self) -> None:
        self._coherence.close()
        self.engine.dispose()
