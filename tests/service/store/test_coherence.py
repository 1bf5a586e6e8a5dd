"""Replica coherence: a replica never answers for a deleted, re-created or resumed run past the staleness bound.

Two ``RunService``s on two ``SqlStore``s over one PostgreSQL database are two replicas (what matters is that they
share nothing but the database). Replica A caches a run and answers its served steps from memory; replica B then
deletes it, re-creates it with another spec, or resumes it. The bound under test (``store.coherence``): once
``staleness`` seconds have passed since B's commit, A answers as the store does — 404, the new generation's
values, 409 for the old incarnation — whatever the listener is doing. Waiting for the bound to pass is the
property itself, not an assumed speed; where the listener is quick, A also catches up well before it (checked by
waiting for the condition, not a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from lrserve.schemas.errors import RunNotFound, StaleIncarnation
from lrserve.schemas.wire import ResumeIn, RunCreate
from lrserve.service.domain.events import CHANGE_ADAPTER
from lrserve.service.runs import RunService
from lrserve.service.store.coherence import LISTENER_APPLICATION, AlwaysFresh, PgListener
from lrserve.service.store.memory import MemoryStore
from lrserve.service.store.sql import SqlStore

STALENESS = 0.6
SPEC = {"param_groups": [{"name": "all", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 5, "gamma": 0.5}}
OTHER = {"param_groups": [{"name": "all", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 2, "gamma": 0.1}}


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _past_the_bound(committed: float) -> None:
    """Wait until the staleness bound has passed since a commit that returned at ``committed``."""
    time.sleep(max(0.0, committed + STALENESS - time.monotonic()))


@pytest.fixture
def replicas(pg_empty_url: str) -> Iterator[tuple[RunService, RunService, SqlStore, SqlStore]]:
    stores = [SqlStore(pg_empty_url, staleness=STALENESS) for _ in range(2)]
    stores[0].migrate()
    services = [RunService(store) for store in stores]
    for store in stores:
        coherence = store.watch()
        assert isinstance(coherence, PgListener)
        _wait_for(coherence.fresh, "the listener's first ping")
    yield services[0], services[1], stores[0], stores[1]
    for store in stores:
        store.close()


def _create(svc: RunService, spec: dict[str, Any] = SPEC) -> None:
    svc.ensure_run("job", RunCreate.model_validate({"spec": spec}), "test")


def _cached(svc: RunService, incarnation: int | None = 1) -> Any:
    """A's answer from memory alone (the fast path's call), or None when it would ask the store."""
    return svc.lease_cached("job", 0, 10, incarnation)


@pytest.mark.postgres
def test_a_delete_on_another_replica_reaches_this_ones_cache(replicas: Any) -> None:
    a, b, _, _ = replicas
    _create(a)
    a.lease("job", 0, 10, 1)
    assert _cached(a) is not None  # answered from memory
    b.delete_run("job", "admin")
    committed = time.monotonic()
    _wait_for(lambda: _cached(a) is None, "A to drop the deleted run")
    _past_the_bound(committed)
    with pytest.raises(RunNotFound):
        a.lease("job", 0, 10, 1)


@pytest.mark.postgres
def test_a_re_created_namesake_is_never_served_the_old_values(replicas: Any) -> None:
    a, b, _, _ = replicas
    _create(a)
    old = a.lease("job", 0, 10, 1).lr.copy()
    b.delete_run("job", "admin")
    _create(b, OTHER)
    new = b.lease("job", 0, 10, 1).lr.copy()
    committed = time.monotonic()
    assert not np.array_equal(old, new)
    _past_the_bound(committed)
    np.testing.assert_array_equal(a.lease("job", 0, 10, 1).lr, new)
    cached = _cached(a)
    assert cached is not None
    np.testing.assert_array_equal(cached.lr, new)


@pytest.mark.postgres
def test_a_resume_on_another_replica_fences_a_zombie_here(replicas: Any) -> None:
    a, b, _, _ = replicas
    _create(a)
    a.lease("job", 0, 10, 1)
    assert _cached(a) is not None
    b.resume("job", ResumeIn(step=4, incarnation=1), "w")
    b.change("job", CHANGE_ADAPTER.validate_python({"op": "scale", "factor": 0.5}), "admin")
    committed = time.monotonic()
    _past_the_bound(committed)
    with pytest.raises(StaleIncarnation):
        a.lease("job", 0, 10, 1)
    with pytest.raises(StaleIncarnation):
        a.lease_cached("job", 0, 4, 1)  # steps 0..4 are still served (the resume was at 4), but not to a zombie
    # the live incarnation gets the new values on A as on B
    np.testing.assert_array_equal(a.lease("job", 0, 10, 2).lr, b.lease("job", 0, 10, 2).lr)


@pytest.mark.postgres
def test_a_lost_listener_stops_trust_in_memory_then_recovers(replicas: Any, pg_empty_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    a, _, store_a, _ = replicas
    _create(a)
    a.lease("job", 0, 10, 1)
    listener = store_a.watch()
    assert isinstance(listener, PgListener)
    connects = listener.connects
    database = make_url(pg_empty_url).database
    admin = make_url(pg_empty_url).set(database="postgres", drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = %s",
            (database, LISTENER_APPLICATION),
        ).fetchone()
    assert killed is not None and killed[0] == 2  # both replicas' listeners
    # Until it is back, memory is not trusted (at the latest once the bound has passed)...
    _wait_for(lambda: not listener.fresh() or listener.connects > connects, "the listener to notice")
    # ...the store still answers...
    np.testing.assert_array_equal(a.lease("job", 0, 10, 1).lr, a.curve("job", 0, 10, 1).lr)
    # ...and a reconnected listener, which dropped the cache, makes memory trusted again.
    _wait_for(lambda: listener.connects > connects and listener.fresh(), "the listener to reconnect")
    a.lease("job", 0, 10, 1)
    assert _cached(a) is not None


def test_a_load_that_read_before_an_invalidation_is_not_cached() -> None:
    """The race the epoch closes: A reads the run, B deletes it and A hears of it, then A's load finishes."""

    class Racy(MemoryStore):
        service: RunService | None = None

        def get_run(self, run_id: str) -> Any:
            record = super().get_run(run_id)
            if self.service is not None:
                self.service._run_changed(run_id)  # the notification lands while this load is under way
            return record

    store = Racy()
    svc = RunService(store)
    _create(svc)
    svc.lease("job", 0, 10, 1)
    svc._forget("job")
    store.service = svc
    svc.get_run("job")
    store.service = None
    assert _cached(svc) is None  # what that load read was not kept


def test_stores_no_other_process_writes_are_always_fresh(tmp_path: Any) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(store.watch(), AlwaysFresh)
    assert store.watch().fresh()
    assert MemoryStore().watch().fresh()
    store.close()


def test_a_refused_write_keeps_the_cached_run() -> None:
    """A zombie's refused write (409 before anything is written) must not force a replay of the run per request."""
    svc = RunService(MemoryStore())
    _create(svc)
    svc.lease("job", 0, 10, 1)
    svc.resume("job", ResumeIn(step=4, incarnation=1), "w")
    entry = svc._cache["job"]
    for _ in range(3):
        with pytest.raises(StaleIncarnation):
            svc.lease("job", 5, 10, 1)  # new steps: the write path
    assert svc._cache["job"] is entry
    assert entry.valid
    np.testing.assert_array_equal(svc.lease("job", 0, 10, 2).lr, svc.curve("job", 0, 10, 1).lr)
