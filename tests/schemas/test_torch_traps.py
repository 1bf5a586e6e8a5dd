"""The known traps of torch's schedulers, one test each against the real torch 2.13.0, plus the spec rules:
round trips, refusals with field paths, and what we do where torch raises.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.errors import SpecInvalid
from tests.schemas import strategies as lrst
from tests.schemas.test_torch_parity import assert_parity
from tests.schemas.torch_reference import torch_curve

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler as sched  # noqa: E402


def run(schedule: dict[str, Any], lrs: tuple[float, ...] = (0.1,)) -> dict[str, Any]:
    return {"param_groups": [{"name": f"g{i}", "lr": lr} for i, lr in enumerate(lrs)], "schedule": schedule}


def ours(spec: dict[str, Any], steps: int | np.ndarray, field: str = "lr") -> np.ndarray:
    at = np.arange(steps) if isinstance(steps, int) else steps
    return evaluate(parse_spec(spec), at, field=field)  # type: ignore[arg-type]


def both(spec: dict[str, Any], steps: int, optimizer: str = "sgd") -> tuple[np.ndarray, np.ndarray]:
    ref, _ = torch_curve(spec, steps, optimizer)
    mine = ours(spec, steps)
    assert_parity(mine, ref, spec["schedule"]["type"])
    return mine, ref


# --- SequentialLR ------------------------------------------------------------------------------------------


def test_sequential_restarts_each_phase_from_the_base_lr() -> None:
    spec = run(
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "ExponentialLR", "gamma": 0.9},
                {"type": "ConstantLR", "factor": 0.5, "total_iters": 3},
            ],
            "milestones": [5],
        }
    )
    lr, _ = both(spec, 12)
    assert lr[0, 4] == pytest.approx(0.1 * 0.9**4)
    # at the milestone ConstantLR starts over from the base LR (0.1 * 0.5), not from 0.1 * 0.9 ** 4
    assert lr[0, 5:8].tolist() == pytest.approx([0.05, 0.05, 0.05])
    assert lr[0, 8:].tolist() == pytest.approx([0.1] * 4)


def test_sequential_linear_warmup_then_cosine() -> None:
    spec = run(
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
                {"type": "CosineAnnealingLR", "T_max": 900, "eta_min": 1e-4},
            ],
            "milestones": [100],
        },
        (0.1, 1.0),
    )
    lr, _ = both(spec, 2500)  # on past the cosine's end: torch's recursion turns back up
    assert lr[:, 0].tolist() == pytest.approx([0.001, 0.01])
    assert lr[:, 100].tolist() == pytest.approx([0.1, 1.0])  # the cosine starts at the base LR
    assert lr[:, 1000].tolist() == pytest.approx([1e-4, 1e-4])
    assert parse_spec(spec).schedule.to_schedule(np.array([0.1, 1.0])).total_steps == 100 + 901


def test_sequential_constant_then_exponential_phases() -> None:
    spec = run(
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "ConstantLR", "factor": 0.25, "total_iters": 10},
                {"type": "ExponentialLR", "gamma": 0.5},
                {"type": "ConstantLR", "factor": 0.5, "total_iters": 2},
            ],
            "milestones": [4, 8],
        }
    )
    lr, _ = both(spec, 14)
    # ConstantLR never reaches its total_iters (the milestone comes first); each phase starts from 0.1
    assert lr[0, :4].tolist() == pytest.approx([0.025] * 4)
    assert lr[0, 4:8].tolist() == pytest.approx([0.1, 0.05, 0.025, 0.0125])
    assert lr[0, 8:].tolist() == pytest.approx([0.05, 0.05, 0.1, 0.1, 0.1, 0.1])


def test_sequential_multiplicative_phase_continues_from_the_current_lr() -> None:
    # torch's _update_lr(0) has no closed form for MultiplicativeLR: it multiplies the LR of the step before
    # the milestone by f(0), so this phase does *not* restart from the base LR
    spec = run(
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "StepLR", "step_size": 2, "gamma": 0.5},
                {"type": "MultiplicativeLR", "lr_lambda": "0.9"},
            ],
            "milestones": [5],
        }
    )
    lr, _ = both(spec, 9)
    assert lr[0, 4] == pytest.approx(0.025)
    assert lr[0, 5:].tolist() == pytest.approx([0.025 * 0.9 ** (k + 1) for k in range(4)])


# --- MultiStepLR, CosineAnnealingWarmRestarts ------------------------------------------------------------------


def test_multistep_drops_at_the_milestone_step() -> None:
    lr, _ = both(run({"type": "MultiStepLR", "milestones": [0, 3, 5], "gamma": 0.1}), 8)
    assert lr[0].tolist() == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4, 1e-4])


def test_warm_restarts_match_stepping_not_float_epochs() -> None:
    spec = run({"type": "CosineAnnealingWarmRestarts", "T_0": 1, "T_mult": 3, "eta_min": 0.001})
    lr, _ = both(spec, 400)
    restarts = [0, 1, 4, 13, 40, 121, 364]  # 1 + 3 + 9 + ...: exact integers
    assert lr[0, restarts].tolist() == pytest.approx([0.1] * len(restarts))
    # torch's step(epoch) path finds the period with a float log: log(243, 3) = 4.999..., one period short
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sched.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=3, eta_min=0.001)
        s.step(121)
    assert math.log(243, 3) < 5
    assert s.get_last_lr()[0] == pytest.approx(0.001)  # torch's float path: the bottom, not the restart
    assert lr[0, 121] == pytest.approx(0.1)


# --- momentum ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cyclic_momentum_sgd_and_adam(optimizer: str) -> None:
    spec = run(
        {
            "type": "CyclicLR",
            "base_lr": [0.01, 0.02],
            "max_lr": 0.1,
            "step_size_up": 4,
            "step_size_down": 2,
            "base_momentum": 0.8,
            "max_momentum": [0.9, 0.95],
        },
        (1.0, 1.0),
    )
    ref_lr, ref_m = torch_curve(spec, 30, optimizer)
    mom = ours(spec, 30, "momentum")
    assert_parity(mom, ref_m, f"momentum ({optimizer})")
    assert_parity(ours(spec, 30), ref_lr, "lr")
    assert mom[:, 0].tolist() == pytest.approx([0.9, 0.95])  # max momentum at the LR's trough
    assert mom[:, 4].tolist() == pytest.approx([0.8, 0.8])  # base momentum at its peak


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_one_cycle_momentum_sgd_and_adam(optimizer: str) -> None:
    spec = run(
        {
            "type": "OneCycleLR",
            "max_lr": 0.1,
            "total_steps": 100,
            "three_phase": True,
            "base_momentum": [0.8, 0.85],
            "max_momentum": 0.95,
        },
        (1.0, 1.0),
    )
    ref_lr, ref_m = torch_curve(spec, 100, optimizer)
    mom = ours(spec, 100, "momentum")
    assert_parity(mom, ref_m, f"momentum ({optimizer})")
    assert_parity(ours(spec, 100), ref_lr, "lr")
    assert mom[:, 29].tolist() == pytest.approx([0.8, 0.85])


def test_momentum_is_none_without_cycle_momentum() -> None:
    spec = parse_spec(run({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100, "cycle_momentum": False}))
    assert spec.schedule.to_schedule(np.array([0.1])).momentum is None
    assert np.isnan(evaluate(spec, [0, 1], field="momentum")).all()


# --- OneCycleLR at and past the end ----------------------------------------------------------------------


@pytest.mark.parametrize("anneal", ["cos", "linear"])
def test_one_cycle_at_and_past_total_steps(anneal: str) -> None:
    total = 1000
    spec = run({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": total, "anneal_strategy": anneal})
    ref, _ = torch_curve(spec, total + 1)  # torch defines steps 0..total
    mine = ours(spec, total + 5)
    final = 0.1 / 25.0 / 1e4
    assert_parity(mine[:, :total], ref[:, :total], "within the cycle")
    assert ref[0, total - 1] == pytest.approx(final)
    # torch's step == total_steps extrapolates the anneal past its end (pct > 1): above the final LR for cos,
    # below it (here: negative) for linear; we hold the end of the cycle instead
    if anneal == "linear":
        assert ref[0, total] < 0
    else:
        assert ref[0, total] > final
    assert mine[0, total:].tolist() == [mine[0, total - 1]] * 5
    assert ours(spec, np.array([10**12]))[0, 0] == mine[0, total - 1]
    mom = ours(spec, np.array([total - 1, total, total + 1]), "momentum")
    assert mom[0].tolist() == pytest.approx([0.95, 0.95, 0.95])
    # and torch raises one step later, where we keep holding
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sched.OneCycleLR(opt, max_lr=0.1, total_steps=total, anneal_strategy=anneal)
        for _ in range(total):
            s.step()
        with pytest.raises(ValueError, match="Tried to step"):
            s.step()
    assert parse_spec(spec).schedule.to_schedule(np.array([0.1])).total_steps == total


def test_one_cycle_pct_start_times_total_one_is_refused() -> None:
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    with pytest.raises(ZeroDivisionError):  # torch: 0/0 at step 0
        sched.OneCycleLR(opt, max_lr=0.1, total_steps=10, pct_start=0.1)
    with pytest.raises(SpecInvalid) as info:
        parse_spec(run({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10, "pct_start": 0.1}))
    assert info.value.errors[0].path() == "schedule.pct_start"


# --- more torch quirks we reproduce (or deliberately do not) ---------------------------------------------------


def test_cosine_past_t_max_follows_torch_recursion() -> None:
    # past T_max torch's ratio recursion rises again; its rounding differs from the textbook cosine by ~1e-9
    # relative at T = 20000, which the replayed steps reproduce
    T = 20_000
    spec = run({"type": "CosineAnnealingLR", "T_max": T, "eta_min": 0.05})
    mine, ref = both(spec, 3 * T)
    s = np.arange(3 * T)
    textbook = 0.05 + 0.05 * (1 + np.cos(np.pi * s / T)) / 2
    assert np.max(np.abs(textbook - ref[0]) / ref[0]) > 1e-9  # the naive closed form would fail parity
    assert mine[0, 2 * T] == pytest.approx(0.1)


def test_chained_cosine_restart_discards_the_other_factors() -> None:
    spec = run(
        {
            "type": "ChainedScheduler",
            "schedulers": [{"type": "ExponentialLR", "gamma": 0.9}, {"type": "CosineAnnealingLR", "T_max": 5}],
        },
        (0.1, 1.0),
    )
    lr, _ = both(spec, 40)
    assert lr[:, 5].tolist() == [0.0, 0.0]
    # step 6: torch's cosine adds base * (1 - cos(pi/5)) / 2 to 0: the exponential's 0.9 ** 6 is gone
    assert lr[:, 6].tolist() == pytest.approx([0.1 * (1 - math.cos(math.pi / 5)) / 2, (1 - math.cos(math.pi / 5)) / 2])


def test_chained_closed_form_matches_torch() -> None:
    spec = run(
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "LinearLR", "start_factor": 0.1, "total_iters": 50},
                {"type": "MultiStepLR", "milestones": [100, 200]},
                {"type": "MultiplicativeLR", "lr_lambda": "0.999"},
            ],
        },
        (0.1, 0.5),
    )
    both(spec, 300)


def test_scans_refuse_steps_they_cannot_reach_in_time() -> None:
    from lrserve.schemas.core.combinators import MAX_SCAN_STEP

    spec = parse_spec(run({"type": "MultiplicativeLR", "lr_lambda": "0.99"}))
    with pytest.raises(ValueError, match="no closed form"):
        evaluate(spec, [MAX_SCAN_STEP + 1])
    closed = parse_spec(run({"type": "ChainedScheduler", "schedulers": [{"type": "ExponentialLR", "gamma": 0.5}]}))
    assert evaluate(closed, [10**15])[0, 0] == 0.0  # closed forms take any step


def test_linear_end_factor_zero_holds_torch_residue() -> None:
    # torch's last ramp ratio is 1 - d/d' for two roundings of one number: it leaves ~1e-17, not 0
    lr, ref = both(
        run({"type": "LinearLR", "start_factor": 0.7334895203064781, "end_factor": 0.0, "total_iters": 788}), 1000
    )
    assert 0 < abs(ref[0, 900]) < 1e-15
    assert lr[0, 900] == pytest.approx(ref[0, 900], rel=1e-9)


def test_cyclic_triangular2_past_1024_cycles() -> None:
    spec = run({"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 1, "mode": "triangular2"})
    ref, _ = torch_curve(spec, 2048)
    mine = ours(spec, 3000)
    assert_parity(mine[:, :2048], ref, "before the overflow")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sched.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=1, mode="triangular2")
        for _ in range(2047):
            s.step()
        with pytest.raises(OverflowError):  # step 2048 is in cycle 1025: 2.0 ** 1024
            s.step()
    assert mine[0, 2100:].tolist() == [0.01] * 900  # the amplitude has halved to nothing


# --- spec rules: round trips and refusals ------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(lrst.SCHEDULES))
@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_spec_round_trips(kind: str, data: st.DataObject) -> None:
    spec = parse_spec(data.draw(lrst.run_specs(kind), label="run"))
    dumped = spec.model_dump(mode="json")
    again = parse_spec(dumped)
    assert again == spec
    assert again.model_dump(mode="json") == dumped


BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"type": "LambdaLR", "lr_lambda": "__import__('os')"}, "schedule.lr_lambda", "unknown function"),
    ({"type": "LambdaLR", "lr_lambda": ["step", "1 / step"]}, "schedule.lr_lambda", "entry 1"),
    ({"type": "MultiplicativeLR", "lr_lambda": "1 / (step - 1)"}, "schedule.lr_lambda", "step 1"),
    ({"type": "StepLR", "step_size": 0}, "schedule.step_size", "greater than 0"),
    ({"type": "MultiStepLR", "milestones": [5, 3]}, "schedule.milestones", "strictly increasing"),
    ({"type": "MultiStepLR", "milestones": [5, 5]}, "schedule.milestones", "strictly increasing"),
    ({"type": "ConstantLR", "factor": 0.0}, "schedule.factor", "(0, 1]"),
    ({"type": "ConstantLR", "factor": 1.5}, "schedule.factor", "(0, 1]"),
    ({"type": "LinearLR", "start_factor": 0.0}, "schedule.start_factor", "greater than 0"),
    ({"type": "LinearLR", "end_factor": 1.5}, "schedule.end_factor", "between 0 and 1"),
    ({"type": "LinearLR", "total_iters": 0}, "schedule.total_iters", "greater than 0"),
    ({"type": "ExponentialLR", "gamma": -0.5}, "schedule.gamma", "greater than or equal to 0"),
    ({"type": "ExponentialLR", "gamma": 1.01}, "schedule.gamma", "less than or equal to 1"),
    ({"type": "StepLR", "step_size": 2, "gamma": 2.0}, "schedule.gamma", "less than or equal to 1"),
    (
        {"type": "CyclicLR", "base_lr": 0.1, "max_lr": 1, "mode": "exp_range", "gamma": 1.5},
        "schedule.gamma",
        "less than",
    ),
    ({"type": "PolynomialLR", "power": -1.0}, "schedule.power", "greater than or equal to 0"),
    ({"type": "CosineAnnealingLR", "T_max": 10, "eta_min": -1.0}, "schedule.eta_min", ">= 0"),
    (
        {"type": "CosineAnnealingWarmRestarts", "T_0": 10, "eta_min": [0.0, 0.1, 0.2]},
        "schedule",
        "eta_min has 3 entries but the run has 2 param groups",
    ),
    (
        {"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "step_size_up": 0},
        "schedule.step_size_up",
        "greater than 0",
    ),
    ({"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "mode": "sine"}, "schedule.mode", "triangular"),
    ({"type": "CyclicLR", "base_lr": 0.01, "max_lr": 0.1, "scale_fn": "lambda x: 1"}, "schedule.scale_fn", "None"),
    ({"type": "OneCycleLR", "max_lr": 0.1}, "schedule.steps_per_epoch", "total_steps, or both"),
    ({"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 0}, "schedule.total_steps", "greater than 0"),
    (
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100, "pct_start": 1.5},
        "schedule.pct_start",
        "between 0 and 1",
    ),
    (
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 100, "anneal_strategy": "exp"},
        "schedule.anneal_strategy",
        "cos",
    ),
    (
        {"type": "OneCycleLR", "max_lr": [0.1, 0.2], "total_steps": 100, "div_factor": 0},
        "schedule.div_factor",
        "greater than 0",
    ),
    (
        {"type": "SequentialLR", "schedulers": [{"type": "StepLR", "step_size": 2}] * 2, "milestones": []},
        "schedule.milestones",
        "one milestone fewer",
    ),
    (
        {"type": "SequentialLR", "schedulers": [{"type": "StepLR", "step_size": 2}] * 3, "milestones": [5, 5]},
        "schedule.milestones",
        "strictly increasing",
    ),
    (
        {
            "type": "SequentialLR",
            "schedulers": [{"type": "StepLR", "step_size": 2}, {"type": "StepLR", "step_size": 0}],
            "milestones": [5],
        },
        "schedule.schedulers.1.step_size",
        "greater than 0",
    ),
    (
        {
            "type": "SequentialLR",
            "schedulers": [
                {"type": "StepLR", "step_size": 2},
                {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 10},
            ],
            "milestones": [5],
        },
        "schedule.schedulers.1",
        "overwrites the optimizer",
    ),
    (
        {"type": "SequentialLR", "schedulers": [{"type": "ReduceLROnPlateau"}], "milestones": []},
        "schedule.schedulers.0",
        "plateau block",
    ),
    (
        {
            "type": "ChainedScheduler",
            "schedulers": [{"type": "StepLR", "step_size": 2}, {"type": "LambdaLR", "lr_lambda": "1"}],
        },
        "schedule.schedulers.1",
        "cannot be chained",
    ),
    (
        {"type": "ChainedScheduler", "schedulers": [{"type": "CosineAnnealingLR", "T_max": 5, "eta_min": 0.01}]},
        "schedule.schedulers.0",
        "eta_min 0",
    ),
    (
        {"type": "ChainedScheduler", "schedulers": [{"type": "CosineAnnealingLR", "T_max": 5}] * 2},
        "schedule.schedulers",
        "at most one",
    ),
    (
        {
            "type": "ChainedScheduler",
            "schedulers": [
                {"type": "SequentialLR", "schedulers": [{"type": "StepLR", "step_size": 2}], "milestones": []}
            ],
        },
        "schedule.schedulers.0",
        "cannot be nested",
    ),
    ({"type": "ChainedScheduler", "schedulers": []}, "schedule.schedulers", "at least 1"),
]


@pytest.mark.parametrize(("schedule", "path", "message"), BAD, ids=[f"{b[0]['type']}-{b[1]}" for b in BAD])
def test_bad_spec_names_the_field(schedule: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec(run(schedule, (0.1, 0.2)))
    errors = info.value.errors
    assert errors, str(info.value)
    assert errors[0].path() == path, str(info.value)
    assert message in errors[0].msg, str(info.value)


@pytest.mark.parametrize(
    ("schedule", "path"),
    [
        ({"type": "CosineAnnealingLR", "T_max": 0}, "schedule.T_max"),
        ({"type": "CosineAnnealingWarmRestarts", "T_0": 10, "T_mult": 0}, "schedule.T_mult"),
    ],
)
def test_bad_capitalised_field_names_the_field(schedule: dict[str, Any], path: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec(run(schedule))
    assert info.value.errors[0].path() == path


def test_groups_without_lr_only_for_cyclic_schedules() -> None:
    groups = [{"name": "a"}, {"name": "b"}]
    spec = parse_spec({"param_groups": groups, "schedule": {"type": "CyclicLR", "base_lr": 0.01, "max_lr": [0.1, 0.2]}})
    np.testing.assert_allclose(evaluate(spec, [0, 2000]), [[0.01, 0.1], [0.01, 0.2]], rtol=1e-12)
    with pytest.raises(SpecInvalid, match="need an 'lr'"):
        parse_spec({"param_groups": groups, "schedule": {"type": "StepLR", "step_size": 3}})
