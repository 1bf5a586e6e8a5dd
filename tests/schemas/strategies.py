"""Hypothesis strategies for the torch specs, as the JSON mappings a client would send.

``run_specs(kind)`` draws a whole RunSpec mapping (1-3 param groups and a schedule of ``kind``); each
``<kind>(draw, n)`` draws the schedule for ``n`` groups. Per-group parameters are drawn as a scalar or as a
list with one entry per group. Parameter ranges are sized for 10,000-step curves: every drop, restart and
phase boundary of interest lands inside the curve.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

Spec = dict[str, Any]
SpecFn = Callable[[st.DrawFn, int], Spec]

CURVE_STEPS = 10_000

# lr_lambda texts valid in the expression language and in Python (the torch side evaluates them with eval)
LAMBDA_EXPRESSIONS = (
    "0.95 ** (step // 100)",
    "1.0 / (1.0 + 0.001 * step)",
    "min(1.0, (step + 1) / 500)",
    "0.5 * (1 + math.cos(math.pi * step / 10000))",
    "max(0.0, 1 - step / 8000) ** 2",
    "1.0 if step < 3000 else 0.1",
    "exp(-step / 2500)",
)
MULTIPLICATIVE_EXPRESSIONS = (
    "0.9995",
    "0.99 if step % 1000 == 0 else 1.0",
    "1 - 0.0001 * (step % 7)",
    "1.0 / (1.0 + 1e-5 * step)",
    "0.5 if step == 2000 else 1.0",
)


def finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


def lrs() -> st.SearchStrategy[float]:
    return finite(1e-4, 1.0)


def per_group(draw: st.DrawFn, n: int, elem: st.SearchStrategy[Any]) -> Any:
    """A scalar, or (when the run has several groups, sometimes) one value per group."""
    if n > 1 and draw(st.booleans()):
        return draw(st.lists(elem, min_size=n, max_size=n))
    return draw(elem)


def lambda_lr(draw: st.DrawFn, n: int) -> Spec:
    return {"type": "LambdaLR", "lr_lambda": per_group(draw, n, st.sampled_from(LAMBDA_EXPRESSIONS))}


def multiplicative_lr(draw: st.DrawFn, n: int) -> Spec:
    return {"type": "MultiplicativeLR", "lr_lambda": per_group(draw, n, st.sampled_from(MULTIPLICATIVE_EXPRESSIONS))}


def step_lr(draw: st.DrawFn, n: int) -> Spec:
    return {"type": "StepLR", "step_size": draw(st.integers(1, 3000)), "gamma": draw(finite(0.05, 1.0))}


def multistep_lr(draw: st.DrawFn, n: int) -> Spec:
    milestones = sorted(draw(st.sets(st.integers(0, CURVE_STEPS - 1), max_size=8)))
    return {"type": "MultiStepLR", "milestones": milestones, "gamma": draw(finite(0.05, 1.0))}


def constant_lr(draw: st.DrawFn, n: int) -> Spec:
    return {
        "type": "ConstantLR",
        "factor": draw(finite(0.01, 1.0)),
        "total_iters": draw(st.integers(1, 12_000)),
    }


def linear_lr(draw: st.DrawFn, n: int) -> Spec:
    return {
        "type": "LinearLR",
        "start_factor": draw(finite(0.001, 1.0)),
        "end_factor": draw(st.one_of(st.just(0.0), st.just(1.0), finite(0.0, 1.0))),
        "total_iters": draw(st.integers(1, 12_000)),
    }


def exponential_lr(draw: st.DrawFn, n: int) -> Spec:
    return {"type": "ExponentialLR", "gamma": draw(st.one_of(finite(0.999, 1.0), finite(0.5, 1.0)))}


def polynomial_lr(draw: st.DrawFn, n: int) -> Spec:
    return {
        "type": "PolynomialLR",
        "total_iters": draw(st.integers(1, 12_000)),
        "power": draw(st.one_of(st.just(1.0), finite(0.0, 5.0))),
    }


def cosine_annealing_lr(draw: st.DrawFn, n: int, *, chainable: bool = False) -> Spec:
    spec: Spec = {"type": "CosineAnnealingLR", "T_max": draw(st.integers(1, 12_000))}
    if not chainable and draw(st.booleans()):
        spec["eta_min"] = per_group(draw, n, finite(0.0, 1e-4))
    return spec


def cosine_annealing_warm_restarts(draw: st.DrawFn, n: int) -> Spec:
    spec: Spec = {
        "type": "CosineAnnealingWarmRestarts",
        "T_0": draw(st.integers(1, 3000)),
        "T_mult": draw(st.integers(1, 4)),
    }
    if draw(st.booleans()):
        spec["eta_min"] = per_group(draw, n, finite(0.0, 1e-4))
    return spec


def cyclic_lr(draw: st.DrawFn, n: int) -> Spec:
    spec: Spec = {
        "type": "CyclicLR",
        "base_lr": per_group(draw, n, finite(1e-5, 1e-2)),
        "max_lr": per_group(draw, n, finite(1e-2, 1.0)),
        "mode": draw(st.sampled_from(["triangular", "triangular2", "exp_range"])),
        "cycle_momentum": draw(st.booleans()),
    }
    # triangular2 past 1024 cycles: torch's 2.0 ** (cycle - 1) raises OverflowError (a trap test covers it)
    spec["step_size_up"] = draw(st.integers(10 if spec["mode"] == "triangular2" else 1, 3000))
    if draw(st.booleans()):
        spec["step_size_down"] = draw(st.integers(0, 3000))
    if spec["mode"] == "exp_range":
        spec["gamma"] = draw(finite(0.999, 1.0))
    if spec["cycle_momentum"]:
        spec["base_momentum"] = per_group(draw, n, finite(0.5, 0.85))
        spec["max_momentum"] = per_group(draw, n, finite(0.85, 0.99))
    return spec


def one_cycle_lr(draw: st.DrawFn, n: int) -> Spec:
    spec: Spec = {
        "type": "OneCycleLR",
        "max_lr": per_group(draw, n, finite(1e-3, 1.0)),
        "pct_start": draw(st.one_of(st.sampled_from([0.0, 0.3, 0.5, 1.0]), finite(0.0, 1.0))),
        "anneal_strategy": draw(st.sampled_from(["cos", "linear"])),
        "three_phase": draw(st.booleans()),
        "cycle_momentum": draw(st.booleans()),
        "div_factor": draw(finite(1.0, 100.0)),
        "final_div_factor": draw(finite(1.0, 1e5)),
    }
    if draw(st.booleans()):
        spec["total_steps"] = draw(st.integers(CURVE_STEPS, CURVE_STEPS + 2000))
        total = spec["total_steps"]
    else:
        spec["epochs"] = draw(st.integers(10, 20))
        spec["steps_per_epoch"] = draw(st.integers(1000, 1100))
        total = spec["epochs"] * spec["steps_per_epoch"]
    if float(spec["pct_start"] * total) == 1.0:  # torch divides 0 by 0 there; the spec refuses it
        spec["pct_start"] = 0.3
    if spec["cycle_momentum"]:
        spec["base_momentum"] = per_group(draw, n, finite(0.5, 0.85))
        spec["max_momentum"] = per_group(draw, n, finite(0.85, 0.99))
    return spec


# the children SequentialLR accepts (torch specs without construction side effects)
PHASES: dict[str, SpecFn] = {
    "LambdaLR": lambda_lr,
    "MultiplicativeLR": multiplicative_lr,
    "StepLR": step_lr,
    "MultiStepLR": multistep_lr,
    "ConstantLR": constant_lr,
    "LinearLR": linear_lr,
    "ExponentialLR": exponential_lr,
    "PolynomialLR": polynomial_lr,
    "CosineAnnealingLR": cosine_annealing_lr,
    "CosineAnnealingWarmRestarts": cosine_annealing_warm_restarts,
}
# the children ChainedScheduler accepts
LINKS: dict[str, SpecFn] = {
    "MultiplicativeLR": multiplicative_lr,
    "StepLR": step_lr,
    "MultiStepLR": multistep_lr,
    "ConstantLR": constant_lr,
    "LinearLR": linear_lr,
    "ExponentialLR": exponential_lr,
    "PolynomialLR": polynomial_lr,
    "CosineAnnealingLR": lambda draw, n: cosine_annealing_lr(draw, n, chainable=True),
}


def sequential_lr(draw: st.DrawFn, n: int) -> Spec:
    kinds = draw(st.lists(st.sampled_from(sorted(PHASES)), min_size=2, max_size=3))
    milestones = sorted(
        draw(st.sets(st.integers(1, CURVE_STEPS - 1), min_size=len(kinds) - 1, max_size=len(kinds) - 1))
    )
    return {"type": "SequentialLR", "schedulers": [PHASES[k](draw, n) for k in kinds], "milestones": milestones}


def chained_scheduler(draw: st.DrawFn, n: int) -> Spec:
    kinds = draw(st.lists(st.sampled_from(sorted(LINKS)), min_size=2, max_size=3))
    if kinds.count("CosineAnnealingLR") > 1:  # at most one cosine per chain
        kinds = [k for k in kinds if k != "CosineAnnealingLR"] + ["CosineAnnealingLR"]
    return {"type": "ChainedScheduler", "schedulers": [LINKS[k](draw, n) for k in kinds]}


SCHEDULES: dict[str, SpecFn] = {
    **PHASES,
    "CyclicLR": cyclic_lr,
    "OneCycleLR": one_cycle_lr,
    "SequentialLR": sequential_lr,
    "ChainedScheduler": chained_scheduler,
}


@st.composite
def run_specs(draw: st.DrawFn, kind: str, groups: tuple[int, int] = (1, 3)) -> Spec:
    """A RunSpec mapping: 1-3 param groups with distinct base LRs, and a ``kind`` schedule."""
    n = draw(st.integers(*groups))
    lrs_ = draw(st.lists(lrs(), min_size=n, max_size=n))
    return {
        "param_groups": [{"name": f"g{i}", "lr": lr} for i, lr in enumerate(lrs_)],
        "schedule": SCHEDULES[kind](draw, n),
    }
