"""An in-process Store (``memory://``): the contract without a database, for tests and previews.

Nothing survives the process, so ``lrserve serve`` refuses it unless asked explicitly.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from lrserve.schemas.errors import RunNotFound
from lrserve.service.store.base import EventRecord, NewEvent, RunRecord
from lrserve.service.store.coherence import AlwaysFresh


def _now() -> datetime:
    return datetime.now(UTC)


class _MemoryTransaction:
    def __init__(self, run: RunRecord, events: list[EventRecord]) -> None:
        self._run = run
        self._committed = events
        self.appended: list[EventRecord] = []

    @property
    def run(self) -> RunRecord:
        return self._run

    def events_after(self, seq: int) -> list[EventRecord]:
        return [e for e in self._committed + self.appended if e.seq > seq]

    def append(self, event: NewEvent) -> EventRecord:
        at = _now()
        record = EventRecord(
            run_id=self._run.run_id,
            seq=self._run.last_seq + 1,
            kind=event.kind,
            at=at,
            actor=event.actor,
            reason=event.reason,
            payload=copy.deepcopy(event.payload),
        )
        self.appended.append(record)
        self._run = replace(self._run, last_seq=record.seq, updated_at=at)
        return record

    def update(
        self, *, horizon: int | None = None, revision: int | None = None, incarnation: int | None = None
    ) -> RunRecord:
        changes: dict[str, Any] = {"updated_at": _now()}
        if horizon is not None:
            changes["horizon"] = horizon
        if revision is not None:
            changes["revision"] = revision
        if incarnation is not None:
            changes["incarnation"] = incarnation
        self._run = replace(self._run, **changes)
        return self._run


class MemoryStore:
    shared = False

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[str, RunRecord] = {}
        self._events: dict[str, list[EventRecord]] = {}
        self._coherence = AlwaysFresh()

    def migrate(self) -> None:
        return None

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    def create_run(
        self, run_id: str, spec: dict[str, Any], labels: Mapping[str, str], first: NewEvent
    ) -> tuple[RunRecord, bool]:
        with self._lock:
            existing = self._runs.get(run_id)
            if existing is not None:
                return existing, False
            now = _now()
            run = RunRecord(
                run_id=run_id,
                spec=copy.deepcopy(spec),
                labels=dict(labels),
                created_at=now,
                updated_at=now,
                generation=uuid.uuid4().hex,
            )
            self._runs[run_id] = run
            self._events[run_id] = [
                EventRecord(run_id, 1, first.kind, now, first.actor, first.reason, copy.deepcopy(first.payload))
            ]
            return run, True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def list_runs(self, *, labels: Mapping[str, str], limit: int, after: str | None) -> list[RunRecord]:
        with self._lock:
            runs = sorted(self._runs.values(), key=lambda r: r.run_id)
        return [
            r
            for r in runs
            if (after is None or r.run_id > after) and all(r.labels.get(k) == v for k, v in labels.items())
        ][:limit]

    def delete_run(self, run_id: str) -> bool:
        with self._lock:
            self._events.pop(run_id, None)
            return self._runs.pop(run_id, None) is not None

    def events(self, run_id: str, *, after: int = 0, limit: int | None = None) -> list[EventRecord]:
        with self._lock:
            out = [e for e in self._events.get(run_id, []) if e.seq > after]
        return out if limit is None else out[:limit]

    def watch(self) -> AlwaysFresh:
        return self._coherence

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[_MemoryTransaction]:
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise RunNotFound(detail=f"no run {run_id!r}")
            tx = _MemoryTransaction(run, list(self._events[run_id]))
            yield tx
            self._events[run_id].extend(tx.appended)
            self._runs[run_id] = tx.run
