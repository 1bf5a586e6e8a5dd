"""The run model on the real SQL stores: any history gives the same LRs live, on a replay, and in memory.

``tests/service/domain/test_run_model.py`` checks the model's invariants on random histories with the in-memory
store. Here the same histories (its ``ops`` strategy: leases, metrics, changes of every kind, resumes) run on
SQLite and PostgreSQL, in lockstep with a ``MemoryStore`` twin:

- every lease and every write answers exactly as the twin's (same values, same refusals);
- at the end, a new ``RunService`` on a new ``SqlStore`` (its own engine: fresh process state, nothing cached)
  folds the stored history into the same curve, markers, revision, horizon and incarnation.

So what the database keeps (JSON payloads with NaN, timestamps, ordering) is enough to recompute every LR.
Each example uses a run of its own on the backend's one database.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from lrserve.schemas.errors import LrserveError
from lrserve.schemas.wire import MetricBatch, MetricIn, ResumeIn, RunCreate
from lrserve.service.runs import RunService
from lrserve.service.store.memory import MemoryStore
from lrserve.service.store.sql import SqlStore
from tests.service.domain.test_run_model import CHANGE, SPEC, Change, Lease, Metric, ops

CURVE_STOP = 80
_ids = itertools.count()


def _outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    """What a call answered, comparable across stores: its value, or the problem type it raised."""
    try:
        return "ok", call()
    except LrserveError as e:
        return "error", (e.problem_type, e.detail)


def _apply(svc: RunService, run_id: str, op: Any, cursor: dict[str, int]) -> Any:
    """One operation of a history; ``cursor`` holds the worker's next step and incarnation."""
    if isinstance(op, Lease):
        window = svc.lease(run_id, cursor["step"], op.count, cursor["incarnation"])
        cursor["step"] += op.count
        return window.lr.tolist(), window.horizon, window.revision
    if isinstance(op, Metric):
        batch = MetricBatch(
            metrics=[MetricIn(step=op.step, name="loss", value=op.value)], incarnation=cursor["incarnation"]
        )
        result = svc.post_metrics(run_id, batch, "w")
        return result.model_dump(mode="json")
    if isinstance(op, Change):
        result = svc.change(run_id, CHANGE.validate_python(op.body), "admin")
        return result.model_dump(mode="json")
    k = max(0, cursor["step"] - op.back)
    resumed = svc.resume(run_id, ResumeIn(step=k, incarnation=cursor["incarnation"]), "w")
    cursor["incarnation"], cursor["step"] = resumed.incarnation, k + 1
    return resumed.model_dump(mode="json")


def _same(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    # NaN metrics come back as NaN from both; compare through repr so NaN equals NaN.
    return repr(a) == repr(b)


def check_history(url: str, store: SqlStore, history: list[Any]) -> None:
    run_id = f"replay-{next(_ids)}"
    create = RunCreate.model_validate({"spec": SPEC})
    live, twin = RunService(store), RunService(MemoryStore())
    live.ensure_run(run_id, create, "test")
    twin.ensure_run(run_id, create, "test")
    live_cursor, twin_cursor = {"step": 0, "incarnation": 1}, {"step": 0, "incarnation": 1}
    for i, op in enumerate(history):
        got = _outcome(lambda op=op: _apply(live, run_id, op, live_cursor))
        want = _outcome(lambda op=op: _apply(twin, run_id, op, twin_cursor))
        assert _same(got, want), f"op {i} {op}: store answered {got}, memory {want}"

    final = live.curve(run_id, 0, CURVE_STOP, 1)
    np.testing.assert_array_equal(final.lr, twin.curve(run_id, 0, CURVE_STOP, 1).lr)
    fresh_store = SqlStore(url)
    try:
        replayed = RunService(fresh_store)
        again = replayed.curve(run_id, 0, CURVE_STOP, 1)
        np.testing.assert_array_equal(again.lr, final.lr)
        if final.momentum is not None:
            np.testing.assert_array_equal(again.momentum, final.momentum)
        assert [(m.step, m.kind, m.detail) for m in again.markers] == [
            (m.step, m.kind, m.detail) for m in final.markers
        ]
        a, b = replayed.get_run(run_id), live.get_run(run_id)
        assert (a.revision, a.horizon, a.incarnation, a.current_lr) == (
            b.revision,
            b.horizon,
            b.incarnation,
            b.current_lr,
        )
        # The replayed process serves what the live one served, from the store alone.
        if b.horizon >= 0:
            window = replayed.lease(run_id, 0, b.horizon + 1, b.incarnation)
            np.testing.assert_array_equal(window.lr, live.lease(run_id, 0, b.horizon + 1, b.incarnation).lr)
    finally:
        fresh_store.close()


HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


def _open(url: str) -> Iterator[tuple[str, SqlStore]]:
    store = SqlStore(url)
    store.migrate()
    yield url, store
    store.close()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SqlStore]]:
    yield from _open(f"sqlite:///{tmp_path_factory.mktemp('replay') / 'lrserve.db'}")


@pytest.fixture(scope="module")
def pg_store(pg_url: str) -> Iterator[tuple[str, SqlStore]]:
    yield from _open(pg_url)


@settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
@given(history=ops)
def test_sqlite_replays_to_the_same_lrs(sqlite_store: tuple[str, SqlStore], history: list[Any]) -> None:
    check_history(*sqlite_store, history)


@pytest.mark.postgres
@settings(max_examples=30, deadline=None, suppress_health_check=HEALTH)
@given(history=ops)
def test_postgres_replays_to_the_same_lrs(pg_store: tuple[str, SqlStore], history: list[Any]) -> None:
    check_history(*pg_store, history)
