"""Bounds on what a request may carry or ask for: 413 for bodies, 422 naming the parameter for the rest."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lrserve.schemas.wire import MAX_LEASE, MAX_METRICS_PER_BATCH
from lrserve.service.settings import Limits
from tests.service.api.conftest import SPEC, Serve, create_run
from tests.service.api.test_problems import assert_problem

SMALL = Limits(max_body_bytes=4096, max_lease=100, max_curve_points=1000)
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture
def small(serve: Serve) -> httpx.Client:
    client = serve(limits=SMALL)
    create_run(client)
    return client


def test_declared_oversized_body_is_413(small: httpx.Client) -> None:
    body = b'{"spec": ' + b" " * 5000 + b"null}"
    body_json = assert_problem(small.put("/v1/runs/big", content=body, headers=JSON_TYPE), 413, "payload-too-large")
    assert "4096" in body_json["detail"]


def test_streamed_oversized_body_is_413(small: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"metrics": ['
        for i in range(200):
            yield b'{"step": %d, "name": "val_loss", "value": 1.0},' % i
        yield b'{"step": 999, "name": "val_loss", "value": 1.0}]}'

    response = small.post("/v1/runs/run-1/metrics", content=chunks(), headers=JSON_TYPE)
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload-too-large")
    assert small.get("/v1/runs/run-1/events").json()["events"][-1]["kind"] == "created"  # nothing recorded


def test_body_under_the_limit_passes(small: httpx.Client) -> None:
    assert small.post("/v1/runs/run-1/metrics", json={"step": 0, "name": "val_loss", "value": 1.0}).status_code == 200


def test_default_limit_is_one_mib(client: httpx.Client) -> None:
    create_run(client)
    big = b'{"metrics": [], "pad": "' + b"x" * (1 << 20) + b'"}'
    assert_problem(client.post("/v1/runs/run-1/metrics", content=big, headers=JSON_TYPE), 413, "payload-too-large")


def test_malformed_json(client: httpx.Client) -> None:
    create_run(client)
    for body in (b"{", b"not json", b'{"step": 1,}', b"\xff\xfe"):
        response = client.post("/v1/runs/run-1/metrics", content=body, headers=JSON_TYPE)
        problem = assert_problem(response, 422, "invalid-input")
        assert problem["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"op": "scale", "factor": 0.5, "reason": "nul\x00inside"}, "reason"),
        ({"op": "scale", "factor": 0.5, "reason": "bell\x07"}, "reason"),
    ],
)
def test_control_characters_in_free_text_are_422_on_every_backend(
    client: httpx.Client, body: dict[str, object], path: str
) -> None:
    create_run(client)
    problem = assert_problem(client.post("/v1/runs/run-1/changes", json=body), 422, "invalid-input")
    assert problem["errors"][0]["path"] == path
    label = client.put("/v1/runs/run-2", json={"spec": SPEC, "labels": {"team": "a\x00b"}})
    assert assert_problem(label, 422, "invalid-input")["errors"][0]["path"] == "labels.team"
    ok = client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "reason": "two\nlines\tok"})
    assert ok.status_code == 200, ok.text


def test_wrong_json_type(client: httpx.Client) -> None:
    create_run(client)
    response = client.post("/v1/runs/run-1/metrics", json=[1, 2, 3])
    assert_problem(response, 422, "invalid-input")


@pytest.mark.parametrize(
    "run_id",
    ["r\u00e9sum\u00e9", "\u8dd1", "emoji-\U0001f680", "-leading-dash", "a" * 129, "spaces in id", "semi;colon", "%00"],
)
def test_bad_run_ids_are_422_naming_run_id(client: httpx.Client, run_id: str) -> None:
    response = client.put(f"/v1/runs/{run_id}", json={"spec": SPEC})
    problem = assert_problem(response, 422, "invalid-input")
    assert problem["errors"][0]["loc"] == ["path", "run_id"]
    assert client.get("/v1/runs").json()["runs"] == []


@pytest.mark.parametrize("run_id", ["a", "job-7", "exp.3:seed_1", "A" * 128])
def test_good_run_ids(client: httpx.Client, run_id: str) -> None:
    assert client.put(f"/v1/runs/{run_id}", json={"spec": SPEC}).status_code == 201


def test_count_above_the_absolute_cap_is_422(client: httpx.Client) -> None:
    create_run(client)
    for count in (MAX_LEASE + 1, 10**12, 2**70):
        problem = assert_problem(
            client.get("/v1/runs/run-1/lr", params={"step": 0, "count": count}), 422, "invalid-input"
        )
        assert problem["errors"][0]["loc"] == ["query", "count"]
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1


def test_count_above_the_configured_limit_is_422(small: httpx.Client) -> None:
    assert small.get("/v1/runs/run-1/lr", params={"step": 0, "count": 100}).status_code == 200
    problem = assert_problem(small.get("/v1/runs/run-1/lr", params={"step": 0, "count": 101}), 422, "invalid-input")
    assert problem["errors"][0]["path"] == "query.count"
    assert "100" in problem["detail"]


def test_giant_step_is_422_not_500(client: httpx.Client) -> None:
    create_run(client)
    for step in (2**53 + 1, 2**64, -1, "ten"):
        response = client.get("/v1/runs/run-1/lr", params={"step": step})
        assert assert_problem(response, 422, "invalid-input")["errors"][0]["loc"] == ["query", "step"]


def test_largest_step_is_served(client: httpx.Client) -> None:
    create_run(client)
    assert client.get("/v1/runs/run-1/lr", params={"step": 2**53 - 10, "count": 10}).status_code == 200


def test_curve_points_limit(small: httpx.Client) -> None:
    assert small.get("/v1/runs/run-1/curve", params={"stop": 1000}).status_code == 200
    problem = assert_problem(small.get("/v1/runs/run-1/curve", params={"stop": 1001}), 422, "invalid-input")
    assert problem["errors"][0]["loc"] == ["query", "stride"]
    assert small.get("/v1/runs/run-1/curve", params={"stop": 10_000, "stride": 10}).status_code == 200
    preview = small.post("/v1/curves", json={"spec": SPEC, "stop": 5000})
    assert assert_problem(preview, 422, "invalid-input")["errors"][0]["loc"] == ["stride"]


def test_metrics_batch_length(serve: Serve) -> None:
    client = serve()
    create_run(client)
    metrics = [{"step": i, "name": "val_loss", "value": 1.0} for i in range(MAX_METRICS_PER_BATCH + 1)]
    problem = assert_problem(client.post("/v1/runs/run-1/metrics", json={"metrics": metrics}), 422, "invalid-input")
    assert problem["errors"][0]["loc"] == ["metrics"]


def test_too_many_labels(client: httpx.Client) -> None:
    labels = {f"k{i}": "v" for i in range(33)}
    problem = assert_problem(client.put("/v1/runs/x", json={"spec": SPEC, "labels": labels}), 422, "invalid-input")
    assert problem["errors"][0]["loc"] == ["labels"]


def test_page_limit(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/runs", params={"limit": 1001}), 422, "invalid-input")
    create_run(client)
    assert_problem(client.get("/v1/runs/run-1/events", params={"limit": 10**6}), 422, "invalid-input")


def test_giant_event_cursor_is_422_not_500(client: httpx.Client) -> None:
    # Found by tests/fuzz: an `after` beyond BIGINT overflowed SQLite's driver (a 500).
    create_run(client)
    assert client.get("/v1/runs/run-1/events", params={"after": 2**63 - 1}).json()["events"] == []
    problem = assert_problem(client.get("/v1/runs/run-1/events", params={"after": 2**63}), 422, "invalid-input")
    assert problem["errors"][0]["loc"] == ["query", "after"]
