"""Caffe dialect: ``SGDSolver::GetLearningRate`` (src/caffe/solvers/sgd_solver.cpp), nested union validation.

The reference here re-runs the solver's loop, iteration by iteration, with its state (``current_step_``,
advanced by at most one per iteration in ``multistep``), in Python doubles: our closed forms must agree at
1e-12. Caffe itself keeps ``base_lr``, ``gamma`` and ``power`` as float32 (``optional float`` in
caffe.proto) and computes in float32/double; a second reference emulates that and checks that the difference
is only what float32 explains: 2**-24 relative per rounding, amplified by the formula's condition number
(``gamma ** iter`` turns the rounding of ``gamma`` into ``iter * 2**-24``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.errors import SpecInvalid
from tests.schemas import strategies_keras as sk

Spec = dict[str, Any]
CHECK = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GIANT = np.array([10**6, 10**9, 2**40, 2**62], dtype=np.int64)


def ours(spec: Spec, steps: Any, groups: int = 1) -> np.ndarray[Any, Any]:
    run = parse_spec({"param_groups": [{"name": f"g{i}"} for i in range(groups)], "schedule": spec})
    return evaluate(run, np.asarray(steps, dtype=np.int64))


def solver_run(spec: Spec, iterations: int) -> list[float]:
    """GetLearningRate at iter_ = 0, 1, ..., as the solver's loop calls it (float64)."""
    policy, base = spec["lr_policy"], spec["base_lr"]
    gamma, power = spec.get("gamma", 0.0), spec.get("power", 0.0)
    current_step = 0
    rates = []
    for it in range(iterations):
        if policy == "fixed":
            rate = base
        elif policy == "step":
            current_step = it // spec["stepsize"]
            rate = base * math.pow(gamma, current_step)
        elif policy == "exp":
            rate = base * math.pow(gamma, it)
        elif policy == "inv":
            rate = base * math.pow(1.0 + gamma * it, -power)
        elif policy == "multistep":
            stepvalue = spec["stepvalue"]
            if current_step < len(stepvalue) and it >= stepvalue[current_step]:
                current_step += 1
            rate = base * math.pow(gamma, current_step)
        elif policy == "poly":
            # Caffe's formula is undefined past max_iter; lrserve clamps the ratio at 1 (tested below)
            # (1 - iter / max_iter taken exactly: in doubles it cancels near max_iter, where lrserve does not)
            rate = base * math.pow(float(1 - min(Fraction(it, spec["max_iter"]), Fraction(1))), power)
        elif policy == "sigmoid":
            rate = base * (1.0 / (1.0 + exp(-gamma * (it - spec["stepsize"]))))
        else:
            raise AssertionError(policy)
        rates.append(rate)
    return rates


def exp(x: float) -> float:
    """C's exp: inf past the largest double (Python's math.exp raises there)."""
    return math.inf if x > 709.0 else math.exp(x)


def f32(x: float) -> float:
    with np.errstate(over="ignore"):  # C's conversion of a too-large double to float gives inf
        return float(np.float32(x))


def caffe_float32(spec: Spec, it: int) -> tuple[float, float]:
    """Caffe with Dtype = float: (rate, condition number of the float64 formula w.r.t. the roundings)."""
    policy, base = spec["lr_policy"], f32(spec["base_lr"])
    gamma, power = f32(spec.get("gamma", 0.0)), f32(spec.get("power", 0.0))
    if policy == "fixed":
        return base, 0.0
    if policy in ("step", "multistep"):
        k = it // spec["stepsize"] if policy == "step" else sum(1 for v in spec["stepvalue"] if v <= it)
        return f32(base * math.pow(gamma, k)), float(k)  # pow(float, int) is computed in double
    if policy == "exp":
        return f32(base * math.pow(gamma, it)), float(it)
    if policy == "inv":
        inner = f32(1.0 + f32(gamma * it))
        return f32(base * f32(math.pow(inner, -power))), power * (abs(math.log(inner)) + 3.0)
    if policy == "poly":
        r = min(f32(f32(it) / f32(spec["max_iter"])), 1.0)
        cond = power * (abs(math.log(1.0 - r)) + 2.0 * r / (1.0 - r)) if r < 1.0 else 0.0
        return f32(base * f32(math.pow(f32(1.0 - r), power))), cond
    x = f32(-gamma * f32(f32(it) - f32(spec["stepsize"])))
    sig = f32(1.0 / f32(1.0 + f32(exp(x))))
    return f32(base * sig), 2.0 * abs(x) * (1.0 - sig) + 2.0


