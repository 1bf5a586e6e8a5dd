"""Every error becomes one problem+json shape: the error classes, request validation, routing, the catch-all."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrserve.schemas.errors import FieldError, HorizonConflict, LrserveError, all_error_classes
from lrserve.schemas.wire import Problem
from lrserve.service.api.problems import PROBLEM_JSON
from tests.service.api.conftest import SPEC, Serve, create_run

BOOM = APIRouter()


@BOOM.get("/test/raise/{name}")
async def _raise(name: str) -> None:
    cls = next(c for c in all_error_classes() if c.__name__ == name)
    raise cls(detail=f"{name} raised", errors=[FieldError(("a", 0), "broken")], extra={"hint": 7})


@BOOM.get("/test/bug")
async def _bug() -> None:
    raise ZeroDivisionError("a bug")


def assert_problem(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    Problem.model_validate(body)
    assert body["status"] == status
    assert body["type"] == type_
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@pytest.fixture
def boom(serve: Serve) -> httpx.Client:
    client = serve(raise_app_exceptions=False)
    client.app.include_router(BOOM)  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_each_error_class_maps_to_its_status_and_type(boom: httpx.Client, cls: type[LrserveError]) -> None:
    body = assert_problem(boom.get(f"/test/raise/{cls.__name__}"), cls.status, cls.problem_type)
    assert body["title"] == cls.title
    assert body["detail"] == f"{cls.__name__} raised"
    assert body["errors"] == [{"loc": ["a", 0], "path": "a.0", "msg": "broken", "type": "value_error"}]
    assert body["hint"] == 7


def test_status_specific_headers(boom: httpx.Client) -> None:
    assert boom.get("/test/raise/Unavailable").headers["retry-after"] == "1"
    assert boom.get("/test/raise/Unauthorized").headers["www-authenticate"] == "Bearer"


def test_unexpected_exception_is_a_500_problem(boom: httpx.Client) -> None:
    body = assert_problem(boom.get("/test/bug"), 500, "internal")
    assert "a bug" not in body["detail"]  # internals stay in the log


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert_problem(client.get("/v2/nothing"), 404, "not-found")
    response = client.patch("/v1/runs/x")
    assert_problem(response, 405, "method-not-allowed")
    assert "PUT" in response.headers["allow"]


def test_unknown_run_is_run_not_found(client: httpx.Client) -> None:
    body = assert_problem(client.get("/v1/runs/nope"), 404, "run-not-found")
    assert "nope" in body["detail"]


def test_invalid_spec_carries_field_paths_and_core_messages(client: httpx.Client) -> None:
    bad = {
        "param_groups": [{"name": "a", "lr": 0.1}],
        "schedule": {"type": "OneCycleLR", "max_lr": [1, 2], "total_steps": 10},
    }
    body = assert_problem(client.put("/v1/runs/x", json={"spec": bad}), 422, "spec-invalid")
    assert body["errors"][0]["path"] == "spec.schedule"
    assert "param groups" in body["errors"][0]["msg"]


def test_union_tags_are_not_in_paths(client: httpx.Client) -> None:
    body = {"spec": {**SPEC, "schedule": {"type": "StepLR", "step_size": 0}}}
    errors = assert_problem(client.put("/v1/runs/x", json=body), 422, "spec-invalid")["errors"]
    assert [e["loc"] for e in errors] == [["spec", "schedule", "step_size"]]


def test_query_errors_name_the_parameter(client: httpx.Client) -> None:
    create_run(client)
    body = assert_problem(client.get("/v1/runs/run-1/lr", params={"step": -1}), 422, "invalid-input")
    assert body["errors"][0]["loc"] == ["query", "step"]
    body = assert_problem(client.get("/v1/runs/run-1/lr"), 422, "invalid-input")
    assert body["errors"][0] == {
        "loc": ["query", "step"],
        "path": "query.step",
        "msg": "Field required",
        "type": "missing",
    }


def test_domain_errors_keep_their_extra_members(client: httpx.Client) -> None:
    create_run(client)
    client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 10})
    response = client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 2, "from_step": 3})
    body = assert_problem(response, 409, HorizonConflict.problem_type)
    assert body["horizon"] == 9


def test_malformed_json_is_a_422_problem(client: httpx.Client) -> None:
    create_run(client)
    response = client.post(
        "/v1/runs/run-1/metrics", content=b'{"step": 1,', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422, "invalid-input")
    assert body["errors"][0]["type"] == "json_invalid"
    assert "malformed JSON" in body["detail"]


def test_deeply_nested_json_is_not_a_500(client: httpx.Client) -> None:
    create_run(client)
    deep = b"[" * 100_000 + b"]" * 100_000
    response = client.post("/v1/runs/run-1/metrics", content=deep, headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "invalid-input")
    assert body["errors"] == [
        {"loc": [], "path": "", "msg": "malformed JSON: nested too deeply", "type": "json_invalid"}
    ]


@pytest.mark.parametrize("content", [b"\x08\\\xef\xbf", b"-\xff\x14", b'{"name": "\xc3"}'])
def test_body_that_is_not_utf8_is_malformed_json(client: httpx.Client, content: bytes) -> None:
    # Found by tests/fuzz: FastAPI answers these with a bare 400 ("error parsing the body"), unlike other bad JSON.
    create_run(client)
    response = client.post("/v1/runs/run-1/metrics", content=content, headers={"content-type": "application/json"})
    body = assert_problem(response, 422, "invalid-input")
    assert body["errors"][0]["type"] == "json_invalid"
    assert body["detail"] == "malformed JSON: the body is not UTF-8 text"


def test_openapi_documents_every_error_as_a_problem(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            errors = {int(code) for code in responses if int(code) >= 400}
            assert {422, 503} <= errors or not path.startswith("/v1/runs"), (method, path, errors)
            if operation.get("security"):
                assert {401, 403} <= errors, (method, path)
            for code in errors:
                assert list(responses[str(code)]["content"]) == [PROBLEM_JSON], (method, path, code)
    assert "HTTPValidationError" not in json.dumps(spec)


def _containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20), _containers, max_leaves=12
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "step": JSON | st.integers(),
        "name": JSON,
        "value": JSON,
        "metrics": JSON,
        "op": st.sampled_from(["replace", "scale", "set", "plateau", "bogus"]),
        "factor": JSON,
        "lr": JSON,
        "from_step": JSON | st.integers(),
        "schedule": JSON,
        "spec": JSON,
        "stop": JSON | st.integers(),
        "stride": JSON | st.integers(),
        "incarnation": JSON | st.integers(),
    },
)
BODY_ROUTES = [
    ("PUT", "/v1/runs/fuzz"),
    ("POST", "/v1/runs/run-1/metrics"),
    ("POST", "/v1/runs/run-1/changes"),
    ("POST", "/v1/runs/run-1/resume"),
    ("POST", "/v1/curves"),
]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_no_client_body_gets_a_500(serve: Serve, method: str, path: str) -> None:
    client = serve(raise_app_exceptions=False)
    create_run(client)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=JSON | FIELDS)
    def check(body: Any) -> None:
        # json.dumps writes NaN/Infinity literals, which Python's parser (and so FastAPI) accepts.
        content = json.dumps(body).encode()
        response = client.request(method, path, content=content, headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text
        if response.status_code >= 400:
            Problem.model_validate(response.json())

    check()
