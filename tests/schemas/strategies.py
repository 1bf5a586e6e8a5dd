"""Hypothesis strategies for the torch specs, as the JSON mappings a client would send.

``run_specs(kind)`` draws a whole RunSpec mapping (1-3 param groups and a schedule of ``kind``); each
``<kind>(draw, n)`` draws the schedule for ``n`` groups. Per-group parameters are drawn as a scalar or as a
list with one entry per group. Parameter ranges are sized for 10,000-step curves: every drop, restart and
phase boundary of interest lands inside the curve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from pydantic import TypeAdapter

from lrserve.schemas.plan import ChangeRec, Pin, Reduction
from lrserve.schemas.wire import ChangeIn, PlateauChange, ReplaceChange, ScaleChange, SetChange

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


# ---- every dialect, and run histories (tests/schemas/test_window_purity.py) ------------------------------------
# Every schedule type of the union, keyed by its ``type``; SequentialLR here mixes the dialects' phases.


def _keras(name: str) -> SpecFn:
    return lambda draw, n: draw(KERAS_STRATEGIES[name])


def reduce_lr_on_plateau(draw: st.DrawFn, n: int) -> Spec:
    from tests.schemas.strategies_plateau import torch_plateau

    return {"type": "ReduceLROnPlateau", "metric": "loss", **draw(torch_plateau(n))}


def caffe(draw: st.DrawFn, n: int) -> Spec:
    from tests.schemas.strategies_keras import caffe_spec

    return draw(caffe_spec())


def range_test(draw: st.DrawFn, n: int) -> Spec:
    from tests.schemas.strategies_keras import range_test_spec

    return draw(range_test_spec())


def mixed_sequential_lr(draw: st.DrawFn, n: int) -> Spec:
    """SequentialLR over phases of every dialect (torch, Keras/TF1, Caffe, the range test)."""
    phases = {**PHASES, **{k: _keras(k) for k in KERAS_STRATEGIES}, "caffe": caffe, "LRRangeTest": range_test}
    kinds = draw(st.lists(st.sampled_from(sorted(phases)), min_size=2, max_size=3))
    milestones = sorted(
        draw(st.sets(st.integers(1, CURVE_STEPS - 1), min_size=len(kinds) - 1, max_size=len(kinds) - 1))
    )
    return {"type": "SequentialLR", "schedulers": [phases[k](draw, n) for k in kinds], "milestones": milestones}


def _keras_strategies() -> dict[str, st.SearchStrategy[Spec]]:
    from tests.schemas import strategies_keras as sk

    return {
        **sk.KERAS_SPECS,
        "LinearCosineDecay": sk.linear_cosine_decay(),
        "NoisyLinearCosineDecay": sk.linear_cosine_decay(noisy=True),
    }


KERAS_STRATEGIES = _keras_strategies()
ALL_SCHEDULES: dict[str, SpecFn] = {
    **SCHEDULES,
    "SequentialLR": mixed_sequential_lr,
    "ReduceLROnPlateau": reduce_lr_on_plateau,
    **{k: _keras(k) for k in KERAS_STRATEGIES},
    "caffe": caffe,
    "LRRangeTest": range_test,
}


@st.composite
def any_run_specs(draw: st.DrawFn, kind: str, groups: tuple[int, int] = (1, 3)) -> Spec:
    """A RunSpec mapping with a ``kind`` schedule (any dialect) and, sometimes, a plateau block."""
    from tests.schemas.strategies_plateau import keras_plateau, torch_plateau

    n = draw(st.integers(*groups))
    base = draw(st.lists(lrs(), min_size=n, max_size=n))
    run: Spec = {
        "param_groups": [{"name": f"g{i}", "lr": lr} for i, lr in enumerate(base)],
        "schedule": ALL_SCHEDULES[kind](draw, n),
    }
    if kind != "ReduceLROnPlateau" and draw(st.booleans()):
        rules = draw(torch_plateau(n)) if draw(st.booleans()) else {"style": "keras", **draw(keras_plateau())}
        run["plateau"] = {"metric": "loss", **rules}
    return run


HISTORY_STEPS = 40_000  # changes, reductions and pins land below this


@dataclass(frozen=True)
class History:
    """A run's records as ``schemas.plan.Plan`` takes them (seqs increase in the order they were recorded)."""

    run: Spec
    changes: tuple[ChangeRec, ...]
    reductions: tuple[Reduction, ...]
    pins: tuple[Pin, ...]

    def points(self) -> list[int]:
        """Steps where something happens: change, reduction and pin edges, and every int of the specs."""
        out = {0}
        for c in self.changes:
            out.add(c.from_step)
            if isinstance(c.change, SetChange) and c.change.until_step is not None:
                out.add(c.change.until_step)
        out.update(r.from_step for r in self.reductions)
        for p in self.pins:
            out.update((p.start, p.stop + 1))
        specs = [self.run] + [c.change.model_dump(mode="json") for c in self.changes]
        for v in _ints(specs):
            # milestones, boundaries and periods, and torch's cosine restarts at T + 1 + 2Tk
            out.update((v, v + 1, 2 * v + 1, 3 * v + 1, 4 * v + 1))
        for c in self.changes:
            if isinstance(c.change, ReplaceChange) and c.change.origin == "restart":
                out.update(c.from_step + v for v in _ints([c.change.model_dump(mode="json")]))
        return sorted(p for p in out if 0 <= p <= 4 * HISTORY_STEPS)


