"""``check_values``: a spec whose LR is not a finite number >= 0 at a step it defines is refused before a run exists."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lrserve.schemas.errors import SpecInvalid
from lrserve.schemas.limits import CHECK_MAX_POINTS, CHECK_MAX_WORK, MAX_STEP
from lrserve.schemas.validation import build_schedule, check_grid, check_values, validate_run_spec

GROUPS = [{"name": "a", "lr": 0.1}]


def _spec(schedule: dict[str, Any]) -> Any:
    return validate_run_spec({"param_groups": GROUPS, "schedule": schedule})


def _refused(schedule: dict[str, Any]) -> SpecInvalid:
    with pytest.raises(SpecInvalid) as info:
        check_values(_spec(schedule))
    return info.value


def test_division_by_zero_at_step_5_is_refused_naming_the_step() -> None:
    error = _refused({"type": "LambdaLR", "lr_lambda": "1/(step-5)"})
    assert [e.path() for e in error.errors] == ["schedule.lr_lambda"]
    assert "step 5" in error.errors[0].msg
    assert error.extra["step"] == 5


def test_a_step_past_the_dense_part_is_found_by_the_sample() -> None:
    error = _refused({"type": "LambdaLR", "lr_lambda": "1 / (step - 123457) ** 2"})
    assert error.extra["step"] == 123457


def test_the_phase_of_a_sequential_schedule_is_named() -> None:
    error = _refused(
        {
            "type": "SequentialLR",
            "milestones": [100_000],
            "schedulers": [{"type": "StepLR", "step_size": 3}, {"type": "LambdaLR", "lr_lambda": "1/(step-7)"}],
        }
    )
    assert [e.path() for e in error.errors] == ["schedule.schedulers.1.lr_lambda"]
    assert error.extra["step"] == 100_007


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "LambdaLR", "lr_lambda": "1 - step / 1000"},  # negative from step 1001 on
        {"type": "LinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "num_periods": 1e308},  # NaN
        {"type": "LinearCosineDecay", "initial_learning_rate": 1e308, "decay_steps": 10, "alpha": 1e308},  # inf
        {"type": "MultiplicativeLR", "lr_lambda": "1/(step-500)"},
    ],
)
def test_non_finite_or_negative_values_are_refused(schedule: dict[str, Any]) -> None:
    error = _refused(schedule)
    assert error.errors[0].path().startswith("schedule")


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "LambdaLR", "lr_lambda": "max(0, 1 - step / 1000)"},
        {"type": "StepLR", "step_size": MAX_STEP},
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": MAX_STEP},
        {"type": "CosineAnnealingWarmRestarts", "T_0": 2**52, "T_mult": MAX_STEP},
        {"type": "CosineDecayRestarts", "initial_learning_rate": 0.1, "first_decay_steps": 1, "t_mul": MAX_STEP},
        {"type": "CyclicLR", "base_lr": 0.001, "max_lr": 0.1, "step_size_up": 2**52, "mode": "triangular2"},
        {"type": "MultiplicativeLR", "lr_lambda": "0.999"},
        {"type": "caffe", "lr_policy": "sigmoid", "base_lr": 0.1, "gamma": 1e308, "stepsize": 10},
    ],
)
def test_good_schedules_pass_within_the_work_bound(schedule: dict[str, Any]) -> None:
    spec = _spec(schedule)
    check_values(spec)
    built = build_schedule(spec)
    steps = check_grid(spec, built)
    assert steps.size <= CHECK_MAX_POINTS
    assert built.work(steps) <= CHECK_MAX_WORK
    assert np.all(np.diff(steps) > 0) and steps[0] == 0 and steps[-1] <= MAX_STEP


def test_the_grid_covers_an_endless_schedule_to_the_domain_end_and_a_bounded_one_to_its_length() -> None:
    endless = _spec({"type": "StepLR", "step_size": 10})
    assert check_grid(endless, build_schedule(endless))[-1] == MAX_STEP
    onecycle = _spec({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10**9})
    grid = check_grid(onecycle, build_schedule(onecycle))
    assert grid[-1] == 10**9 and {10**9 - 1, 10**9, 65_535}.issubset(set(grid.tolist()))
