"""The storage contract. Implementations: ``sql.SqlStore`` on SQLite (default) and PostgreSQL.

A run is a row (``RunRecord``: id, spec, labels, counters) plus an append-only list of events
(``EventRecord``, numbered ``seq = 1, 2, ...`` per run). The store knows nothing of learning rates: the domain
layer folds events into the run's state.

Contract (every implementation passes ``tests/service/store/test_contract.py``):

- ``create_run`` inserts the row and its first event atomically; if the id exists it returns the existing record
  and ``created=False`` (no write).
- ``transaction(run_id)`` opens a write transaction that *serializes with every other transaction on the same
  run, across processes* (PostgreSQL: ``SELECT ... FOR UPDATE`` on the run row; SQLite: ``BEGIN IMMEDIATE``).
  Inside it the caller reads events it has not seen, appends events and updates the row's counters; all of it
  commits together when the block exits normally, and nothing does if it raises. A commit is durable before the
  block returns (SQLite: WAL + synchronous=FULL; PostgreSQL: default synchronous_commit).
- Records returned are frozen dataclasses, never ORM rows; JSON payloads are plain dicts.
- Coherence (``watch``): on a shared store, every commit that creates or deletes a run or changes its
  incarnation notifies the run id, after it commits, to the subscribers of every store instance on the same
  database (other processes included); ``Coherence.fresh()`` is true only while every such commit made more than
  the store's ``staleness`` seconds ago has been delivered (``coherence``). A store no other process writes
  answers ``AlwaysFresh``.
- Errors: an unknown run is ``RunNotFound``; a database that cannot be reached or is read-only/full is
  ``Unavailable`` (503, retryable); integrity errors become ``Conflict``. No raw driver exception escapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from lrserve.service.store.coherence import Coherence


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    spec: dict[str, Any]
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    revision: int = 0
    horizon: int = -1
    incarnation: int = 1
    last_seq: int = 1
    #: A random id given at creation: a run deleted and created again under the same id is another generation,
    #: so nothing cached of the old one can be taken for the new one (created_at may repeat; this may not).
    generation: str = ""


@dataclass(frozen=True)
class EventRecord:
    run_id: str
    seq: int
    kind: str
    at: datetime
    actor: str | None
    reason: str | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewEvent:
    """An event to append; the store assigns ``seq`` and records ``at``."""

    kind: str
    payload: dict[str, Any]
    actor: str | None = None
    reason: str | None = None


class RunTransaction(Protocol):
    """The handle of one serialized write transaction on one run."""

    @property
    def run(self) -> RunRecord:
        """The run row as locked at the start of the transaction (updated by ``update``)."""

    def events_after(self, seq: int) -> list[EventRecord]:
        """Events with ``seq > seq``, in order."""

    def append(self, event: NewEvent) -> EventRecord:
        """Append one event (seq = last_seq + 1) and bump the row's ``last_seq``/``updated_at``."""

    def update(
        self, *, horizon: int | None = None, revision: int | None = None, incarnation: int | None = None
    ) -> RunRecord:
        """Change the row's counters (those given); ``updated_at`` is set to now."""


class Store(Protocol):
    #: True when several server processes may write the same database (PostgreSQL): caches must then
    #: re-check anything that is not frozen.
    shared: bool

    def migrate(self) -> None:
        """Bring the schema to the latest version (idempotent; safe when several replicas start at once)."""

    def ping(self) -> None:
        """Raise ``Unavailable`` unless the database answers."""

    def create_run(
        self, run_id: str, spec: dict[str, Any], labels: Mapping[str, str], first: NewEvent
    ) -> tuple[RunRecord, bool]:
        """Insert a run and its first event; ``(existing, False)`` if the id is taken."""

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, *, labels: Mapping[str, str], limit: int, after: str | None) -> list[RunRecord]:
        """Runs whose labels include all of ``labels``, ordered by id, ids > ``after``."""

    def delete_run(self, run_id: str) -> bool:
        """Delete the run and its events; False if it did not exist."""

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        """Events with seq > ``after``, ordered, at most ``limit``."""

    def transaction(self, run_id: str) -> AbstractContextManager[RunTransaction]:
        """A serialized write transaction on one run (``RunNotFound`` if it does not exist)."""

    def watch(self) -> Coherence:
        """The store's coherence: subscribe to runs changed by other processes; ask whether memory is current."""

    def close(self) -> None: ...


def iter_pages(store: Store, run_id: str, page: int = 10_000) -> Iterator[EventRecord]:
    """Every event of a run, fetched in pages."""
    after = 0
    while True:
        batch = store.events(run_id, after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].seq
