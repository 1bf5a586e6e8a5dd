"""The step domain (``schemas/limits.py``): every step-valued parameter of every dialect stays within it, booleans
are never numbers, and derived totals fit too. The walk covers every class of the schedule union, so a new dialect
(or a new field) cannot forget the bound: it needs an example below, and then its int fields are checked."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from pydantic import BaseModel

from lrserve.schemas.errors import SpecInvalid
from lrserve.schemas.limits import MAX_STEP
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.union import _MEMBERS, _classes
from lrserve.schemas.validation import validate_run_spec

GROUPS = [{"name": "a", "lr": 0.1}]

#: One minimal valid schedule per class of the union, keyed by class name.
EXAMPLES: dict[str, dict[str, Any]] = {
    "LambdaLR": {"type": "LambdaLR", "lr_lambda": "0.9 ** step"},
    "MultiplicativeLR": {"type": "MultiplicativeLR", "lr_lambda": "0.99"},
    "StepLR": {"type": "StepLR", "step_size": 10},
    "MultiStepLR": {"type": "MultiStepLR", "milestones": [10, 20]},
    "ConstantLR": {"type": "ConstantLR"},
    "LinearLR": {"type": "LinearLR"},
    "ExponentialLR": {"type": "ExponentialLR", "gamma": 0.9},
    "PolynomialLR": {"type": "PolynomialLR"},
    "CosineAnnealingLR": {"type": "CosineAnnealingLR", "T_max": 100},
    "CosineAnnealingWarmRestarts": {"type": "CosineAnnealingWarmRestarts", "T_0": 10, "T_mult": 2},
    "CyclicLR": {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_down": 100},
    "OneCycleLR": {"type": "OneCycleLR", "max_lr": 0.1, "epochs": 10, "steps_per_epoch": 100},
    "ReduceLROnPlateau": {"type": "ReduceLROnPlateau"},
    "SequentialLR": {
        "type": "SequentialLR",
        "milestones": [10],
        "schedulers": [{"type": "LinearLR"}, {"type": "StepLR", "step_size": 5}],
    },
    "ChainedScheduler": {"type": "ChainedScheduler", "schedulers": [{"type": "StepLR", "step_size": 5}]},
    "ExponentialDecay": {
        "type": "ExponentialDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 10,
        "decay_rate": 0.9,
    },
    "PiecewiseConstantDecay": {"type": "PiecewiseConstantDecay", "boundaries": [10], "values": [0.1, 0.01]},
    "PolynomialDecay": {"type": "PolynomialDecay", "initial_learning_rate": 0.1, "decay_steps": 10},
    "InverseTimeDecay": {
        "type": "InverseTimeDecay",
        "initial_learning_rate": 0.1,
        "decay_steps": 10,
        "decay_rate": 0.5,
    },
    "CosineDecay": {
        "type": "CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 10,
        "warmup_target": 0.1,
        "warmup_steps": 5,
    },
    "CosineDecayRestarts": {"type": "CosineDecayRestarts", "initial_learning_rate": 0.1, "first_decay_steps": 10},
    "LinearCosineDecay": {"type": "LinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 10},
    "NoisyLinearCosineDecay": {"type": "NoisyLinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 10},
    "CaffeFixed": {"type": "caffe", "lr_policy": "fixed", "base_lr": 0.1, "max_iter": 100},
    "CaffeStep": {"type": "caffe", "lr_policy": "step", "base_lr": 0.1, "gamma": 0.1, "stepsize": 10},
    "CaffeExp": {"type": "caffe", "lr_policy": "exp", "base_lr": 0.1, "gamma": 0.99},
    "CaffeInv": {"type": "caffe", "lr_policy": "inv", "base_lr": 0.1, "gamma": 0.1, "power": 0.75},
    "CaffeMultiStep": {"type": "caffe", "lr_policy": "multistep", "base_lr": 0.1, "gamma": 0.1, "stepvalue": [10]},
    "CaffePoly": {"type": "caffe", "lr_policy": "poly", "base_lr": 0.1, "power": 1.0, "max_iter": 100},
    "CaffeSigmoid": {"type": "caffe", "lr_policy": "sigmoid", "base_lr": 0.1, "gamma": 0.1, "stepsize": 10},
    "LRRangeTest": {"type": "LRRangeTest"},
}
#: Int fields that are not steps, with their own (larger) bound: 2**53 + 1 is fine there, 2**64 is not.
NOT_STEPS = {("NoisyLinearCosineDecay", "seed")}
#: Float fields bounded by the step domain (a period's growth factor).
FLOAT_STEP_BOUNDED = {("CosineDecayRestarts", "t_mul")}

CLASSES: list[type[BaseModel]] = [c for m in _MEMBERS for c in _classes(m)]


def _kinds(annotation: Any) -> set[type]:
    """The scalar types an annotation admits (through Annotated, unions, lists)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _kinds(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return {k for a in typing.get_args(annotation) for k in _kinds(a)}
    return {annotation} if isinstance(annotation, type) else set()


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_is_list(a) for a in typing.get_args(annotation) if a is not type(None))
    return origin is list


