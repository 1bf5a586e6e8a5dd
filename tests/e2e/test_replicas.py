"""Two server processes on one PostgreSQL database behave as one.

Four "ranks" of a distributed job lease the same steps, each request going to the replica the others did not
use last, while an operator posts changes and a reporter posts metrics (which trigger plateau reductions), also
alternating between replicas. Every step must come out with exactly one value across all responses, and a third
process that knows only the database (the recorded history) must compute those same values.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess

SPEC = {
    "param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.05}],
    "schedule": {"type": "OneCycleLR", "max_lr": [1.0, 0.5], "total_steps": 5000},
    "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 1, "cooldown": 0},
}
RANKS = 4
STEPS = 240
WINDOW = 4

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def replicas(tmp_path: Path, pg_database: Callable[[], str]) -> Any:
    url = pg_database()
    servers = [ServerProcess(tmp_path, "--store", url) for _ in range(2)]
    for s in servers:
        s.start()
    yield url, servers
    for s in servers:
        s.stop()


def test_replicas_serve_one_value_per_step(tmp_path: Path, replicas: Any) -> None:
    url, servers = replicas
    clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
    assert clients[0].put("/v1/runs/job", json={"spec": SPEC}).status_code == 201
    assert clients[1].put("/v1/runs/job", json={"spec": SPEC}).status_code == 200

    served: dict[int, set[tuple[float, ...]]] = defaultdict(set)
    failures: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def rank(r: int) -> None:
        for i, start in enumerate(range(0, STEPS, WINDOW)):
            http = clients[(r + i) % 2]
            response = http.get("/v1/runs/job/lr", params={"step": start, "count": WINDOW})
            if response.status_code != 200:
                failures.append(response.text)
                continue
            window = response.json()
            with lock:
                for k in range(window["count"]):
                    served[start + k].add(tuple(g["lr"][k] for g in window["groups"]))

    def operator() -> None:
        for i in itertools.count():
            if done.is_set():
                return
            change = {"op": "scale", "factor": 0.95} if i % 2 else {"op": "set", "lr": [0.2, 0.1], "until_step": None}
            response = clients[i % 2].post("/v1/runs/job/changes", json={**change, "reason": f"op{i}"})
            if response.status_code != 200:
                failures.append(response.text)
            time.sleep(0.02)

    def reporter() -> None:
        for i in itertools.count():
            if done.is_set():
                return
            metric = {"step": i, "name": "loss", "value": 1.0}  # flat: with patience 1, reductions keep firing
            response = clients[i % 2].post("/v1/runs/job/metrics", json=metric)
            if response.status_code != 200:
                failures.append(response.text)
            time.sleep(0.01)

    background = [threading.Thread(target=operator), threading.Thread(target=reporter)]
    ranks = [threading.Thread(target=rank, args=(r,)) for r in range(RANKS)]
    for t in background + ranks:
        t.start()
    for t in ranks:
        t.join()
    done.set()
    for t in background:
        t.join()
    for c in clients:
        c.close()

    assert not failures, failures[:5]
    assert sorted(served) == list(range(STEPS))
    ambiguous = {step: values for step, values in served.items() if len(values) != 1}
    assert not ambiguous, f"steps served with several values: {dict(list(ambiguous.items())[:5])}"

    # A third process, which has only the database: the history explains every value served.
    fresh = ServerProcess(tmp_path, "--store", url)
    with fresh, httpx.Client(base_url=fresh.url, timeout=30) as http:
        run = http.get("/v1/runs/job").json()
        assert run["horizon"] == STEPS - 1
        events = http.get("/v1/runs/job/events", params={"limit": 1000}).json()["events"]
        kinds = {e["kind"] for e in events}
        assert {"change", "metric", "reduction"} <= kinds, kinds
        assert run["revision"] == sum(1 for e in events if e["kind"] == "change")
        curve = http.get("/v1/runs/job/curve", params={"stop": STEPS}).json()
        for i, step in enumerate(curve["steps"]):
            assert {tuple(g["lr"][i] for g in curve["groups"])} == served[step], f"step {step}"
        # The writes really interleaved with the leases: changes and reductions took effect inside the
        # served range, so the values above were not simply one untouched schedule.
        inside = {m["kind"] for m in curve["markers"] if 0 < m["step"] < STEPS}
        assert {"change", "reduction"} <= inside, curve["markers"][:5]
