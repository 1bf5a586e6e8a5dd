"""Schemathesis against the live OpenAPI document of a real server: no 5xx, and every 4xx a problem.

The server is ``lrserve serve`` on a SQLite file (a subprocess, with an admin token configured: the fuzzer sends
it, and its negative cases drop or mangle it). Every operation of ``/openapi.json`` is fuzzed with schema-valid
("positive") and schema-violating ("negative") requests, ``MAX_EXAMPLES`` each, and then as a state machine along
the links schemathesis infers (``GET /v1/runs`` feeds run ids to the run's operations).

Generated data alone would rarely reach a run (random ids are unknown: 404) or pass the specs' cross-field rules
(422), so known values are mixed in: a hook swaps most generated run ids for those of seeded runs (a plain run with
served steps and metrics, a finished LR range test), and in positive mode half the cases are built on known-good
parts (``KNOWN``: a valid body, an existing run) with the rest generated. Each operation must then have answered
at least one 2xx: the fuzzer went through its success path, not only its error paths.

Every response must pass:

- no 5xx (``not_a_server_error``);
- each 4xx is ``application/problem+json`` with ``type``, ``title``, ``status`` (the response's) and ``detail``
  (``check_problem``);
- the document holds: status codes, content types, headers and response bodies as declared (schemathesis'
  conformance checks; so an error status a route really answers must be in its document).

Not checked: ``negative_data_rejection`` (FastAPI ignores unknown query parameters and pydantic reads ``3.0`` as the
integer 3, both deliberate) and ``positive_data_acceptance`` (a spec valid by the JSON Schema may break a rule the
schema cannot express, such as ``total_steps`` >= the warm-up: 422 is the right answer).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition, Unsatisfiable
from hypothesis.stateful import run_state_machine_as_test
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks as openapi_checks

from lrserve.schemas.wire import Problem
from lrserve.service.app import create_app
from lrserve.service.settings import Settings
from tests.e2e.server import ServerProcess

MAX_EXAMPLES = 30
TOKEN = "fuzz-admin-token"
PROBLEM_JSON = "application/problem+json"

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "body", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5},
    "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 1},
}
RANGE_TEST: dict[str, Any] = {
    "schedule": {"type": "LRRangeTest", "start_lr": 1e-4, "end_lr": 1.0, "num_steps": 40},
}
#: Seeded runs (ids starting "fx-" are never replaced by the hooks): the fuzzer never deletes "keep" and "rt";
#: "victim" it may delete (then its operations answer 404).
KEEP, RANGE, VICTIM = "fx-keep", "fx-rt", "fx-victim"
CREATE_BODIES = [
    {"spec": SPEC, "labels": {"team": "fuzz"}},
    {"spec": {"schedule": {"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 100}}},
    {"spec": {"schedule": {"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 50}}},
    {"spec": RANGE_TEST},
]
CHANGE_BODIES = [
    {"op": "scale", "factor": 0.5, "reason": "fuzz"},
    {"op": "set", "lr": 0.01, "until_step": None},
    {"op": "replace", "schedule": {"type": "StepLR", "step_size": 3}, "origin": "restart"},
    {"op": "plateau", "plateau": None},
    {"op": "scale", "factor": 2.0, "dry_run": True, "preview_steps": 5},
]
#: Known-good parts of requests (fixed path parameters, query or body; the rest is generated): in positive mode
#: half the cases are built on one of these, since generated data alone rarely reaches a run (a random id is
#: unknown: 404) or passes the specs' cross-field rules (422), and so would rarely exercise the success paths.
KNOWN: dict[str, list[dict[str, Any]]] = {
    "PUT /v1/runs/{run_id}": [
        {"path_parameters": {"run_id": f"fx-new-{i}"}, "body": body} for i, body in enumerate(CREATE_BODIES)
    ],
    "GET /v1/runs/{run_id}": [{"path_parameters": {"run_id": KEEP}}],
    "DELETE /v1/runs/{run_id}": [{"path_parameters": {"run_id": VICTIM}}],
    "GET /v1/runs": [{"query": {"limit": 10}}],
    "GET /v1/runs/{run_id}/events": [{"path_parameters": {"run_id": KEEP}, "query": {"limit": 5}}],
    "GET /v1/runs/{run_id}/lr": [{"path_parameters": {"run_id": KEEP}, "query": {"step": 0, "count": 5}}],
    "GET /v1/runs/{run_id}/plan": [{"path_parameters": {"run_id": KEEP}}],
    "POST /v1/runs/{run_id}/applied": [
        {"path_parameters": {"run_id": KEEP}, "body": {"start": 0, "stop": 3, "last_seq": 1}}
    ],
    "POST /v1/runs/{run_id}/metrics": [
        {"path_parameters": {"run_id": KEEP}, "body": {"step": 7, "name": "loss", "value": 0.5}}
    ],
    "POST /v1/runs/{run_id}/changes": [{"path_parameters": {"run_id": KEEP}, "body": body} for body in CHANGE_BODIES],
    "POST /v1/runs/{run_id}/resume": [{"path_parameters": {"run_id": KEEP}, "body": {"step": 3, "key": "fuzz"}}],
    "GET /v1/runs/{run_id}/curve": [{"path_parameters": {"run_id": KEEP}, "query": {"stop": 50}}],
    "POST /v1/curves": [{"body": {"spec": SPEC, "stop": 100, "metrics": [{"step": 3, "name": "loss", "value": 1.0}]}}],
    "GET /v1/runs/{run_id}/suggestion": [{"path_parameters": {"run_id": RANGE}}],
    # the follow-up's id is drawn below: the suggestion moves as the fuzzer posts losses to the range test, and
    # an existing id with another spec is a 409
    "POST /v1/runs/{run_id}/followup": [{"path_parameters": {"run_id": RANGE}, "body": {"step_size_up": 10}}],
}

#: (METHOD, path) of every operation, from the app itself: an operation added later is fuzzed without an edit here.
PATHS = create_app(Settings()).openapi()["paths"]
OPERATIONS = sorted((method.upper(), path) for path, item in PATHS.items() for method in item)
#: (operation, mode): negative cases only where there is something to violate (parameters, a body, credentials).
CASES = [
    pytest.param(op, mode, id=f"{op[0]} {op[1]}-{mode}")
    for op in OPERATIONS
    for mode in GenerationMode
    if mode.is_positive or set(PATHS[op[1]][op[0].lower()]) & {"parameters", "requestBody", "security"}
]
CHECKS = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]

#: (operation, mode) -> status -> responses seen; printed by the last test.
TALLY: dict[tuple[str, str], Counter[int]] = {}


def check_problem(response: Response) -> None:
    """A 4xx is ``application/problem+json`` with type, title, status and detail."""
    if not 400 <= response.status_code < 500:
        return
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_JSON, f"{response.status_code} with content-type {content_type!r}"
    body = json.loads(response.content)
    Problem.model_validate(body)
    assert body["status"] == response.status_code, body
    for member in ("type", "title", "detail"):
        assert isinstance(body[member], str) and body[member], f"{member!r} missing or empty in {body}"


def seed(http: httpx.Client) -> None:
    for run_id in (KEEP, VICTIM):
        assert http.put(f"/v1/runs/{run_id}", json={"spec": SPEC}).status_code == 201
        assert http.get(f"/v1/runs/{run_id}/lr", params={"step": 0, "count": 20}).status_code == 200
        metrics = [{"step": i, "name": "loss", "value": 1.0} for i in range(5)]
        assert http.post(f"/v1/runs/{run_id}/metrics", json={"metrics": metrics}).status_code == 200
    assert http.put(f"/v1/runs/{RANGE}", json={"spec": RANGE_TEST}).status_code == 201
    assert http.get(f"/v1/runs/{RANGE}/lr", params={"step": 0, "count": 40}).status_code == 200
    losses = [{"step": i, "name": "loss", "value": 2.0 - 1.5 * i / 40 + (i / 38) ** 8} for i in range(40)]
    assert http.post(f"/v1/runs/{RANGE}/metrics", json={"metrics": losses}).status_code == 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    tokens = [{"name": "fuzzer", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "scopes": ["admin"]}]
    env = {"LRSERVE_TOKENS": json.dumps(tokens), "LRSERVE_REQUEST_LOG": "false"}
    with ServerProcess(tmp, "--store", f"sqlite:///{tmp / 'lrserve.db'}", env=env) as process:
        with httpx.Client(base_url=process.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
            seed(http)
        yield process
        assert "Traceback" not in process.log(), process.log()[-5000:]


@pytest.fixture(scope="module")
def api(server: ServerProcess) -> Any:
    config = schemathesis.Config.from_dict({"auth": {"openapi": {"HTTPBearer": {"bearer": TOKEN}}}})
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """Generated run ids are mostly swapped for seeded ones (listed first: hypothesis favours early choices)."""
        if not path_parameters or str(path_parameters.get("run_id", "fx-")).startswith("fx-"):
            return st.just(path_parameters)
        label = context.operation.label
        ids = [KEEP, VICTIM, path_parameters["run_id"]]
        if label.startswith("DELETE"):
            ids.remove(KEEP)
        elif not label.endswith("/resume"):  # a resume would drop the range test's losses (its routes: 409)
            ids.insert(0, RANGE)
        return st.sampled_from(ids).map(lambda run_id: {**path_parameters, "run_id": run_id})

    return schema


def _run(case: Case, label: str, mode: str) -> Response:
    response = case.call()
    TALLY.setdefault((label, mode), Counter())[response.status_code] += 1
    check_problem(response)
    case.validate_response(response, checks=CHECKS)
    return response


def _strategy(op: Any, mode: GenerationMode) -> st.SearchStrategy[Case]:
    generated = op.as_strategy(generation_mode=mode)
    known = KNOWN.get(op.label, [])
    if mode.is_negative or not known:
        return generated
    if op.label == "POST /v1/runs/{run_id}/followup":
        (parts,) = known
        built = st.integers(0, 10**9).flatmap(
            lambda n: op.as_strategy(mode, **{**parts, "body": {**parts["body"], "run_id": f"fx-after-rt-{n}"}})
        )
    else:
        built = st.one_of(*(op.as_strategy(mode, **parts) for parts in known))
    return st.one_of(generated, built)


@pytest.mark.parametrize(("operation", "mode"), CASES)
def test_operation(api: Any, operation: tuple[str, str], mode: GenerationMode) -> None:
    method, path = operation
    op = api[path][method]

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(op, mode))
    def fuzz(case: Case) -> None:
        _run(case, op.label, mode.value)

    try:
        fuzz()
    except Unsatisfiable:  # an operation without input has a handful of distinct cases; each was tried
        assert mode.is_positive
    seen = TALLY.get((op.label, mode.value), Counter())
    assert sum(seen.values()) > 0
    if mode.is_positive:
        # The seeds and known parts work: the fuzzer reached the operation's success path, not only its errors.
        assert any(200 <= status < 300 for status in seen), seen


def test_stateful(api: Any) -> None:
    """Sequences of calls along the inferred links (a listed run's id used by its operations)."""
    base = api.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def validate_response(self, response: Response, case: Case, *_: Any, **__: Any) -> None:
            check_problem(response)
            case.validate_response(response, checks=CHECKS)

        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            TALLY.setdefault((case.operation.label, "stateful"), Counter())[response.status_code] += 1

    # Generation only (no replay or shrinking): a scenario's rules depend on what the server answered, which a
    # rerun cannot reproduce. Hypothesis notices that as "flaky" data generation, which is not a failure of the
    # server (schemathesis' own runner starts again then, as here); a check that fails raises as usual.
    for _ in range(5):
        try:
            run_state_machine_as_test(
                Workflow,
                settings=settings(
                    max_examples=MAX_EXAMPLES,
                    stateful_step_count=8,
                    phases=[Phase.generate],
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
            break
        except FlakyStrategyDefinition:
            continue
    stateful = {label: seen for (label, mode), seen in TALLY.items() if mode == "stateful"}
    assert len(stateful) >= 3, f"the state machine reached only {sorted(stateful)}"


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints what was sent and answered (the figures of the closing note)."""
    total = sum(sum(seen.values()) for seen in TALLY.values())
    statuses: Counter[int] = Counter()
    for seen in TALLY.values():
        statuses.update(seen)
    with capsys.disabled():
        print(f"\nfuzz: {total} requests over {len({op for op, _ in TALLY})} operations; statuses {dict(statuses)}")
    assert not any(status >= 500 for status in statuses)
