"""A range test run through the RunService: the worker stops at divergence, suggestions, the follow-up run."""

from __future__ import annotations

import numpy as np
import pytest

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.core import lrfinder
from lrserve.schemas.errors import Conflict
from lrserve.schemas.wire import FollowupIn, MetricBatch, MetricIn, RunCreate
from lrserve.service.runs import RunService
from lrserve.service.store.memory import MemoryStore

TEST = {
    "param_groups": [{"name": "body"}, {"name": "head"}],
    "schedule": {"type": "LRRangeTest", "start_lr": [1e-5, 1e-4], "end_lr": [1.0, 10.0], "num_steps": 200},
}


def synthetic_loss(lr: float, rng: np.random.Generator) -> float:
    """Flat while the LR is tiny, falling around 1e-3..1e-2, exploding past ~0.1 (a typical range test)."""
    x = np.log10(lr)
    fall = 1.0 / (1.0 + np.exp(-3.0 * (x + 2.5)))
    blow = np.exp(4.0 * (x + 1.0))
    return float(2.3 - 1.8 * fall + blow + rng.normal(0, 0.01))


def run_test(svc: RunService) -> int:
    rng = np.random.default_rng(7)
    step = 0
    while True:
        window = svc.lease("t", step, 1, None)
        if window.done:
            return step
        loss = synthetic_loss(float(window.lr[0, 0]), rng)
        svc.post_metrics("t", MetricBatch(metrics=[MetricIn(step=step, name="loss", value=loss)]), "w")
        step += 1


def test_the_worker_is_told_to_stop_at_divergence_and_suggestions_fall_where_the_loss_fell() -> None:
    svc = RunService(MemoryStore())
    svc.ensure_run("t", RunCreate.model_validate({"spec": TEST}), "w")
    stopped = run_test(svc)
    assert 0 < stopped < 200, "the test must stop before its last step: the loss diverges"
    s = svc.suggestion("t")
    assert s.done and s.stopped_at == stopped - 1
    smoothed = np.array(s.plot.smoothed)
    lrs = np.array(s.plot.lr)
    lowest = int(np.argmin(smoothed))
    # The region where the smoothed loss fell: from where it first dropped 5 % below its start to its minimum.
    first_fall = int(np.argmax(smoothed < 0.95 * smoothed[0]))
    for pick in s.rules:
        if pick.rule == "minimum_div_10":
            continue
        assert lrs[first_fall] * 0.5 <= pick.lr[0] <= lrs[lowest], pick
    # Per-group picks read the same step of each group's sweep (the head's sweep is 10x the body's).
    for pick in s.rules:
        assert pick.lr[1] == pytest.approx(10 * pick.lr[0], rel=1e-12)
    assert s.clr_bounds is not None
    assert s.clr_bounds.lower[0] == pytest.approx(s.clr_bounds.upper[0] / 6)
    # The same numbers as the analysis module applied to the raw history directly.
    direct = lrfinder.suggest(lrs, s.plot.loss, num_steps=200)
    assert direct.valley is not None and s.rules[1].lr[0] == pytest.approx(direct.valley.lr)


def test_followup_creates_a_cyclic_run_between_the_bounds_recorded_as_derived() -> None:
    svc = RunService(MemoryStore())
    svc.ensure_run("t", RunCreate.model_validate({"spec": TEST}), "w")
    run_test(svc)
    bounds = svc.suggestion("t").clr_bounds
    assert bounds is not None
    run, created = svc.followup("t", FollowupIn(run_id="train", policy="triangular2", step_size_up=50), "w")
    assert created and run.labels["derived_from"] == "t"
    curve = evaluate(parse_spec(run.spec.model_dump(mode="json")), np.arange(400))
    np.testing.assert_allclose(curve.min(axis=1), bounds.lower, rtol=1e-12)
    np.testing.assert_allclose(curve.max(axis=1), bounds.upper, rtol=1e-12)
    created_event = svc.events("train", 0, 1).events[0]
    assert created_event.payload["derived_from"]["run_id"] == "t"


def test_suggestion_of_a_run_that_is_not_a_range_test_is_a_conflict() -> None:
    svc = RunService(MemoryStore())
    spec = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 5}}
    svc.ensure_run("s", RunCreate.model_validate({"spec": spec}), "w")
    with pytest.raises(Conflict, match="not an LRRangeTest"):
        svc.suggestion("s")
