"""Over HTTP, on two real server processes over one PostgreSQL database: the issue's three reproductions.

Replica A has the run cached and answers its served steps from memory (the fast path). Replica B deletes it,
re-creates the id with another spec, or resumes it. Once the configured staleness bound
(``LRSERVE_REPLICA_STALENESS``) has passed since B answered, A must answer as B does: 404, the new values, 409 for
the old incarnation. (Waiting out the bound is the property under test, not an assumed speed.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess

STALENESS = 0.5
SPEC = {"param_groups": [{"name": "all", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 3, "gamma": 0.5}}
OTHER = {"param_groups": [{"name": "all", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 2, "gamma": 0.1}}

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def replicas(tmp_path: Path, pg_database: Callable[[], str]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    url = pg_database()
    env = {**os.environ, "LRSERVE_REPLICA_STALENESS": str(STALENESS)}
    servers = [ServerProcess(tmp_path, "--store", url, env=env) for _ in range(2)]
    for s in servers:
        s.start()
    clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
    yield clients[0], clients[1]
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


def _lease(http: httpx.Client, incarnation: int = 1) -> httpx.Response:
    return http.get("/v1/runs/job/lr", params={"step": 0, "count": 8, "incarnation": incarnation})


def _warm(a: httpx.Client) -> list[float]:
    """Serve steps 0..7 on A and ask again until A answers from memory (its lease counter says so)."""
    first = _lease(a)
    assert first.status_code == 200, first.text
    before = _cache_hits(a)
    again = _lease(a)
    assert again.json() == first.json()
    assert _cache_hits(a) > before, "A did not answer the served window from memory"
    lr: list[float] = first.json()["groups"][0]["lr"]
    return lr


def _cache_hits(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("lrserve_leases_total") and 'source="cache"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _after_the_bound(since: float) -> None:
    time.sleep(max(0.0, since + STALENESS - time.monotonic()))


def test_delete_recreate_and_resume_on_b_reach_a(replicas: Any) -> None:
    a, b = replicas
    assert a.put("/v1/runs/job", json={"spec": SPEC}).status_code == 201
    old = _warm(a)

    # B deletes: A stops answering for it
    assert b.delete("/v1/runs/job").status_code == 204
    _after_the_bound(time.monotonic())
    assert _lease(a).status_code == 404

    # B re-creates the id with another spec: A serves the new values, never the old ones
    assert b.put("/v1/runs/job", json={"spec": OTHER}).status_code == 201
    new = b.get("/v1/runs/job/lr", params={"step": 0, "count": 8}).json()["groups"][0]["lr"]
    assert new != old
    _after_the_bound(time.monotonic())
    assert _warm(a) == new

    # B resumes and a change follows: a zombie asking A with incarnation 1 is fenced
    resumed = b.post("/v1/runs/job/resume", json={"step": 4, "incarnation": 1})
    assert resumed.json()["incarnation"] == 2
    assert b.post("/v1/runs/job/changes", json={"op": "scale", "factor": 0.5}).status_code == 200
    _after_the_bound(time.monotonic())
    zombie = a.get("/v1/runs/job/lr", params={"step": 0, "count": 4, "incarnation": 1})
    assert zombie.status_code == 409, zombie.text
    assert zombie.json()["incarnation"] == 2
    live_a, live_b = _lease(a, 2).json(), _lease(b, 2).json()
    assert live_a["groups"] == live_b["groups"]
