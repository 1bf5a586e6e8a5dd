"""Numbers at the edges are refused at the door (422 naming the field and the rule), never stored to break later.

The rule (``schemas/limits.py``): step-valued spec parameters are <= MAX_STEP (2**53); a served step (lease,
resume, applied, a metric's step) is <= MAX_SERVED_STEP = MAX_STEP - 1, so horizon + 1 is always a valid from_step
and a run leased to its last step still answers every change, dry run, preview, curve and plan.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from lrserve.schemas.limits import MAX_SERVED_STEP, MAX_STEP
from tests.service.api.conftest import SPEC, create_run
from tests.service.api.test_problems import assert_problem

GROUPS = [{"name": "backbone", "lr": 0.1}]
HUGE = 2**64


def _put(client: httpx.Client, run_id: str, schedule: dict[str, Any], groups: list[Any] | None = None) -> Any:
    return client.put(f"/v1/runs/{run_id}", json={"spec": {"param_groups": groups or GROUPS, "schedule": schedule}})


def _paths(problem: dict[str, Any]) -> list[str]:
    return [e["path"] for e in problem["errors"]]


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ({"type": "StepLR", "step_size": HUGE}, "spec.schedule.step_size"),
        ({"type": "MultiStepLR", "milestones": [10, HUGE]}, "spec.schedule.milestones.1"),
        ({"type": "PolynomialLR", "total_iters": HUGE}, "spec.schedule.total_iters"),
        ({"type": "CosineAnnealingWarmRestarts", "T_0": HUGE}, "spec.schedule.T_0"),
        ({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": HUGE}, "spec.schedule.total_steps"),
        ({"type": "OneCycleLR", "max_lr": 0.1, "epochs": 2**40, "steps_per_epoch": 2**40},
         "spec.schedule.steps_per_epoch"),
        ({"type": "LinearLR", "total_iters": HUGE}, "spec.schedule.total_iters"),
        ({"type": "ConstantLR", "total_iters": HUGE}, "spec.schedule.total_iters"),
        ({"type": "CosineAnnealingLR", "T_max": HUGE}, "spec.schedule.T_max"),
        ({"type": "SequentialLR", "milestones": [HUGE], "schedulers": [{"type": "StepLR", "step_size": 3}] * 2},
         "spec.schedule.milestones.0"),
        ({"type": "PiecewiseConstantDecay", "boundaries": [HUGE], "values": [0.1, 0.01]}, "spec.schedule.boundaries.0"),
        ({"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": HUGE}, "spec.schedule.decay_steps"),
        ({"type": "PolynomialDecay", "initial_learning_rate": 0.1, "decay_steps": HUGE}, "spec.schedule.decay_steps"),
        ({"type": "caffe", "lr_policy": "step", "base_lr": 0.1, "gamma": 0.1, "stepsize": HUGE},
         "spec.schedule.stepsize"),
        ({"type": "caffe", "lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": [HUGE]},
         "spec.schedule.stepvalue.0"),
        ({"type": "caffe", "lr_policy": "poly", "base_lr": 0.1, "power": 1, "max_iter": HUGE},
         "spec.schedule.max_iter"),
        ({"type": "StepLR", "step_size": MAX_STEP + 1}, "spec.schedule.step_size"),
    ],
)  # fmt: skip
def test_a_huge_step_parameter_is_a_422_and_nothing_is_stored(
    client: httpx.Client, schedule: dict[str, Any], path: str
) -> None:
    problem = assert_problem(_put(client, "edge", schedule), 422, "spec-invalid")
    assert _paths(problem) == [path]
    assert "(the step domain)" in problem["errors"][0]["msg"]
    assert_problem(client.get("/v1/runs/edge"), 404, "run-not-found")
    assert client.get("/v1/runs").json()["runs"] == []


def test_a_replace_with_a_huge_schedule_leaves_the_run_healthy(client: httpx.Client) -> None:
    create_run(client)
    change = {"op": "replace", "schedule": {"type": "StepLR", "step_size": HUGE}}
    problem = assert_problem(client.post("/v1/runs/run-1/changes", json=change), 422, "invalid-input")
    assert _paths(problem) == ["schedule.step_size"]
    assert client.get("/v1/runs/run-1/lr", params={"step": 0, "count": 2}).status_code == 200
    assert client.get("/v1/runs/run-1/curve", params={"stop": 10}).status_code == 200
    assert client.get("/v1/runs/run-1").json()["revision"] == 0


def test_a_boolean_lr_is_a_422(client: httpx.Client) -> None:
    problem = assert_problem(
        _put(client, "b", {"type": "StepLR", "step_size": 3}, [{"name": "a", "lr": True}]), 422, "spec-invalid"
    )
    assert _paths(problem) == ["spec.param_groups.0.lr"]
    assert "boolean" in problem["errors"][0]["msg"]
    problem = assert_problem(_put(client, "b", {"type": "StepLR", "step_size": True}), 422, "spec-invalid")
    assert _paths(problem) == ["spec.schedule.step_size"]


def test_an_lr_infinite_at_step_5_is_refused_before_the_run_exists(client: httpx.Client) -> None:
    problem = assert_problem(_put(client, "div0", {"type": "LambdaLR", "lr_lambda": "1/(step-5)"}), 422, "spec-invalid")
    assert _paths(problem) == ["schedule.lr_lambda"]
    assert "step 5" in problem["errors"][0]["msg"]
    assert_problem(client.get("/v1/runs/div0"), 404, "run-not-found")
    create_run(client)
    change = {"op": "replace", "schedule": {"type": "LambdaLR", "lr_lambda": "1/(step-5)"}, "origin": "restart"}
    problem = assert_problem(client.post("/v1/runs/run-1/changes", json=change), 422, "spec-invalid")
    assert _paths(problem) == ["schedule.lr_lambda"]


def test_the_exact_lease_repro_is_a_422_and_the_run_still_answers(client: httpx.Client) -> None:
    create_run(client)
    response = client.get("/v1/runs/run-1/lr?step=9007199254740992&count=2")
    problem = assert_problem(response, 422, "invalid-input")
    assert _paths(problem) == ["query.step"]
    problem = assert_problem(client.get(f"/v1/runs/run-1/lr?step={MAX_SERVED_STEP}&count=2"), 422, "invalid-input")
    assert _paths(problem) == ["query.count"] and "the step domain" in problem["errors"][0]["msg"]
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1
    dry = client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "dry_run": True})
    assert dry.status_code == 200, dry.text


@pytest.fixture
def at_the_end(client: httpx.Client) -> httpx.Client:
    """A run leased up to the last step a run may serve."""
    create_run(client)
    lease = client.get("/v1/runs/run-1/lr", params={"step": MAX_SERVED_STEP - 1, "count": 2})
    assert lease.status_code == 200, lease.text
    assert client.get("/v1/runs/run-1").json()["horizon"] == MAX_SERVED_STEP
    return client


def test_a_run_leased_to_the_last_step_still_answers_everything(at_the_end: httpx.Client) -> None:
    client = at_the_end
    # the same frozen window again (the fast path answers it) and one step of it
    assert client.get("/v1/runs/run-1/lr", params={"step": MAX_SERVED_STEP - 1, "count": 2}).status_code == 200
    assert client.get("/v1/runs/run-1/lr", params={"step": MAX_SERVED_STEP}).status_code == 200
    dry = client.post(
        "/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "dry_run": True, "preview_steps": 1}
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["from_step"] == MAX_STEP
    preview = client.post("/ui/api/runs/run-1/preview", json={"op": "scale", "factor": 0.5}, params={"width": 10})
    assert preview.status_code == 200, preview.text
    applied = client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5})
    assert applied.status_code == 200, applied.text
    replace = {"op": "replace", "schedule": {"type": "StepLR", "step_size": 3}, "origin": "restart"}
    assert client.post("/v1/runs/run-1/changes", json=replace).status_code == 200
    assert (
        client.post(
            "/v1/runs/run-1/metrics", json={"step": MAX_SERVED_STEP, "name": "val_loss", "value": 1}
        ).status_code
        == 200
    )
    assert client.get("/v1/runs/run-1/curve", params={"start": MAX_STEP - 10, "stop": MAX_STEP}).status_code == 200
    assert client.get("/v1/runs/run-1/plan").status_code == 200
    assert client.get("/v1/runs/run-1").status_code == 200
    assert client.get("/v1/runs/run-1/events").status_code == 200
    assert client.get("/ui/api/runs/run-1/plot", params={"width": 10}).status_code == 200
    problem = assert_problem(
        client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "from_step": MAX_STEP + 1}),
        422,
        "invalid-input",
    )
    assert _paths(problem) == ["from_step"]


@pytest.mark.parametrize(
    ("method", "url", "body", "path"),
    [
        ("POST", "/v1/runs/run-1/resume", {"step": MAX_STEP}, "step"),
        ("POST", "/v1/runs/run-1/applied", {"start": 0, "stop": MAX_STEP, "last_seq": 1}, "stop"),
        ("POST", "/v1/runs/run-1/metrics", {"step": MAX_STEP, "name": "val_loss", "value": 1.0}, "step"),
        ("POST", "/v1/runs/run-1/metrics", {"metrics": [{"step": HUGE, "name": "val_loss", "value": 1.0}]},
         "metrics.0.step"),
        ("POST", "/v1/runs/run-1/changes", {"op": "set", "lr": 0.1, "until_step": HUGE}, "until_step"),
        ("POST", "/v1/runs/run-1/changes", {"op": "scale", "factor": 0.5, "from_step": HUGE}, "from_step"),
        ("GET", f"/v1/runs/run-1/curve?start=0&stop={MAX_STEP + 1}", None, "query.stop"),
        ("GET", f"/v1/runs/run-1/curve?start={MAX_STEP}&stop={MAX_STEP}", None, "query.start"),
        ("GET", f"/v1/runs/run-1/curve?stride={HUGE}", None, "query.stride"),
        ("GET", f"/v1/runs/run-1/events?after={2**63}", None, "query.after"),
        ("GET", f"/ui/api/runs/run-1/plot?stop={MAX_STEP + 1}", None, "query.stop"),
        ("POST", "/v1/curves", {"spec": SPEC, "start": MAX_STEP, "stop": MAX_STEP}, "start"),
        ("POST", "/v1/curves", {"spec": SPEC, "stop": 10, "metrics": [{"step": HUGE, "name": "x", "value": 1}]},
         "metrics.0.step"),
    ],
)  # fmt: skip
def test_every_step_valued_request_parameter_is_bounded(
    client: httpx.Client, method: str, url: str, body: Any, path: str
) -> None:
    create_run(client)
    response = client.request(method, url, json=body)
    problem = assert_problem(response, 422, "invalid-input")
    assert path in _paths(problem), problem
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1


def test_a_resume_at_the_last_servable_step_keeps_the_run_changeable(client: httpx.Client) -> None:
    create_run(client)
    assert client.post("/v1/runs/run-1/resume", json={"step": MAX_SERVED_STEP}).status_code == 200
    dry = client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "dry_run": True})
    assert dry.status_code == 200, dry.text
