"""The run model's invariants, on random histories: frozen served steps, replay purity, idempotent writes."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.errors import HorizonConflict, MetricConflict, StaleIncarnation
from lrserve.schemas.wire import ChangeIn, MetricBatch, MetricIn, ResumeIn, RunCreate
from lrserve.service.runs import RunService
from lrserve.service.store.memory import MemoryStore

CHANGE = TypeAdapter(ChangeIn)

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "body", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "StepLR", "step_size": 7, "gamma": 0.7},
    "plateau": {"metric": "loss", "patience": 1, "factor": 0.5, "min_lr": [1e-4, 1e-3]},
}


def new_service(spec: dict[str, Any] = SPEC) -> RunService:
    svc = RunService(MemoryStore())
    svc.ensure_run("r", RunCreate.model_validate({"spec": spec}), "test")
    return svc


@dataclass
class Lease:
    count: int


@dataclass
class Metric:
    step: int
    value: float


@dataclass
class Change:
    body: dict[str, Any]


@dataclass
class Resume:
    back: int


ops = st.lists(
    st.one_of(
        st.builds(Lease, st.integers(1, 12)),
        st.builds(Metric, st.integers(0, 60), st.sampled_from([1.0, 0.9, 0.5, 2.0, float("nan")])),
        st.builds(
            Change,
            st.one_of(
                st.builds(lambda f: {"op": "scale", "factor": f}, st.sampled_from([0.5, 2.0, 0.1])),
                st.builds(
                    lambda x, u: {"op": "set", "lr": x, "until_step": u}, st.sampled_from([0.3, 0.01]), st.none()
                ),
                st.just({"op": "replace", "schedule": {"type": "StepLR", "step_size": 3, "gamma": 0.9}}),
                st.just({"op": "replace", "schedule": {"type": "StepLR", "step_size": 5}, "origin": "restart"}),
                st.just({"op": "plateau", "plateau": {"metric": "loss", "patience": 0, "factor": 0.9}}),
                st.just({"op": "plateau", "plateau": None}),
            ),
        ),
        st.builds(Resume, st.integers(0, 10)),
    ),
    min_size=4,
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_served_steps_never_change_and_replay_gives_the_same_numbers(history: list[Any]) -> None:
    svc = new_service()
    served: dict[tuple[int, int], tuple[float, ...]] = {}  # (incarnation, step) -> lr per group
    served_order: list[tuple[int, int]] = []
    resumes: list[tuple[int, int]] = []  # (position in served_order, resume step)
    next_step = 0
    incarnation = 1
    for op in history:
        if isinstance(op, Lease):
            window = svc.lease("r", next_step, op.count, incarnation)
            for i in range(op.count):
                key = (incarnation, next_step + i)
                values = tuple(window.lr[:, i].tolist())
                if key in served:
                    assert served[key] == values, f"step {key} changed after it was served"
                else:
                    served[key] = values
                    served_order.append(key)
            next_step += op.count
        elif isinstance(op, Metric):
            with contextlib.suppress(MetricConflict):
                batch = MetricBatch(
                    metrics=[MetricIn(step=op.step, name="loss", value=op.value)], incarnation=incarnation
                )
                svc.post_metrics("r", batch, "w")
        elif isinstance(op, Change):
            svc.change("r", CHANGE.validate_python(op.body), "admin")
        else:
            k = max(0, next_step - op.back)
            result = svc.resume("r", ResumeIn(step=k, incarnation=incarnation), "w")
            incarnation = result.incarnation
            resumes.append((len(served_order), k))
            served[(incarnation, k)] = tuple(g.lr[0] for g in result.groups)
            served_order.append((incarnation, k))
            next_step = k + 1
        # Re-reading what was served in this incarnation gives the same values (from the cache).
        frozen = [s for (inc, s) in served if inc == incarnation]
        if frozen:
            lo = min(frozen)
            again = svc.lease("r", lo, max(frozen) - lo + 1, incarnation)
            for j, step in enumerate(range(lo, max(frozen) + 1)):
                if (incarnation, step) in served:
                    assert served[(incarnation, step)] == tuple(again.lr[:, j].tolist())

    final = svc.curve("r", 0, 80, 1)
    # A value served before a later resume at k stays the final value when its step < k for every later resume.
    for pos, key in enumerate(served_order):
        later = [k for (p, k) in resumes if p > pos]
        _, step = key
        if all(step < k for k in later) and step < 80:
            assert served[key] == tuple(final.lr[:, step].tolist())

    # Purity: a second service over the same store, folding from scratch, gives identical numbers.
    replayed = RunService(svc._store).curve("r", 0, 80, 1)
    np.testing.assert_array_equal(replayed.lr, final.lr)
    assert [m.step for m in replayed.markers] == [m.step for m in final.markers]


def test_plateau_on_run_matches_core_evaluate_when_nothing_is_leased_ahead() -> None:
    # With the horizon never ahead of the metrics, a run's plateau equals the pure core's evaluate().
    svc = new_service()
    values = [1.0, 0.9, 0.95, 0.97, 0.99, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    for step, value in enumerate(values):
        svc.lease("r", step, 1, None)
        svc.post_metrics("r", MetricBatch(metrics=[MetricIn(step=step, name="loss", value=value)]), "w")
    got = svc.curve("r", 0, 20, 1).lr
    want = evaluate(parse_spec(SPEC), np.arange(20), metrics=[(s, "loss", v) for s, v in enumerate(values)])
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert (got[:, -1] < got[:, 0]).all(), "the plateau must have reduced"


def test_reduction_waits_for_the_first_unserved_step() -> None:
    svc = new_service()
    svc.lease("r", 0, 50, None)  # horizon 49
    before = svc.curve("r", 0, 60, 1).lr
    batch = MetricBatch(metrics=[MetricIn(step=s, name="loss", value=1.0) for s in range(3)])
    result = svc.post_metrics("r", batch, "w")
    assert result.reduction_from_step == 50
    after = svc.curve("r", 0, 60, 1).lr
    np.testing.assert_array_equal(after[:, :50], before[:, :50])
    np.testing.assert_allclose(after[:, 50:], before[:, 50:] * 0.5)


def test_metric_retry_is_a_noop_and_another_value_conflicts() -> None:
    svc = new_service()
    one = MetricBatch(metrics=[MetricIn(step=3, name="loss", value=0.25)])
    assert len(svc.post_metrics("r", one, "w").accepted) == 1
    again = svc.post_metrics("r", one, "w")
    assert again.accepted == [] and len(again.duplicates) == 1
    with pytest.raises(MetricConflict) as err:
        svc.post_metrics("r", MetricBatch(metrics=[MetricIn(step=3, name="loss", value=0.5)]), "w")
    assert err.value.errors[0].path() == "metrics.0.value"
    assert [e.kind for e in svc.events("r", 0, 100).events].count("metric") == 1


def test_change_below_horizon_is_refused_with_the_horizon() -> None:
    svc = new_service()
    svc.lease("r", 0, 10, None)
    with pytest.raises(HorizonConflict) as err:
        svc.change("r", CHANGE.validate_python({"op": "scale", "factor": 0.5, "from_step": 5}), "admin")
    assert err.value.extra["horizon"] == 9
    ok = svc.change("r", CHANGE.validate_python({"op": "scale", "factor": 0.5}), "admin")
    assert ok.from_step == 10 and ok.revision == 1


def test_resume_fences_the_old_incarnation_and_discards_its_later_metrics() -> None:
    svc = new_service()
    svc.lease("r", 0, 20, None)
    svc.post_metrics("r", MetricBatch(metrics=[MetricIn(step=s, name="loss", value=1.0) for s in range(10)]), "w")
    assert svc.get_run("r").plateau is not None
    reduced = svc.curve("r", 0, 40, 1).lr
    resumed = svc.resume("r", ResumeIn(step=2, key="restart-1"), "w")
    assert resumed.incarnation == 2 and resumed.horizon == 2
    # Every rank sending the same restart key gets the same incarnation.
    assert svc.resume("r", ResumeIn(step=2, key="restart-1"), "w").incarnation == 2
    with pytest.raises(StaleIncarnation):
        svc.lease("r", 0, 4, 1)
    with pytest.raises(StaleIncarnation):
        svc.post_metrics("r", MetricBatch(metrics=[MetricIn(step=5, name="loss", value=1.0)], incarnation=1), "w")
    # Metrics at steps >= 2 of incarnation 1 no longer count: no reduction is left, the plan is the schedule again.
    replanned = svc.curve("r", 0, 40, 1).lr
    plain = evaluate(parse_spec(SPEC), np.arange(40))
    np.testing.assert_array_equal(replanned, plain)
    assert not np.array_equal(replanned, reduced)
    # ...and re-posting step 5 with another value is no longer a conflict.
    result = svc.post_metrics("r", MetricBatch(metrics=[MetricIn(step=5, name="loss", value=3.0)], incarnation=2), "w")
    assert len(result.accepted) == 1


def test_set_holds_until_until_step_then_the_plan_resumes() -> None:
    svc = new_service()
    svc.change("r", CHANGE.validate_python({"op": "set", "lr": [0.5, 0.6], "from_step": 10, "until_step": 15}), "a")
    curve = svc.curve("r", 0, 20, 1).lr
    plain = evaluate(parse_spec(SPEC), np.arange(20))
    np.testing.assert_array_equal(curve[:, 10:15], np.array([[0.5] * 5, [0.6] * 5]))
    np.testing.assert_array_equal(curve[:, :10], plain[:, :10])
    np.testing.assert_array_equal(curve[:, 15:], plain[:, 15:])


def test_replace_with_restart_origin_evaluates_from_the_change() -> None:
    svc = new_service()
    svc.lease("r", 0, 10, None)
    body = {"op": "replace", "schedule": {"type": "StepLR", "step_size": 2, "gamma": 0.5}, "origin": "restart"}
    svc.change("r", CHANGE.validate_python(body), "a")
    curve = svc.curve("r", 10, 16, 1).lr
    restarted = parse_spec({**SPEC, "schedule": body["schedule"]})
    np.testing.assert_allclose(curve, evaluate(restarted, np.arange(6)), rtol=1e-15)


def test_dry_run_records_nothing_and_shows_both_curves() -> None:
    svc = new_service()
    result = svc.change(
        "r", CHANGE.validate_python({"op": "scale", "factor": 0.5, "dry_run": True, "preview_steps": 8}), "a"
    )
    assert not result.applied and result.current is not None and result.proposed is not None
    np.testing.assert_allclose(
        np.array(result.proposed.groups[1].lr), np.array(result.current.groups[1].lr) * 0.5, rtol=1e-15
    )
    assert svc.get_run("r").revision == 0
    assert [e.kind for e in svc.events("r", 0, 10).events] == ["created"]


def test_steps_applied_offline_keep_the_plan_the_worker_used() -> None:
    from lrserve.schemas.wire import AppliedIn

    svc = new_service()
    first = svc.lease("r", 0, 10, None)  # horizon 9; the worker caches the plan as of last_seq
    as_of = first.last_seq
    offline = svc.curve("r", 10, 30, 1).lr  # what the worker computes locally during an outage
    # Meanwhile (another replica, or before the worker reconnects) an operator scales from the first unserved step.
    svc.change("r", CHANGE.validate_python({"op": "scale", "factor": 0.5}), "admin")
    result = svc.applied("r", AppliedIn(start=10, stop=29, last_seq=as_of), "w")
    assert result.pinned and result.horizon == 29
    after = svc.curve("r", 0, 40, 1).lr
    np.testing.assert_array_equal(after[:, 10:30], offline)  # the history says what the worker really did
    plain = evaluate(parse_spec(SPEC), np.arange(40))
    np.testing.assert_allclose(after[:, 30:], plain[:, 30:] * 0.5, rtol=1e-15)  # the change applies after them
    # Nothing changed meanwhile: no pin, just the horizon.
    again = svc.applied("r", AppliedIn(start=30, stop=35, last_seq=svc.lease("r", 29, 1, None).last_seq), "w")
    assert not again.pinned and again.horizon == 35
    np.testing.assert_array_equal(RunService(svc._store).curve("r", 0, 40, 1).lr, svc.curve("r", 0, 40, 1).lr)


def test_a_schedule_that_overflows_float64_is_refused_not_served_as_null() -> None:
    from lrserve.schemas.errors import InvalidInput
    from lrserve.schemas.wire import CurveRequest

    huge = {
        "type": "NoisyLinearCosineDecay",
        "initial_learning_rate": 3.9e15,
        "decay_steps": 211,
        "alpha": 5.9e307,
        "num_periods": 5.4e307,
        "beta": 30.0,
    }
    svc = RunService(MemoryStore())
    with pytest.raises(InvalidInput, match="non-finite LR at step 0"):
        svc.preview_curve(CurveRequest.model_validate({"spec": {"schedule": huge}, "stop": 10}))