@pytest.mark.parametrize("policy", sk.CAFFE_POLICIES)
def test_matches_the_solver_loop(policy: str) -> None:
    @CHECK
    @given(sk.caffe_spec(policy))
    def check(spec: Spec) -> None:
        n = 12_000
        expected = np.array(solver_run(spec, n))
        got = ours(spec, np.arange(n))[0]
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)

    check()


@pytest.mark.parametrize("policy", sk.CAFFE_POLICIES)
def test_float32_caffe_differs_only_by_float32_rounding(policy: str) -> None:
    @CHECK
    @given(sk.caffe_spec(policy))
    def check(spec: Spec) -> None:
        steps = np.unique(np.r_[np.arange(0, 20_000, 7), spec.get("stepvalue", []), spec.get("stepsize", 0)])
        got = ours(spec, steps)[0]
        for step, value in zip(steps.tolist(), got.tolist(), strict=True):
            theirs, cond = caffe_float32(spec, step)
            if abs(theirs) < 1e-30:  # float32 underflow: Caffe flushes what float64 still resolves
                assert value < 1e-29
                continue
            assert abs(value - theirs) <= 2.0**-24 * (8.0 + 2.0 * cond) * abs(theirs), (step, value, theirs)

    check()


def test_float32_note_is_real() -> None:
    # The docstring's claim: for exp, Caffe's own float32 gamma makes a relative difference of about iter * 6e-8.
    spec: Spec = {"type": "caffe", "lr_policy": "exp", "base_lr": 0.01, "gamma": 0.9999}
    iteration = 100_000
    theirs, _ = caffe_float32(spec, iteration)
    relative = abs(ours(spec, [iteration])[0, 0] / theirs - 1.0)
    assert 1e-4 < relative < iteration * 2.0**-24 * 2


def test_multistep_drops_at_the_stepvalue_itself() -> None:
    spec: Spec = {"type": "caffe", "lr_policy": "multistep", "base_lr": 1.0, "gamma": 0.1, "stepvalue": [10, 20]}
    assert ours(spec, [9, 10, 19, 20, 10**9])[0].tolist() == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])


def test_poly_is_clamped_past_max_iter() -> None:
    spec: Spec = {"type": "caffe", "lr_policy": "poly", "base_lr": 0.1, "power": 0.5, "max_iter": 100}
    values = ours(spec, [0, 99, 100, 101, 10**9])[0]
    assert values.tolist() == pytest.approx([0.1, 0.01, 0.0, 0.0, 0.0])
    constant = ours({**spec, "power": 0.0}, [0, 100, 10**6])[0]
    assert constant.tolist() == [0.1, 0.1, 0.1]


def test_sigmoid_rises_through_half_at_stepsize() -> None:
    spec: Spec = {"type": "caffe", "lr_policy": "sigmoid", "base_lr": 1.0, "gamma": 0.01, "stepsize": 1000}
    values = ours(spec, [0, 1000, 2000, 2**62])[0]
    assert values[1] == 0.5
    assert values[0] < 0.5 < values[2] < values[3] == 1.0


@CHECK
@given(sk.caffe_spec())
def test_giant_steps_are_finite_and_non_negative(spec: Spec) -> None:
    values = ours(spec, GIANT)
    assert np.all(np.isfinite(values))
    assert np.all(values >= 0)


def test_total_steps_is_max_iter() -> None:
    def total(spec: Spec) -> int | None:
        run = parse_spec({"schedule": spec})
        return run.schedule.to_schedule(run.base_lrs()).total_steps

    assert total({"type": "caffe", "lr_policy": "poly", "base_lr": 0.1, "power": 1, "max_iter": 500}) == 500
    assert total({"type": "caffe", "lr_policy": "fixed", "base_lr": 0.1, "max_iter": 7}) == 7
    assert total({"type": "caffe", "lr_policy": "exp", "base_lr": 0.1, "gamma": 0.99}) is None


