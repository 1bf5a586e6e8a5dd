"""Bad RunSpecs and the error each one gives: the field path a client sees and a fragment of the message.

The table is the place to add a case: ``Bad(id, spec, path, fragment)`` passes when some error of the
``SpecInvalid`` has exactly ``path`` (``FieldError.path()``) and a message containing ``fragment``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from lrserve.schemas import parse_spec
from lrserve.schemas.errors import SpecInvalid

G1 = [{"name": "a", "lr": 0.1}]
G2 = [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.2}]
STEP = {"type": "StepLR", "step_size": 2}


def run(schedule: Any = STEP, groups: Any = G1, **extra: Any) -> dict[str, Any]:
    return {"param_groups": groups, "schedule": schedule, **extra}


@dataclass(frozen=True)
class Bad:
    id: str
    spec: Any
    path: str
    fragment: str


BAD: list[Bad] = [
    # shape of the document
    Bad("not a mapping", [1, 2], "", "valid dictionary"),
    Bad("unknown type", run({"type": "Nope"}), "schedule", "does not match any of the expected tags"),
    Bad("missing type", run({"step_size": 2}), "schedule", "discriminator 'type'"),
    Bad("missing schedule", {"param_groups": G1}, "schedule", "Field required"),
    Bad("unknown top-level field", run(foo=1), "foo", "Extra inputs are not permitted"),
    Bad("unknown schedule field", run({**STEP, "stepsize": 3}), "schedule.stepsize", "Extra inputs"),
    Bad("unknown group field", run(groups=[{"name": "a", "lr": 0.1, "momentum": 0.9}]), "param_groups.0.momentum",
        "Extra inputs"),
    Bad("unknown plateau field", run(plateau={"verbose": True}), "plateau.verbose", "Extra inputs"),
    # param groups
    Bad("no param groups", run(groups=[]), "param_groups", "at least 1 item"),
    Bad("duplicate group names", run(groups=[{"name": "a", "lr": 0.1}, {"name": "a", "lr": 0.2}]), "param_groups",
        "'a' appears twice"),
    Bad("group name with a space", run(groups=[{"name": "a b", "lr": 0.1}]), "param_groups.0.name",
        "should match pattern"),
    Bad("negative lr", run(groups=[{"name": "a", "lr": -0.1}]), "param_groups.0.lr", "greater than or equal to 0"),
    Bad("missing lr where the schedule scales it", run(groups=[{"name": "a"}]), "schedule",
        "StepLR scales each group's base LR: param_groups ['a'] need an 'lr'"),
    # non-finite numbers (YAML's .nan and .inf reach us as floats)
    Bad("NaN lr", run(groups=[{"name": "a", "lr": math.nan}]), "param_groups.0.lr", "finite"),
    Bad("inf gamma", run({**STEP, "gamma": math.inf}), "schedule.gamma", "finite"),
    Bad("NaN in a per-group list", run({"type": "CosineAnnealingLR", "T_max": 10, "eta_min": [0.0, math.nan]}, G2),
        "schedule.eta_min", "finite"),
    # per-group lists must have one entry per param group
    Bad("eta_min list too long", run({"type": "CosineAnnealingLR", "T_max": 10, "eta_min": [0.0, 0.1, 0.2]}, G2),
        "schedule", "schedule.eta_min has 3 entries but the run has 2 param groups"),
    Bad("max_lr list too long", run({"type": "OneCycleLR", "max_lr": [0.1, 0.2, 0.3], "total_steps": 100}, G2),
        "schedule", "schedule.max_lr has 3 entries"),
    Bad("nested per-group list",
        run({"type": "SequentialLR", "milestones": [3],
             "schedulers": [STEP, {"type": "CosineAnnealingLR", "T_max": 3, "eta_min": [0.1, 0.2, 0.3]}]}, G2),
        "schedule", "schedule.schedulers.1.eta_min has 3 entries"),
    Bad("ReduceLROnPlateau min_lr list", run({"type": "ReduceLROnPlateau", "min_lr": [0.1, 0.2, 0.3]}, G2),
        "schedule", "schedule.min_lr has 3 entries"),
    Bad("plateau min_lr list", run(groups=G2, plateau={"min_lr": [0.1, 0.2, 0.3]}), "plateau",
        "min_lr has 3 entries but the run has 2 param groups"),
    # plateau rules
    Bad("plateau factor above 1", run(plateau={"factor": 1.5}), "plateau.factor", "must be in (0, 1)"),
    Bad("plateau factor 1", run(plateau={"factor": 1.0}), "plateau.factor", "must be in (0, 1)"),
    Bad("plateau factor 0", run(plateau={"factor": 0}), "plateau.factor", "must be in (0, 1)"),
    Bad("plateau negative patience", run(plateau={"patience": -1}), "plateau.patience", "greater than or equal to 0"),
    Bad("ReduceLROnPlateau schedule and a plateau block", run({"type": "ReduceLROnPlateau"}, plateau={}),
        "plateau", "already carries the plateau rules"),
    Bad("torch style with mode auto", run(plateau={"mode": "auto"}), "plateau.mode", "'auto' is Keras'"),
    Bad("torch style with min_delta", run(plateau={"min_delta": 0.1}), "plateau.min_delta", "torch uses threshold"),
    Bad("keras style with threshold", run(plateau={"style": "keras", "threshold": 0.1}), "plateau.threshold",
        "Keras uses min_delta"),
    Bad("keras auto mode on an unknown metric", run(plateau={"style": "keras", "monitor": "val_score"}),
        "plateau.mode", "give mode 'min' or 'max'"),
    Bad("metric and monitor disagree", run(plateau={"metric": "a", "monitor": "b"}), "plateau", "not both"),
    Bad("unknown plateau style", run(plateau={"style": "caffe"}), "plateau.style", "'torch' or 'keras'"),
    # lr_lambda sandbox
    Bad("lr_lambda escape", run({"type": "LambdaLR", "lr_lambda": "__import__('os')"}), "schedule.lr_lambda",
        "unknown function '__import__'"),
    Bad("lr_lambda attribute", run({"type": "MultiplicativeLR", "lr_lambda": "step.__class__"}), "schedule.lr_lambda",
        "attribute access"),
    Bad("lr_lambda inf at step 0", run({"type": "LambdaLR", "lr_lambda": "1 / step"}), "schedule.lr_lambda",
        "at step 0"),
    Bad("lr_lambda syntax", run({"type": "LambdaLR", "lr_lambda": "step +"}), "schedule.lr_lambda",
        "not a Python expression"),
    # torch fields
    Bad("step_size 0", run({"type": "StepLR", "step_size": 0}), "schedule.step_size", "greater than 0"),
    Bad("capitalised torch field", run({"type": "CosineAnnealingLR", "T_max": 0}), "schedule.T_max",
        "greater than 0"),
    Bad("bad child of SequentialLR",
        run({"type": "SequentialLR", "milestones": [3], "schedulers": [{"type": "StepLR", "step_size": 0}, STEP]}),
        "schedule.schedulers.0.step_size", "greater than 0"),
    # Keras and Caffe dialects
    Bad("keras decay_steps 0",
        run({"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.9}),
        "schedule.decay_steps", "greater than 0"),
    Bad("keras unknown field",
        run({"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9, "foo": 1}),
        "schedule.foo", "Extra inputs"),
    Bad("caffe unknown lr_policy", run({"type": "caffe", "lr_policy": "nope", "base_lr": 0.1}), "schedule",
        "'fixed'"),
    Bad("caffe step without stepsize", run({"type": "caffe", "lr_policy": "step", "base_lr": 0.1, "gamma": 0.5}),
        "schedule.stepsize", "Field required"),
    Bad("caffe field of another policy", run({"type": "caffe", "lr_policy": "fixed", "base_lr": 0.1, "gamma": 0.5}),
        "schedule.gamma", "Extra inputs"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_spec_names_the_field(case: Bad) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec(case.spec)
    errors = info.value.errors
    assert errors, "SpecInvalid without field errors"
    found = [(e.path(), e.msg) for e in errors]
    assert any(path == case.path and case.fragment in msg for path, msg in found), found
    # The summary names the first error; the status is the one clients dispatch on.
    assert info.value.detail.startswith(f"{errors[0].path() or '<root>'}: {errors[0].msg}")
    assert info.value.status == 422
    assert info.value.problem_type == "spec-invalid"


def test_table_ids_are_unique() -> None:
    assert len({c.id for c in BAD}) == len(BAD)


@pytest.mark.parametrize(
    "spec",
    [
        run(groups=[{"name": "a"}], schedule={"type": "ExponentialDecay", "initial_learning_rate": 0.1,
                                              "decay_steps": 10, "decay_rate": 0.9}),
        run(groups=[{"name": "a"}], schedule={"type": "caffe", "lr_policy": "fixed", "base_lr": 0.1}),
        run(plateau={"style": "keras", "monitor": "val_accuracy", "min_delta": 0.0}),
        run(plateau={"style": "keras", "monitor": "val_score", "mode": "max"}),
        run(groups=G2, plateau={"min_lr": [0.0, 1e-4]}),
        run({"type": "LambdaLR", "lr_lambda": ["0.95 ** epoch", "1.0"]}, G2),
    ],
    ids=["keras names its own LR", "caffe names its own LR", "keras accuracy", "keras explicit mode",
         "per-group min_lr", "per-group lambdas"],
)  # fmt: skip
def test_near_misses_are_valid(spec: dict[str, Any]) -> None:
    parse_spec(spec)


def test_every_error_is_reported_not_only_the_first() -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec(run({"type": "StepLR", "step_size": 0, "gamma": math.nan}, groups=[{"name": "a", "lr": -1}]))
    paths = {e.path() for e in info.value.errors}
    assert {"param_groups.0.lr", "schedule.step_size", "schedule.gamma"} <= paths
    assert "(and 2 more)" in info.value.detail