def _fields(kind: type) -> list[tuple[str, str, bool]]:
    out = []
    for cls in CLASSES:
        for name, info in cls.model_fields.items():
            if kind in _kinds(info.annotation):
                out.append((cls.__name__, name, _is_list(info.annotation)))
    return out


INT_FIELDS = _fields(int)
NUMBER_FIELDS = sorted(set(INT_FIELDS) | set(_fields(float)))


def _run(schedule: dict[str, Any]) -> Any:
    return validate_run_spec({"param_groups": GROUPS, "schedule": schedule})


def _refused_at(schedule: dict[str, Any], path: str) -> str:
    with pytest.raises(SpecInvalid) as info:
        _run(schedule)
    paths = [e.path() for e in info.value.errors]
    assert any(p == path or p.startswith(path + ".") for p in paths), paths
    return next(e.msg for e in info.value.errors if e.path() == path or e.path().startswith(path + "."))


def test_every_class_of_the_union_has_an_example_and_it_is_valid() -> None:
    assert sorted(c.__name__ for c in CLASSES) == sorted(EXAMPLES)
    for example in EXAMPLES.values():
        _run(example)


def test_the_walk_finds_the_step_fields() -> None:
    found = {(c, f) for c, f, _ in INT_FIELDS}
    for expected in [("StepLR", "step_size"), ("MultiStepLR", "milestones"), ("SequentialLR", "milestones"),
                     ("OneCycleLR", "total_steps"), ("CaffeMultiStep", "stepvalue"), ("CaffePoly", "max_iter"),
                     ("PiecewiseConstantDecay", "boundaries"), ("ReduceLROnPlateau", "patience"),
                     ("CosineAnnealingWarmRestarts", "T_mult")]:  # fmt: skip
        assert expected in found


@pytest.mark.parametrize(("cls", "field", "is_list"), INT_FIELDS)
@pytest.mark.parametrize("value", [2**64, MAX_STEP + 1])
def test_every_int_field_is_bounded(cls: str, field: str, is_list: bool, value: int) -> None:
    schedule = {**EXAMPLES[cls], field: [value] if is_list else value}
    if (cls, field) in NOT_STEPS and value == MAX_STEP + 1:
        _run(schedule)
        return
    msg = _refused_at(schedule, f"schedule.{field}")
    assert "<=" in msg or "less than or equal" in msg, msg
    if (cls, field) not in NOT_STEPS and cls != "LRRangeTest":
        assert f"must be <= {MAX_STEP} (the step domain)" in msg


