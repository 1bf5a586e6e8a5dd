"""Kill -9 the server while a training client writes; restart it; nothing acknowledged is lost or altered.

A client leases windows of steps, posts a metric per window (values that make the plateau rules fire) and now and
then a change, retrying through the outages exactly as a real worker would (a lease or a metric may be repeated:
both are idempotent; a change carries ``expected_revision``, so a retry after an unacknowledged success is
recognised as a revision conflict). Meanwhile another thread SIGKILLs the server at random moments and starts a
new one. Afterwards a fresh process must hold every acknowledged write, and every step ever served must have
kept the one value it was served with.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess

SPEC = {
    "param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.01}],
    "schedule": {"type": "CosineAnnealingLR", "T_max": 500, "eta_min": 0.0001},
    "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 2},
}
WINDOW = 5
KILLS = 3

pytestmark = pytest.mark.slow


@dataclass
class Ledger:
    """What the server acknowledged (a 2xx reached the client)."""

    served: dict[int, list[tuple[float, ...]]] = field(default_factory=dict)  # step -> per group
    metrics: set[tuple[int, str, float]] = field(default_factory=set)
    changes: dict[int, int] = field(default_factory=dict)  # revision -> from_step
    outages: int = 0

    def record_window(self, window: dict[str, Any]) -> None:
        for i in range(window["count"]):
            values = tuple(g["lr"][i] for g in window["groups"])
            self.served.setdefault(window["start"] + i, []).append(values)


def call(http: httpx.Client, ledger: Ledger, method: str, path: str, deadline: float, **kw: Any) -> httpx.Response:
    """The request, retried through connection failures (the server is down or restarting)."""
    while True:
        try:
            return http.request(method, path, **kw)
        except httpx.TransportError:
            ledger.outages += 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def train(http: httpx.Client, ledger: Ledger, keep_going: Callable[[], bool], deadline: float) -> None:
    rng = random.Random(7)
    revision, window_start, loss = 0, 0, 1.0
    while keep_going() or window_start < 60 * WINDOW:
        lr = call(http, ledger, "GET", "/v1/runs/job/lr", deadline, params={"step": window_start, "count": WINDOW})
        assert lr.status_code == 200, lr.text
        ledger.record_window(lr.json())
        step = window_start + WINDOW - 1
        loss = loss * 0.97 if rng.random() < 0.4 else loss * 1.01  # plateaus now and then
        metric = {"step": step, "name": "loss", "value": round(loss, 6)}
        posted = call(http, ledger, "POST", "/v1/runs/job/metrics", deadline, json=metric)
        assert posted.status_code == 200, posted.text
        ledger.metrics.add((step, "loss", metric["value"]))
        if rng.random() < 0.15:
            change = {"op": "scale", "factor": 0.9, "expected_revision": revision, "reason": f"w{window_start}"}
            answer = call(http, ledger, "POST", "/v1/runs/job/changes", deadline, json=change)
            if answer.status_code == 200:
                ledger.changes[answer.json()["revision"]] = answer.json()["from_step"]
                revision += 1
            else:  # an earlier attempt committed but its answer was lost in a kill
                assert answer.status_code == 409, answer.text
                assert answer.json()["revision"] == revision + 1
                revision += 1
        window_start += WINDOW


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, request: pytest.FixtureRequest, backend: str) -> None:
    url = f"sqlite:///{tmp_path / 'lrserve.db'}" if backend == "sqlite" else request.getfixturevalue("pg_database")()
    server = ServerProcess(tmp_path, "--store", url).start()
    ledger = Ledger()
    deadline = time.monotonic() + 240
    killer_done = threading.Event()

    def killer() -> None:
        rng = random.Random(11)
        try:
            for _ in range(KILLS):
                time.sleep(rng.uniform(0.3, 1.2))
                server.restart()
        finally:
            killer_done.set()

    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.put("/v1/runs/job", json={"spec": SPEC}).status_code == 201
            thread = threading.Thread(target=killer)
            thread.start()
            train(http, ledger, lambda: not killer_done.is_set(), deadline)
            thread.join()
        assert server.starts == KILLS + 1
        assert ledger.outages > 0, "the kills never hit a request"
        assert ledger.changes, "no change was acknowledged"
        server.restart()  # the checks below read from a process that has only the database
        with httpx.Client(base_url=server.url, timeout=30) as http:
            check(http, ledger)
    finally:
        server.stop()


def check(http: httpx.Client, ledger: Ledger) -> None:
    events = http.get("/v1/runs/job/events", params={"limit": 1000}).json()["events"]
    assert events[-1]["seq"] == len(events) < 1000
    recorded_metrics = {
        (e["payload"]["step"], e["payload"]["name"], e["payload"]["value"]) for e in events if e["kind"] == "metric"
    }
    assert ledger.metrics <= recorded_metrics
    recorded_changes = {e["payload"]["revision"]: e["payload"]["from_step"] for e in events if e["kind"] == "change"}
    for revision, from_step in ledger.changes.items():
        assert recorded_changes[revision] == from_step
    assert any(e["kind"] == "reduction" for e in events), "the plateau never fired: the test lost its point"

    last = max(ledger.served)
    run = http.get("/v1/runs/job").json()
    assert run["horizon"] >= last
    for step, seen in ledger.served.items():
        assert len(set(seen)) == 1, f"step {step} was served with {set(seen)}"
    curve = http.get("/v1/runs/job/curve", params={"stop": last + 1}).json()
    for i, step in enumerate(curve["steps"]):
        assert tuple(g["lr"][i] for g in curve["groups"]) == ledger.served[step][0], f"step {step} changed"
    again = http.get("/v1/runs/job/lr", params={"step": 0, "count": last + 1}).json()
    assert [tuple(g["lr"][i] for g in again["groups"]) for i in range(last + 1)] == [
        ledger.served[s][0] for s in range(last + 1)
    ]
