"""Every request's cost is bounded by a documented budget (``service.budget``), checked before any work.

Each case is one of the worst cases found (issue: "one request can take minutes or gigabytes"); each must now be a
422 ``over-budget`` problem naming the budget, answered without doing the work (peak traced memory stays far below
what the work would allocate). Plus: the window cache keeps to its byte budget, and a slow evaluation on one run
no longer holds the store's write lock against another run's writes.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lrserve.schemas.wire import RunCreate
from lrserve.service.budget import Budget
from lrserve.service.runs import RunService
from lrserve.service.store.sql import SqlStore
from tests.service.api.conftest import create_run
from tests.service.api.test_problems import assert_problem

EXPR = " + ".join(f"0.001 * cos(step / {k + 1})" for k in range(24))  # ~200 nodes


def _groups(n: int) -> list[dict[str, Any]]:
    return [{"name": f"g{i}", "lr": 0.1} for i in range(n)]


def _over(response: httpx.Response, budget: str) -> dict[str, Any]:
    body = assert_problem(response, 422, "over-budget")
    assert body["budget"] == budget
    assert body["asked"] > body["limit"]
    assert budget in body["detail"]
    return body


def _peak_mb(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    tracemalloc.start()
    try:
        response = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return response, peak / 2**20


def test_a_curve_counts_points_times_groups(client: httpx.Client) -> None:
    spec = {"param_groups": _groups(64), "schedule": {"type": "CosineAnnealingLR", "T_max": 1000}}
    body = {"spec": spec, "start": 0, "stop": 1_000_000, "stride": 1}
    response, peak = _peak_mb(lambda: client.post("/v1/curves", json=body))
    _over(response, "max_values")
    assert peak < 100  # the answer would have been ~1.2 GB
    # the same curve of 2 groups with momentum is within the budget
    ok = {**body, "spec": {**spec, "param_groups": _groups(2)}}
    assert client.post("/v1/curves", json=ok, params={"format": "npy"}).status_code == 200


def test_a_walking_expression_is_priced_by_the_steps_it_walks(client: httpx.Client) -> None:
    spec = {"param_groups": _groups(1), "schedule": {"type": "MultiplicativeLR", "lr_lambda": f"0.99 + {EXPR}"}}
    far = {"spec": spec, "start": 10_000_000, "stop": 10_000_001, "stride": 1}
    _over(client.post("/v1/curves", json=far), "max_work")
    near = {"spec": spec, "start": 1000, "stop": 1001, "stride": 1}
    assert client.post("/v1/curves", json=near).status_code == 200
    # per-group expressions over a million points
    many = {
        "spec": {"param_groups": _groups(4), "schedule": {"type": "LambdaLR", "lr_lambda": [EXPR] * 4}},
        "start": 0,
        "stop": 1_000_000,
        "stride": 1,
    }
    _over(client.post("/v1/curves", json=many), "max_work")


def test_simulated_metrics_are_capped(client: httpx.Client) -> None:
    spec = {
        "param_groups": _groups(1),
        "schedule": {"type": "StepLR", "step_size": 10},
        "plateau": {"metric": "loss", "patience": 0},
    }
    metrics = [{"step": i, "name": "loss", "value": float(i)} for i in range(2_001)]
    body = {"spec": spec, "start": 0, "stop": 10, "stride": 1, "metrics": metrics}
    _over(client.post("/v1/curves", json=body), "max_preview_metrics")
    assert client.post("/v1/curves", json={**body, "metrics": metrics[:200]}).status_code == 200


def test_leases_and_dry_runs_count_groups(client: httpx.Client) -> None:
    spec = {"param_groups": _groups(256), "schedule": {"type": "StepLR", "step_size": 10}}
    create_run(client, spec=spec)
    _over(client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 100_000}), "max_values")
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1  # refused before it froze anything
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 1000}).status_code == 200
    dry = {"op": "scale", "factor": 0.5, "dry_run": True, "preview_steps": 1_000_000}
    _over(client.post("/v1/runs/run-1/changes", json=dry), "max_values")


def test_applied_is_capped_by_steps(client: httpx.Client) -> None:
    create_run(client, spec={"param_groups": _groups(8), "schedule": {"type": "StepLR", "step_size": 10}})
    huge = {"start": 0, "stop": 10_000_000, "last_seq": 1}
    response, peak = _peak_mb(lambda: client.post("/v1/runs/run-1/applied", json=huge))
    _over(response, "max_applied_steps")
    assert peak < 50
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1
    ok = client.post("/v1/runs/run-1/applied", json={"start": 0, "stop": 999_999, "last_seq": 1})
    assert ok.status_code == 200, ok.text


def test_budgets_are_settings(serve: Any) -> None:
    client = serve(limits={"max_values": 10})
    create_run(client, spec={"param_groups": _groups(2), "schedule": {"type": "StepLR", "step_size": 10}})
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 5}).status_code == 200
    assert _over(client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 6}), "max_values")["limit"] == 10


@pytest.fixture
def sqlite_service(tmp_path: Path) -> Iterator[RunService]:
    store = SqlStore(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    yield RunService(store, budget=Budget(), cache_bytes=200_000)
    store.close()


def test_the_window_cache_keeps_to_its_byte_budget(sqlite_service: RunService) -> None:
    svc = sqlite_service
    spec = {"param_groups": _groups(4), "schedule": {"type": "StepLR", "step_size": 10}}
    for r in range(5):
        svc.ensure_run(f"r{r}", RunCreate.model_validate({"spec": spec}), "t")
        for start in range(0, 20_000, 1000):
            svc.lease(f"r{r}", start, 1000, 1)
            svc.lease(f"r{r}", start, 1000, 1)  # served again: cached
    cache = svc._windows
    assert 0 < cache.bytes <= cache.max_bytes
    assert len(cache) < 100  # 100 windows of 32 KB were evaluated; about 6 fit
    # evicted windows are evaluated again, to the same values
    np.testing.assert_array_equal(svc.lease("r0", 0, 1000, 1).lr, svc.curve("r0", 0, 1000, 1).lr)


def test_a_slow_evaluation_does_not_hold_other_runs_writes(
    sqlite_service: RunService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite one write lock serves every run: evaluation must happen outside it (issue: a 19 s lease on one run
    made another run's new-step lease fail with 503 after 10 s)."""
    svc = sqlite_service
    spec = {"param_groups": _groups(1), "schedule": {"type": "StepLR", "step_size": 10}}
    for run_id in ("slow", "other"):
        svc.ensure_run(run_id, RunCreate.model_validate({"spec": spec}), "t")
    evaluating, release = threading.Event(), threading.Event()
    real = RunService._lease_data

    def slow(self: RunService, entry: Any, start: int, count: int) -> Any:
        if entry.run.run_id == "slow":
            evaluating.set()
            assert release.wait(60)
        return real(self, entry, start, count)

    monkeypatch.setattr(RunService, "_lease_data", slow)
    worker = threading.Thread(target=svc.lease, args=("slow", 0, 100, 1))
    worker.start()
    try:
        assert evaluating.wait(60)
        # the slow run's evaluation is under way: another run's write goes through meanwhile
        assert svc.lease("other", 0, 10, 1).horizon == 9
    finally:
        release.set()
        worker.join(60)
    assert svc.get_run("slow").horizon == 99
