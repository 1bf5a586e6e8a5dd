"""Two replicas on one PostgreSQL database serve one value per step, whatever windows the leases ask for.

Leases of different sizes and offsets (a window below a cosine restart, one crossing it, single steps, a
window past a SequentialLR milestone into a MultiplicativeLR scan) alternate between the two servers; every
step's LR must have the same float64 bits in every answer and in ``/curve`` (JSON floats round-trip).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess

pytestmark = [pytest.mark.postgres]

GROUPS = [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.03}]
RUNS: dict[str, dict[str, Any]] = {
    # the reported bug: steps below the cosine's restart (1001) came out of the closed form or of the scan
    "chain": {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "StepLR", "step_size": 30, "gamma": 0.97},
            {"type": "CosineAnnealingLR", "T_max": 1000},
        ],
    },
    # a scan entered at a milestone (MultiplicativeLR continues the LR of the step before it)
    "continued": {
        "type": "SequentialLR",
        "milestones": [300],
        "schedulers": [
            {"type": "LinearLR", "start_factor": 0.1, "total_iters": 300},
            {"type": "MultiplicativeLR", "lr_lambda": "0.9995 if step % 3 else 0.999"},
        ],
    },
    # past T_max torch's recursion is replayed per period
    "cosine": {"type": "CosineAnnealingLR", "T_max": 400, "eta_min": 1e-4},
}
# (start, count): each replica in turn; sizes and offsets cut across the restarts (1001, 401, 1201, ...)
WINDOWS = [(0, 64), (32, 2000), (0, 1), (999, 5), (1000, 1), (1001, 1), (10, 3), (500, 1600), (2031, 1), (63, 1)]
SPAN = 2100


@pytest.fixture
def replicas(tmp_path: Path, pg_database: Callable[[], str]) -> Iterator[list[httpx.Client]]:
    url = pg_database()
    servers = [ServerProcess(tmp_path, "--store", url) for _ in range(2)]
    for s in servers:
        s.start()
    clients = [httpx.Client(base_url=s.url, timeout=60) for s in servers]
    yield clients
    for c in clients:
        c.close()
    for s in servers:
        s.stop()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_window_gives_each_step_one_value(replicas: list[httpx.Client], name: str) -> None:
    spec = {"param_groups": GROUPS, "schedule": RUNS[name]}
    assert replicas[0].put(f"/v1/runs/{name}", json={"spec": spec}).status_code == 201

    served: dict[int, set[tuple[float, ...]]] = defaultdict(set)
    for i, (start, count) in enumerate(WINDOWS):
        response = replicas[i % 2].get(f"/v1/runs/{name}/lr", params={"step": start, "count": count})
        assert response.status_code == 200, response.text
        window = response.json()
        assert window["start"] == start and window["count"] == count
        for k in range(count):
            served[start + k].add(tuple(g["lr"][k] for g in window["groups"]))
    # the same steps again, now frozen, from the other replica than the one that first served them
    for i, (start, count) in enumerate(WINDOWS):
        window = replicas[(i + 1) % 2].get(f"/v1/runs/{name}/lr", params={"step": start, "count": count}).json()
        for k in range(count):
            served[start + k].add(tuple(g["lr"][k] for g in window["groups"]))

    ambiguous = {step: values for step, values in served.items() if len(values) != 1}
    assert not ambiguous, f"steps served with several values: {dict(sorted(ambiguous.items())[:5])}"
    for http in replicas:
        curve = http.get(f"/v1/runs/{name}/curve", params={"start": 0, "stop": SPAN}).json()
        for i, step in enumerate(curve["steps"]):
            if step in served:
                assert {tuple(g["lr"][i] for g in curve["groups"])} == served[step], f"step {step}"
    assert len(served) > 2000  # the windows really covered the restarts and the milestone
