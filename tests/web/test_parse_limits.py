"""The page's text boxes (``/ui/api/parse``, ``/ui/api/playground``): ordinary and hostile YAML is a 422 naming the
line or the budget, never a 500, and parsing runs in the threadpool, not on the event loop."""

from __future__ import annotations

import inspect
import tracemalloc
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from lrserve.schemas.limits import MAX_YAML_NODES
from lrserve.service.settings import Settings
from lrserve.service.web import routes
from tests.schemas.test_yamlio import billion_laughs
from tests.service.api.conftest import start_app
from tests.service.api.test_problems import assert_problem


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with ExitStack() as stack:
        yield start_app(stack, Settings(store=f"sqlite:///{tmp_path / 'lrserve.db'}"), raise_app_exceptions=False)


@pytest.mark.parametrize("endpoint", ["/ui/api/parse", "/ui/api/playground"])
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("!!set {a, b}", "!!set"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("x: 2001-12-14", "!!timestamp"),
        ("x: 99999999999999999999999", "outside int64"),
        ("x: " + "9" * 5000, "outside int64"),
        ("schedule:\n  type: StepLR\n  step_size: 18446744073709551616", "line 3"),
    ],
)
def test_ordinary_yaml_is_a_422_naming_the_line(client: httpx.Client, endpoint: str, text: str, fragment: str) -> None:
    problem = assert_problem(client.post(endpoint, json={"text": text}), 422, "invalid-input")
    assert fragment in problem["detail"] and "line" in problem["detail"], problem
    assert problem["errors"][0]["path"] == "text"


@pytest.mark.parametrize("endpoint", ["/ui/api/parse", "/ui/api/playground"])
def test_the_alias_bomb_is_refused_with_bounded_memory(client: httpx.Client, endpoint: str) -> None:
    tracemalloc.start()
    try:
        response = client.post(endpoint, json={"text": billion_laughs(8)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    problem = assert_problem(response, 422, "invalid-input")
    assert "MAX_YAML_NODES" in problem["detail"] and str(MAX_YAML_NODES) in problem["detail"]
    assert peak < 50 * 2**20


def test_the_playground_refuses_an_lr_infinite_at_a_step(client: httpx.Client) -> None:
    text = "param_groups: [{name: a, lr: 0.1}]\nschedule: {type: LambdaLR, lr_lambda: '1/(step-5)'}"
    problem = assert_problem(client.post("/ui/api/playground", json={"text": text}), 422, "spec-invalid")
    assert problem["errors"][0]["path"] == "schedule.lr_lambda"


def test_ordinary_text_still_parses(client: httpx.Client) -> None:
    response = client.post("/ui/api/parse", json={"text": "{type: StepLR, step_size: 3, gamma: 1e-1}"})
    assert response.json() == {"data": {"type": "StepLR", "step_size": 3, "gamma": "1e-1"}}


def test_parsing_handlers_run_in_the_threadpool() -> None:
    for handler in (routes.parse, routes.playground):
        assert not inspect.iscoroutinefunction(handler), handler.__name__
