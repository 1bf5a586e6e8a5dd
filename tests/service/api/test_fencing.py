"""Fencing without gaps: every write form carries an incarnation, and nothing from an earlier launch gets through.

- A resume naming a stale incarnation is refused (409), unless its key names the resume that made the current
  incarnation (the ranks of one launch share a key).
- The single-metric body takes ``incarnation`` like the batch; a stale one is a 409.
- Once a run has resumed, a write that names no incarnation (metric, new-step lease, applied) is a 409 and
  records nothing, so it can never block what the live incarnation records. Reads of served steps stay open.
"""

from __future__ import annotations

import httpx

from tests.service.api.conftest import create_run
from tests.service.api.test_problems import assert_problem


def _resumed_at(client: httpx.Client, step: int, **body: object) -> int:
    response = client.post("/v1/runs/run-1/resume", json={"step": step, **body})
    assert response.status_code == 200, response.text
    incarnation: int = response.json()["incarnation"]
    return incarnation


def test_a_resume_from_a_stale_incarnation_is_refused(client: httpx.Client) -> None:
    create_run(client)
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 50}).status_code == 200
    assert _resumed_at(client, 20, incarnation=1, key="launch-2") == 2
    assert _resumed_at(client, 30, incarnation=2, key="launch-3") == 3
    # a zombie of launch 1 wakes up and "resumes": it must not fence the live job
    body = assert_problem(
        client.post("/v1/runs/run-1/resume", json={"step": 5, "incarnation": 1}), 409, "stale-incarnation"
    )
    assert body["incarnation"] == 3
    run = client.get("/v1/runs/run-1").json()
    assert (run["incarnation"], run["horizon"]) == (3, 30)
    # a rank of launch 3 that has not seen incarnation 3 yet repeats the keyed resume: the same answer, no 409
    assert _resumed_at(client, 30, incarnation=2, key="launch-3") == 3
    # a keyed resume of an older launch is the answer it had, not a new incarnation
    assert _resumed_at(client, 20, incarnation=1, key="launch-2") == 2
    assert client.get("/v1/runs/run-1").json()["incarnation"] == 3


def test_the_single_metric_body_is_fenced(client: httpx.Client) -> None:
    create_run(client)
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 120})
    assert _resumed_at(client, 100, incarnation=1) == 2
    zombie = client.post(
        "/v1/runs/run-1/metrics", json={"step": 150, "name": "val_loss", "value": 123.0, "incarnation": 1}
    )
    assert assert_problem(zombie, 409, "stale-incarnation")["incarnation"] == 2
    live = client.post("/v1/runs/run-1/metrics", json={"step": 150, "name": "val_loss", "value": 0.5, "incarnation": 2})
    assert live.status_code == 200, live.text
    assert [m["value"] for m in live.json()["accepted"]] == [0.5]


def test_an_unfenced_write_after_a_resume_cannot_block_the_live_incarnation(client: httpx.Client) -> None:
    create_run(client)
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 120})
    # before any resume an unfenced write is the current incarnation's (curl, simple scripts)
    assert client.post("/v1/runs/run-1/metrics", json={"step": 3, "name": "val_loss", "value": 1.0}).status_code == 200
    assert _resumed_at(client, 100) == 2
    unfenced = {"step": 150, "name": "val_loss", "value": 123.0}
    body = assert_problem(client.post("/v1/runs/run-1/metrics", json=unfenced), 409, "stale-incarnation")
    assert body["incarnation"] == 2
    assert any(e["loc"] == ["incarnation"] for e in body["errors"])
    batch = {"metrics": [unfenced]}
    assert_problem(client.post("/v1/runs/run-1/metrics", json=batch), 409, "stale-incarnation")
    # nothing was recorded: the live worker's value for step 150 goes in
    live = client.post("/v1/runs/run-1/metrics", json={**unfenced, "value": 0.4, "incarnation": 2})
    assert live.status_code == 200, live.text
    assert live.json()["duplicates"] == []
    # new steps need the incarnation too (a lease that freezes steps is a write)...
    assert_problem(client.get("/v1/runs/run-1/lr", params={"step": 101, "count": 4}), 409, "stale-incarnation")
    assert client.get("/v1/runs/run-1").json()["horizon"] == 100
    applied = {"start": 101, "stop": 110, "last_seq": 1}
    assert_problem(client.post("/v1/runs/run-1/applied", json=applied), 409, "stale-incarnation")
    # ...while served steps stay readable without it
    assert client.get("/v1/runs/run-1/lr", params={"step": 90, "count": 11}).status_code == 200
    assert client.get("/v1/runs/run-1/lr", params={"step": 101, "count": 4, "incarnation": 2}).status_code == 200


def test_incarnation_zero_or_negative_is_invalid(client: httpx.Client) -> None:
    create_run(client)
    for body in (
        {"step": 1, "name": "loss", "value": 1.0, "incarnation": 0},
        {"metrics": [{"step": 1, "name": "loss", "value": 1.0}], "incarnation": -1},
    ):
        problem = assert_problem(client.post("/v1/runs/run-1/metrics", json=body), 422, "invalid-input")
        assert any("incarnation" in e["loc"] for e in problem["errors"]), problem
    assert_problem(client.post("/v1/runs/run-1/resume", json={"step": 0, "incarnation": 0}), 422, "invalid-input")