def test_per_group_base_lr_and_group_lr_ignored() -> None:
    spec: Spec = {"type": "caffe", "lr_policy": "step", "base_lr": [0.1, 1.0], "gamma": 0.5, "stepsize": 2}
    run = parse_spec({"param_groups": [{"name": "a", "lr": 7.0}, {"name": "b"}], "schedule": spec})
    assert evaluate(run, [0, 2]).tolist() == [[0.1, 0.05], [1.0, 0.5]]
    same = ours({**spec, "base_lr": 0.3}, np.arange(10), groups=3)
    assert np.all(same == same[:1])


GROUPS = [{"name": "a"}, {"name": "b"}]
BAD: list[tuple[Spec, str, str]] = [
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 0.1}, "schedule.stepsize", "Field required"),
    ({"lr_policy": "step", "base_lr": 0.1, "stepsize": 10}, "schedule.gamma", "Field required"),
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 0.1, "stepsize": 0}, "schedule.stepsize", "greater than 0"),
    ({"lr_policy": "step", "base_lr": 0.1, "gamma": 1.5, "stepsize": 10}, "schedule.gamma", "less than or equal to 1"),
    ({"lr_policy": "exp", "base_lr": 0.1, "gamma": -0.5}, "schedule.gamma", "greater than or equal to 0"),
    ({"lr_policy": "exp", "base_lr": -0.1, "gamma": 0.5}, "schedule.base_lr", ">= 0"),
    ({"lr_policy": "exp", "gamma": 0.5}, "schedule.base_lr", "Field required"),
    ({"lr_policy": "inv", "base_lr": 0.1, "gamma": 0.1}, "schedule.power", "Field required"),
    ({"lr_policy": "inv", "base_lr": 0.1, "gamma": 0.1, "power": -1}, "schedule.power", "greater than or equal to 0"),
    (
        {"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": [5, 5]},
        "schedule.stepvalue",
        "strictly increasing",
    ),
    ({"lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": []}, "schedule.stepvalue", "at least 1"),
    ({"lr_policy": "poly", "base_lr": 0.1, "power": 1.0}, "schedule.max_iter", "Field required"),
    (
        {"lr_policy": "sigmoid", "base_lr": 0.1, "gamma": -0.1, "stepsize": 5},
        "schedule.gamma",
        "greater than or equal to 0",
    ),
    ({"lr_policy": "fixed", "base_lr": 0.1, "gamma": 0.5}, "schedule.gamma", "Extra inputs are not permitted"),
    ({"lr_policy": "fixed", "base_lr": 0.1, "stepsize": 5}, "schedule.stepsize", "Extra inputs are not permitted"),
    ({"lr_policy": "fixed", "base_lr": 0.1, "max_iter": 0}, "schedule.max_iter", "greater than 0"),
    ({"lr_policy": "plateau", "base_lr": 0.1}, "schedule", "'lr_policy'"),
    ({"base_lr": 0.1}, "schedule", "'lr_policy'"),
    ({"lr_policy": "fixed", "base_lr": [0.1, 0.2, 0.3]}, "schedule", "schedule.base_lr has 3 entries"),
]


@pytest.mark.parametrize(("schedule", "path", "fragment"), BAD)
def test_bad_specs_name_the_field(schedule: Spec, path: str, fragment: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec({"param_groups": GROUPS, "schedule": {"type": "caffe", **schedule}})
    errors = info.value.errors
    assert [e.path() for e in errors] == [path], [e.as_dict() for e in errors]
    assert fragment in errors[0].msg


@CHECK
@given(sk.caffe_spec())
def test_round_trip(spec: Spec) -> None:
    run = parse_spec({"param_groups": GROUPS, "schedule": spec})
    dumped = run.model_dump(mode="json", by_alias=True)
    assert dumped["schedule"]["type"] == "caffe"
    assert dumped["schedule"]["lr_policy"] == spec["lr_policy"]
    assert parse_spec(dumped) == run
