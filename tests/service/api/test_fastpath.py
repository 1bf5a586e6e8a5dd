"""The frozen-lease fast path answers what the route would, byte for byte, and steps aside for anything else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lrserve.service.api import routes_lr
from tests.service.api.conftest import Serve, bearer, create_run, token_configs
from tests.service.api.test_problems import assert_problem


@pytest.fixture
def slow_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """One entry per answer the regular route encodes (the fast path encodes its own)."""
    calls: list[Any] = []
    real = routes_lr.lease_json

    def spy(data: Any) -> bytes:
        calls.append(data)
        return real(data)

    monkeypatch.setattr(routes_lr, "lease_json", spy)
    return calls


@pytest.fixture
def guarded(serve: Serve) -> httpx.Client:
    client = serve(tokens=token_configs())
    create_run(client, headers=bearer("admin"))
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 100}, headers=bearer("train")).status_code == 200
    return client


def test_frozen_reads_skip_the_route_and_match_it(guarded: httpx.Client, slow_calls: list[Any]) -> None:
    fast = guarded.get("/v1/runs/run-1/lr", params={"step": 10, "count": 5}, headers=bearer("train"))
    assert fast.status_code == 200
    assert slow_calls == []
    # An unknown extra parameter makes the fast path step aside; the route ignores it and answers the same.
    slow = guarded.get("/v1/runs/run-1/lr", params={"step": 10, "count": 5, "x": 1}, headers=bearer("train"))
    assert len(slow_calls) == 1
    assert slow.content == fast.content
    assert slow.headers["content-type"] == fast.headers["content-type"]
    assert slow.headers["content-length"] == fast.headers["content-length"]


def test_a_large_window_is_never_evaluated_on_the_event_loop(guarded: httpx.Client, slow_calls: list[Any]) -> None:
    train = bearer("train")
    assert guarded.get("/v1/runs/run-1/lr", params={"step": 100, "count": 30_000}, headers=train).status_code == 200
    assert len(slow_calls) == 1  # a write: the route
    # served, but never evaluated as this window, and too large to evaluate on the loop: the route evaluates it
    first = guarded.get("/v1/runs/run-1/lr", params={"step": 101, "count": 29_999}, headers=train)
    assert len(slow_calls) == 2
    # evaluated now: from the window cache, on the fast path
    again = guarded.get("/v1/runs/run-1/lr", params={"step": 101, "count": 29_999}, headers=train)
    assert len(slow_calls) == 2
    assert again.content == first.content


def test_admin_token_and_incarnation_take_the_fast_path(guarded: httpx.Client, slow_calls: list[Any]) -> None:
    params = {"step": 0, "count": 100, "incarnation": 1}  # the window the fixture leased: evaluated already
    assert guarded.get("/v1/runs/run-1/lr", params=params, headers=bearer("admin")).status_code == 200
    assert slow_calls == []


@pytest.mark.parametrize(
    ("params", "headers", "status", "type_"),
    [
        ({"step": 100}, bearer("train"), 200, None),  # past the horizon: a write
        ({"step": 5}, {}, 401, "unauthorized"),
        ({"step": 5}, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ({"step": 5}, {"Authorization": "Basic x"}, 401, "unauthorized"),
        ({"step": 5}, bearer("read"), 403, "forbidden"),
        ({"step": 5, "count": 0}, bearer("train"), 422, "invalid-input"),
        ({"step": 5, "count": 10**6}, bearer("train"), 422, "invalid-input"),
        ({"step": "five"}, bearer("train"), 422, "invalid-input"),
        ({"step": 5, "incarnation": 0}, bearer("train"), 422, "invalid-input"),
        ({"step": 5, "incarnation": 7}, bearer("train"), 422, "invalid-input"),
        ({"count": 2}, bearer("train"), 422, "invalid-input"),
    ],
)
def test_everything_else_goes_to_the_route(
    guarded: httpx.Client,
    slow_calls: list[Any],
    params: dict[str, Any],
    headers: dict[str, str],
    status: int,
    type_: str | None,
) -> None:
    response = guarded.get("/v1/runs/run-1/lr", params=params, headers=headers)
    if type_ is None:
        assert response.status_code == status
    else:
        assert_problem(response, status, type_)


def test_stale_incarnation_and_unknown_run_go_to_the_route(guarded: httpx.Client) -> None:
    guarded.post("/v1/runs/run-1/resume", json={"step": 50}, headers=bearer("train"))
    stale = guarded.get("/v1/runs/run-1/lr", params={"step": 5, "incarnation": 1}, headers=bearer("train"))
    assert_problem(stale, 409, "stale-incarnation")
    assert_problem(guarded.get("/v1/runs/nope/lr", params={"step": 0}, headers=bearer("train")), 404, "run-not-found")
    bad_id = guarded.get("/v1/runs/n%C3%A9/lr", params={"step": 0}, headers=bearer("train"))
    assert_problem(bad_id, 422, "invalid-input")


def test_open_server_fast_path(client: httpx.Client, slow_calls: list[Any]) -> None:
    create_run(client)
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 10})
    assert len(slow_calls) == 1
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 10}).status_code == 200
    assert len(slow_calls) == 1