#: Fields whose largest value needs others changed (a derived total must fit), or that have their own upper bound.
_AT_THE_END: dict[tuple[str, str], dict[str, Any] | None] = {
    ("CyclicLR", "step_size_up"): {"step_size_down": 0},
    ("CyclicLR", "step_size_down"): {"step_size_up": 1, "step_size_down": MAX_STEP - 1},
    ("CosineDecay", "decay_steps"): {"warmup_steps": 0},
    ("CosineDecay", "warmup_steps"): {"decay_steps": 1, "warmup_steps": MAX_STEP - 1},
    ("OneCycleLR", "epochs"): {"steps_per_epoch": 1},
    ("OneCycleLR", "steps_per_epoch"): {"epochs": 1},
    ("SequentialLR", "milestones"): {},
    ("LRRangeTest", "num_steps"): None,  # at most 10,000,000 steps
}


@pytest.mark.parametrize(("cls", "field", "is_list"), INT_FIELDS)
def test_the_largest_step_is_accepted(cls: str, field: str, is_list: bool) -> None:
    """The bound is the domain's end, not below it."""
    adjust = _AT_THE_END.get((cls, field), {})
    if adjust is None:
        return
    _run({**EXAMPLES[cls], field: [MAX_STEP] if is_list else MAX_STEP, **adjust})


@pytest.mark.parametrize(("cls", "field", "is_list"), NUMBER_FIELDS)
def test_a_boolean_is_never_a_number(cls: str, field: str, is_list: bool) -> None:
    schedule = {**EXAMPLES[cls], field: [True] if is_list else True}
    msg = _refused_at(schedule, f"schedule.{field}")
    assert "boolean" in msg or "valid" in msg, msg


def test_a_boolean_group_lr_or_plateau_field_is_refused() -> None:
    with pytest.raises(SpecInvalid) as info:
        validate_run_spec({"param_groups": [{"name": "a", "lr": True}], "schedule": EXAMPLES["StepLR"]})
    assert [e.path() for e in info.value.errors] == ["param_groups.0.lr"]
    assert "boolean" in info.value.errors[0].msg
    for field in ("patience", "cooldown", "factor", "min_lr"):
        with pytest.raises(SpecInvalid) as info:
            validate_run_spec({"param_groups": GROUPS, "schedule": EXAMPLES["StepLR"], "plateau": {field: True}})
        assert [e.path() for e in info.value.errors] == [f"plateau.{field}"]


@pytest.mark.parametrize("field", ["patience", "cooldown"])
def test_plateau_block_counts_are_in_the_domain(field: str) -> None:
    assert field in PlateauSpec.model_fields
    with pytest.raises(SpecInvalid) as info:
        validate_run_spec({"param_groups": GROUPS, "schedule": EXAMPLES["StepLR"], "plateau": {field: 2**64}})
    assert [e.path() for e in info.value.errors] == [f"plateau.{field}"]


def test_numeric_strings_are_still_numbers() -> None:
    spec = _run({"type": "StepLR", "step_size": "10", "gamma": "1e-1"})
    assert spec.schedule.step_size == 10


@pytest.mark.parametrize(
    ("schedule", "path", "words"),
    [
        ({**EXAMPLES["OneCycleLR"], "epochs": 2**27, "steps_per_epoch": 2**27}, "schedule.steps_per_epoch",
         "epochs * steps_per_epoch = 18014398509481984"),
        ({**EXAMPLES["CosineDecay"], "decay_steps": MAX_STEP, "warmup_steps": 1}, "schedule.warmup_steps",
         "warmup_steps + decay_steps"),
        ({**EXAMPLES["CyclicLR"], "step_size_up": MAX_STEP, "step_size_down": 1}, "schedule.step_size_down",
         "step_size_up + step_size_down"),
        ({**EXAMPLES["CosineDecayRestarts"], "t_mul": 1e300}, "schedule.t_mul", "less than or equal"),
    ],
)  # fmt: skip
def test_derived_totals_are_in_the_domain(schedule: dict[str, Any], path: str, words: str) -> None:
    msg = _refused_at(schedule, path)
    assert words in msg, msg
