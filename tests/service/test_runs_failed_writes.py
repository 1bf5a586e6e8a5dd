"""A write whose commit fails leaves nothing behind in memory: no step is served as frozen unless its horizon
committed, and no value is computed from an event that did not commit.

Found by tests/faults/test_sqlite_storage.py: with the SQLite file read-only under load, a lease that extended the
horizon failed at its commit (503), yet a worker waiting on the same run was then served those steps from memory
as if frozen; a change recorded afterwards (from the horizon the database still had) changed them: two values for
one step. Here a store whose commit fails on demand reproduces the interleaving deterministically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from lrserve.schemas.errors import Unavailable
from lrserve.schemas.wire import ChangeIn, MetricBatch, MetricIn, RunCreate
from lrserve.service.runs import RunService
from lrserve.service.store.memory import MemoryStore

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "g", "lr": 0.1}],
    "schedule": {"type": "CosineAnnealingLR", "T_max": 1000},
    "plateau": {"metric": "loss", "patience": 0, "factor": 0.5},
}
CHANGE = TypeAdapter(ChangeIn)


class FlakyCommits(MemoryStore):
    """A MemoryStore whose next commit (when armed) waits for ``release`` and then fails, as a read-only or full
    disk makes SQLite's COMMIT fail: the block ran, nothing is stored."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.committing = threading.Event()
        self.release = threading.Event()

    @contextmanager
    def transaction(self, run_id: str) -> Iterator[Any]:
        with super().transaction(run_id) as tx:
            yield tx
            if self.armed:
                self.armed = False
                self.committing.set()
                self.release.wait(10)
                raise Unavailable(detail="the database is unavailable: disk I/O error")


def _service() -> tuple[RunService, FlakyCommits]:
    store = FlakyCommits()
    service = RunService(store)
    service.ensure_run("r", RunCreate.model_validate({"spec": SPEC}), "test")
    service.lease("r", 0, 10, None)  # horizon 9
    return service, store


def _while_a_commit_fails(store: FlakyCommits, first: Any, second: Any) -> dict[str, Any]:
    """``first()`` fails at its commit while ``second()`` waits for the same run; what each one got."""
    got: dict[str, Any] = {}

    def run(name: str, call: Any) -> None:
        try:
            got[name] = call()
        except Exception as e:
            got[name] = e

    store.armed = True
    a = threading.Thread(target=run, args=("first", first))
    a.start()
    assert store.committing.wait(10)
    b = threading.Thread(target=run, args=("second", second))
    b.start()
    time.sleep(0.2)  # the second call is now waiting for the run's lock, holding the run's cached entry
    store.release.set()
    a.join(10)
    b.join(10)
    assert isinstance(got["first"], Unavailable)
    return got


def test_a_lease_whose_commit_failed_is_not_served_as_frozen_to_the_next_caller() -> None:
    service, store = _service()
    got = _while_a_commit_fails(
        store, lambda: service.lease("r", 10, 10, None), lambda: service.lease("r", 10, 10, None)
    )
    served = got["second"]
    assert not isinstance(served, Exception), served
    # The second lease was answered: so its steps must be frozen in the store, not only in memory.
    assert store.get_run("r").horizon == 19
    service.change("r", CHANGE.validate_python({"op": "scale", "factor": 0.5}), "admin")
    again = service.lease("r", 10, 10, None)
    np.testing.assert_array_equal(again.lr, served.lr)
    assert RunService(store).curve("r", 10, 20, 1).lr.tolist() == served.lr.tolist()


def test_a_change_whose_commit_failed_does_not_shape_what_is_planned() -> None:
    service, store = _service()
    halve = CHANGE.validate_python({"op": "scale", "factor": 0.5})
    got = _while_a_commit_fails(
        store, lambda: service.change("r", halve, "admin"), lambda: service.curve("r", 0, 30, 1)
    )
    planned = got["second"]
    assert not isinstance(planned, Exception), planned
    assert [e.kind for e in store.events("r")] == ["created"]  # the change never committed...
    assert planned.revision == 0 and planned.markers == []  # ...so the plan shown has no trace of it
    np.testing.assert_array_equal(planned.lr, RunService(store).curve("r", 0, 30, 1).lr)


def test_a_metric_whose_commit_failed_leaves_no_reduction_behind() -> None:
    service, store = _service()
    batch = MetricBatch(metrics=[MetricIn(step=s, name="loss", value=1.0) for s in range(3)])
    got = _while_a_commit_fails(store, lambda: service.post_metrics("r", batch, "w"), lambda: service.get_run("r"))
    run = got["second"]
    assert not isinstance(run, Exception), run
    assert run.plateau is not None and run.plateau.num_reductions == 0
    assert run.current_lr == RunService(store).get_run("r").current_lr


def test_after_a_failed_commit_the_run_is_read_again_from_the_store() -> None:
    service, store = _service()
    got = _while_a_commit_fails(store, lambda: service.lease("r", 10, 10, None), lambda: service.get_run("r"))
    assert got["second"].horizon == 9  # the failed lease's horizon did not stick
    assert service.lease("r", 10, 10, None).horizon == 19  # and the run works on: the lease again, committed