def _ints(values: list[Any]) -> list[int]:
    found: list[int] = []
    for v in values:
        if isinstance(v, bool):
            continue
        if isinstance(v, int) and 1 <= v <= 4 * HISTORY_STEPS:
            found.append(v)
        elif isinstance(v, dict):
            found.extend(_ints(list(v.values())))
        elif isinstance(v, list):
            found.extend(_ints(v))
    return found


_CHANGE_ADAPTER: TypeAdapter[ReplaceChange | ScaleChange | SetChange | PlateauChange] = TypeAdapter(ChangeIn)
_AT = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def histories(draw: st.DrawFn, kind: str, max_events: int = 6) -> History:
    """A run of a ``kind`` schedule and up to ``max_events`` later records: changes of every op (replace with
    either origin and a schedule of any type, scale, set with or without ``until_step``, plateau), plateau
    reductions, and pins (APPLIED events) made with the plan as of an earlier record."""
    from tests.schemas.strategies_plateau import torch_plateau

    run = draw(any_run_specs(kind))
    n = len(run["param_groups"])
    changes: list[ChangeRec] = []
    reductions: list[Reduction] = []
    pins: list[Pin] = []
    seq = 1  # the created event
    for _ in range(draw(st.integers(0, max_events))):
        seq += draw(st.integers(1, 3))
        op = draw(st.sampled_from(["replace", "scale", "set", "plateau", "reduction", "reduction", "pin"]))
        step = draw(st.integers(1, HISTORY_STEPS))
        if op == "reduction":
            mult = draw(st.lists(st.sampled_from([1.0, 0.5, 0.1, 0.3]), min_size=n, max_size=n))
            reductions.append(Reduction(seq, step - 1, step, tuple(mult)))
            continue
        if op == "pin":
            stop = step + draw(st.integers(0, 500))
            pins.append(Pin(seq, step, stop, draw(st.integers(1, seq - 1))))
            continue
        body: Spec = {"op": op}
        if op == "replace":
            other = draw(st.sampled_from(sorted(k for k in ALL_SCHEDULES if k != "ReduceLROnPlateau")))
            body["schedule"] = ALL_SCHEDULES[other](draw, n)
            body["origin"] = draw(st.sampled_from(["absolute", "restart"]))
        elif op == "scale":
            body["factor"] = draw(st.sampled_from([0.5, 2.0, 0.1]) | finite(0.01, 10.0))
        elif op == "set":
            body["lr"] = per_group(draw, n, lrs())
            if draw(st.booleans()):
                body["until_step"] = step + draw(st.integers(1, 3000))
        else:
            body["plateau"] = None if draw(st.booleans()) else {"metric": "loss", **draw(torch_plateau(n))}
        change = _CHANGE_ADAPTER.validate_python(body)
        changes.append(ChangeRec(seq, step, len(changes) + 1, change, _AT, None, None))
    return History(run, tuple(changes), tuple(reductions), tuple(pins))


@st.composite
def windows(draw: st.DrawFn, points: list[int], most: int = 2500) -> tuple[int, int]:
    """``(start, count)``: anywhere, or straddling one of ``points`` (a restart, milestone, change edge); often
    a single step."""
    count = draw(st.just(1) | st.integers(1, most))
    if draw(st.booleans()):
        return draw(st.integers(0, HISTORY_STEPS)), count
    centre = draw(st.sampled_from(points))
    return max(0, centre - draw(st.integers(0, min(count, 64)))), count
