"""torch.optim.lr_scheduler dialect: one spec per scheduler, torch's class, parameter names and defaults.

The value at step ``s`` is ``get_last_lr()`` after ``s`` calls of ``scheduler.step()`` on a freshly built torch
scheduler (torch's chainable path, what training loops get), for every param group. ``type`` is the class name.

.. code-block:: yaml

    schedule: {type: CosineAnnealingLR, T_max: 10000, eta_min: 1.0e-5}
    schedule: {type: OneCycleLR, max_lr: [0.01, 0.1], total_steps: 10000, anneal_strategy: linear}
    schedule: {type: LambdaLR, lr_lambda: "0.95 ** (step // 100)"}

Differences from torch, all deliberate:

* Per-group values: ``eta_min`` (CosineAnnealingLR, CosineAnnealingWarmRestarts) takes a per-group list as
  well as a scalar (torch: scalar only); CyclicLR/OneCycleLR LRs and momenta take both, as in torch.
* ``lr_lambda`` is an expression of ``step`` (``lrserve.schemas.core.expression``), or one per group.
* CyclicLR: ``scale_fn`` (a Python callable) is not supported; ``scale_mode`` is accepted and, as in torch
  without a ``scale_fn``, ignored.
* OneCycleLR never raises past its end: it holds the last value of the cycle (see ``core.cyclic.one_cycle``).
* CyclicLR ``triangular2`` past cycle 1024: torch raises OverflowError (``2.0 ** 1024``); we give ``base_lr``.
* Rules torch does not check but fails on later (a ZeroDivisionError mid-run, or a negative LR) are refused up
  front: ``step_size >= 1``, ``T_max >= 1``, ConstantLR ``factor > 0``, ``total_iters >= 1`` (torch's 0 never
  restores/ramps), ``power >= 0``, ``gamma >= 0`` (MultiStepLR) or in ``[0, 1]`` (StepLR, ExponentialLR,
  CyclicLR: a factor above 1 applied without end grows the LR to inf, and CyclicLR's amplitude to NaN),
  OneCycleLR ``div_factor > 0`` and
  ``pct_start * total_steps != 1``, milestones strictly increasing and ``>= 0``.
* MultiplicativeLR has no closed form: step ``s`` multiplies out every factor before it, and steps past
  ``core.combinators.MAX_SCAN_STEP`` (1e8) are refused rather than computed for minutes.

Kept from torch, on purpose: CosineAnnealingLR's recursion past ``T_max`` (periodic, with torch's rounding),
LinearLR with ``end_factor: 0`` holding torch's ~1e-17 residue rather than 0, MultiStepLR dropping *at* the
milestone step.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

from lrserve.schemas.core import cyclic, primitives
from lrserve.schemas.core.combinators import Continuation, continued
from lrserve.schemas.core.expression import check_expression, compile_expression
from lrserve.schemas.core.primitives import ExpressionFn, Link
from lrserve.schemas.core.schedule import Column, Schedule, column
from lrserve.schemas.limits import require_total_in_domain
from lrserve.schemas.specs.base import (
    FiniteFloat,
    PerGroupLr,
    PositiveStepCount,
    ScheduleSpecBase,
    StepCount,
    not_bool_per_group,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _momentum_values(v: float | list[float]) -> float | list[float]:
    values = v if isinstance(v, list) else [v]
    if isinstance(v, list) and not v:
        raise ValueError("a per-group list must not be empty")
    for x in values:
        if not math.isfinite(x) or x < 0:
            raise ValueError("a momentum must be a finite number >= 0")
    return v


PerGroupMomentum = Annotated[float | list[float], BeforeValidator(not_bool_per_group), AfterValidator(_momentum_values)]
Gamma = Annotated[FiniteFloat, Field(ge=0.0)]
# a factor applied without end (every step_size steps, every step): above 1 the LR grows to inf
DecayGamma = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]


class TorchSpec(ScheduleSpecBase):
    """Base of the torch specs: ``to_phase`` is what SequentialLR runs after a milestone."""

    def to_phase(self, base_lrs: FloatArray) -> Schedule | Continuation:
        """The schedule SequentialLR enters at a milestone (torch's ``_update_lr(0)``, then ``step()``s).

        For every closed-form scheduler that is the fresh schedule, restarted from the base LR.
        """
        return self.to_schedule(base_lrs)


class ChainableSpec(TorchSpec):
    """A scheduler whose ``step()`` multiplies the current LR by a ratio of the step (ChainedScheduler-able)."""

    def to_link(self, base_lrs: FloatArray) -> Link:
        raise NotImplementedError

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        return primitives.scaled(_col(base_lrs), self.to_link(base_lrs))


def _col(base_lrs: FloatArray) -> Column:
    return np.asarray(base_lrs, dtype=np.float64).reshape(-1, 1)


def _per_group(value: float | list[float], base_lrs: FloatArray) -> Column:
    return column(value, int(np.asarray(base_lrs).shape[0]))


def _check_lambdas(v: str | list[str], probe: tuple[int, ...]) -> str | list[str]:
    if isinstance(v, list):
        if not v:
            raise ValueError("give one expression, or one per param group")
        for i, text in enumerate(v):
            try:
                check_expression(text, probe)
            except ValueError as exc:
                raise ValueError(f"entry {i}: {exc}") from None
        return v
    return check_expression(v, probe)


def _compile(v: str | list[str]) -> list[ExpressionFn]:
    texts = v if isinstance(v, list) else [v]
    return [compile_expression(t) for t in texts]


_LAMBDA = Field(
    description="an expression of `step` giving the factor (e.g. '0.95 ** step'), or one per param group",
    min_length=1,
)


class LambdaLR(TorchSpec):
    """``lr(s) = base_lr * f(s)``

    ``{type: LambdaLR, lr_lambda: "min(1, (step + 1) / 500)"}`` (a linear warm-up over 500 steps)
    """

    type: Literal["LambdaLR"] = "LambdaLR"
    lr_lambda: str | list[str] = _LAMBDA

    per_group_fields: ClassVar[tuple[str, ...]] = ("lr_lambda",)

    @field_validator("lr_lambda")
    @classmethod
    def _expressions(cls, v: str | list[str]) -> str | list[str]:
        return _check_lambdas(v, (0,))  # torch calls the lambda at step 0 when the scheduler is built

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        return primitives.lambda_schedule(_col(base_lrs), _compile(self.lr_lambda))


class MultiplicativeLR(ChainableSpec):
    """``lr(s) = base_lr * f(1) * f(2) * ... * f(s)`` (``lr(0) = base_lr``)

    ``{type: MultiplicativeLR, lr_lambda: "0.999"}``. No closed form: evaluating step ``s`` multiplies out
    every factor up to ``s``. Entered by SequentialLR at a milestone ``m``, torch multiplies the LR of step
    ``m - 1`` by ``f(0)``, ``f(1)``, ... (it does not restart from the base LR): so do we.
    """

    type: Literal["MultiplicativeLR"] = "MultiplicativeLR"
    lr_lambda: str | list[str] = _LAMBDA

    per_group_fields: ClassVar[tuple[str, ...]] = ("lr_lambda",)

    @field_validator("lr_lambda")
    @classmethod
    def _expressions(cls, v: str | list[str]) -> str | list[str]:
        return _check_lambdas(v, (1,))  # torch first calls it at step 1

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.multiplicative(_compile(self.lr_lambda), _col(base_lrs).shape[0])

    def to_phase(self, base_lrs: FloatArray) -> Schedule | Continuation:
        link = primitives.multiplicative(_compile(self.lr_lambda), _col(base_lrs).shape[0], first=True)
        return continued(link)


class StepLR(ChainableSpec):
    """``lr(s) = base_lr * gamma ** (s // step_size)``

    ``{type: StepLR, step_size: 30, gamma: 0.1}``
    """

    type: Literal["StepLR"] = "StepLR"
    step_size: PositiveStepCount = Field(description="steps between decays (>= 1)")
    gamma: DecayGamma = Field(0.1, description="multiplicative factor of a decay, in [0, 1]")

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.step_decay(self.step_size, self.gamma)


class MultiStepLR(ChainableSpec):
    """``lr(s) = base_lr * gamma ** (number of milestones <= s)``: the drop applies *at* step ``m``.

    ``{type: MultiStepLR, milestones: [30, 80], gamma: 0.1}``; past the last milestone the LR holds.
    """

    type: Literal["MultiStepLR"] = "MultiStepLR"
    milestones: list[StepCount] = Field(description="steps at which the LR drops, strictly increasing")
    gamma: Gamma = Field(0.1, description="multiplicative factor of a drop (>= 0)")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        for a, b in pairwise(v):
            if b <= a:
                raise ValueError(f"milestones must be strictly increasing ({a} then {b})")
        return v

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.multistep(self.milestones, self.gamma)


class ConstantLR(ChainableSpec):
    """``lr(s) = base_lr * factor`` for ``s < total_iters``, ``base_lr`` from then on.

    ``{type: ConstantLR, factor: 0.5, total_iters: 4}``
    """

    type: Literal["ConstantLR"] = "ConstantLR"
    factor: FiniteFloat = Field(1.0 / 3, description="factor until total_iters, in (0, 1]")
    total_iters: PositiveStepCount = Field(5, description="steps the factor applies (>= 1)")

    @field_validator("factor")
    @classmethod
    def _factor(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError("factor must be in (0, 1] (torch allows 0 but then divides by it at total_iters)")
        return v

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.constant_factor(self.factor, self.total_iters)


class LinearLR(ChainableSpec):
    """``lr(s) = base_lr * (start + (end - start) * min(s, total_iters) / total_iters)``

    ``{type: LinearLR, start_factor: 0.01, total_iters: 500}`` (the usual warm-up); then it holds.
    """

    type: Literal["LinearLR"] = "LinearLR"
    start_factor: FiniteFloat = Field(1.0 / 3, description="factor at step 0, in (0, 1]")
    end_factor: FiniteFloat = Field(1.0, description="factor from total_iters on, in [0, 1]")
    total_iters: PositiveStepCount = Field(5, description="steps of the linear ramp (>= 1)")

    @field_validator("start_factor")
    @classmethod
    def _start(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError("start_factor must be greater than 0 and at most 1")
        return v

    @field_validator("end_factor")
    @classmethod
    def _end(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("end_factor must be between 0 and 1")
        return v

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.linear_factor(self.start_factor, self.end_factor, self.total_iters)


class ExponentialLR(ChainableSpec):
    """``lr(s) = base_lr * gamma ** s``

    ``{type: ExponentialLR, gamma: 0.999}``
    """

    type: Literal["ExponentialLR"] = "ExponentialLR"
    gamma: DecayGamma = Field(description="multiplicative factor per step, in [0, 1]")

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.exponential(self.gamma)


class PolynomialLR(ChainableSpec):
    """``lr(s) = base_lr * (1 - min(s, total_iters) / total_iters) ** power``

    ``{type: PolynomialLR, total_iters: 10000, power: 2.0}``; 0 from ``total_iters`` on (power > 0).
    """

    type: Literal["PolynomialLR"] = "PolynomialLR"
    total_iters: PositiveStepCount = Field(5, description="steps until the LR reaches 0 (>= 1)")
    power: FiniteFloat = Field(1.0, ge=0.0, description="power of the polynomial (>= 0)")

    def to_link(self, base_lrs: FloatArray) -> Link:
        return primitives.polynomial(self.total_iters, self.power)


class CosineAnnealingLR(ChainableSpec):
    """``lr(s) = eta_min + (base_lr - eta_min) * (1 + cos(pi * s / T_max)) / 2`` for ``s <= T_max``.

    ``{type: CosineAnnealingLR, T_max: 10000, eta_min: 1.0e-5}``. Past ``T_max`` torch's recursion goes on
    periodically (period ``2 * T_max``, rising back towards ``base_lr``), and so do we; see
    ``core.primitives.cosine_annealing`` for the exact form. In a ChainedScheduler only ``eta_min: 0`` is
    a pure multiplier (torch's step adds ``eta_min`` terms otherwise).
    """

    type: Literal["CosineAnnealingLR"] = "CosineAnnealingLR"
    T_max: PositiveStepCount = Field(description="steps of the half cosine (>= 1)")
    eta_min: PerGroupLr = Field(0.0, description="minimum LR, scalar or one per param group")

    per_group_fields: ClassVar[tuple[str, ...]] = ("eta_min",)

    def is_chainable(self) -> bool:
        values = self.eta_min if isinstance(self.eta_min, list) else [self.eta_min]
        return all(v == 0.0 for v in values)

    def to_link(self, base_lrs: FloatArray) -> Link:
        if not self.is_chainable():
            raise ValueError("CosineAnnealingLR is a pure multiplier only with eta_min 0")
        return primitives.cosine_link(_col(base_lrs), self.T_max)

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        return primitives.cosine_annealing(_col(base_lrs), self.T_max, _per_group(self.eta_min, base_lrs))


class CosineAnnealingWarmRestarts(TorchSpec):
    """Cosine from ``base_lr`` to ``eta_min`` over ``T_0`` steps, then again over ``T_0 * T_mult``, ...

    ``{type: CosineAnnealingWarmRestarts, T_0: 1000, T_mult: 2, eta_min: 1.0e-6}``; each restart jumps back to
    ``base_lr``. Matches torch stepped one step at a time (integer restart steps).
    """

    type: Literal["CosineAnnealingWarmRestarts"] = "CosineAnnealingWarmRestarts"
    T_0: PositiveStepCount = Field(description="steps until the first restart (>= 1)")
    T_mult: PositiveStepCount = Field(1, description="factor by which each period grows (integer >= 1)")
    eta_min: PerGroupLr = Field(0.0, description="minimum LR, scalar or one per param group")

    per_group_fields: ClassVar[tuple[str, ...]] = ("eta_min",)

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        return cyclic.warm_restarts(_col(base_lrs), self.T_0, self.T_mult, _per_group(self.eta_min, base_lrs))


class CyclicLR(TorchSpec):
    """The LR cycles between ``base_lr`` and ``max_lr`` (triangle: ``step_size_up`` up, ``step_size_down`` down).

    ``{type: CyclicLR, base_lr: 0.001, max_lr: 0.1, step_size_up: 2000, mode: triangular2}``. Ignores the
    param groups' ``lr`` (torch overwrites it with ``base_lr``). With ``cycle_momentum`` the momentum (SGD's
    ``momentum``, Adam's ``betas[0]``) cycles inversely between ``max_momentum`` and ``base_momentum``.
    Never ends.
    """

    type: Literal["CyclicLR"] = "CyclicLR"
    base_lr: PerGroupLr = Field(description="lower LR of the cycle, scalar or one per param group")
    max_lr: PerGroupLr = Field(description="upper LR of the cycle, scalar or one per param group")
    step_size_up: PositiveStepCount = Field(2000, description="steps of the rising half (>= 1)")
    step_size_down: StepCount | None = Field(None, description="steps of the falling half (default: up)")

    mode: Literal["triangular", "triangular2", "exp_range"] = Field("triangular", description="amplitude policy")
    gamma: DecayGamma = Field(1.0, description="exp_range: the amplitude is scaled by gamma ** step, in [0, 1]")
    scale_fn: None = Field(None, description="not supported (a Python callable): use mode")
    scale_mode: Literal["cycle", "iterations"] = Field(
        "cycle", description="accepted for compatibility; torch ignores it unless scale_fn is given"
    )
    cycle_momentum: bool = Field(True, description="cycle the momentum inversely to the LR")
    base_momentum: PerGroupMomentum = Field(0.8, description="momentum at the LR's peak")
    max_momentum: PerGroupMomentum = Field(0.9, description="momentum at the LR's trough")

    uses_base_lr: ClassVar[bool] = False
    per_group_fields: ClassVar[tuple[str, ...]] = ("base_lr", "max_lr", "base_momentum", "max_momentum")

    @field_validator("step_size_down")
    @classmethod
    def _cycle_in_domain(cls, v: int | None, info: ValidationInfo) -> int | None:
        up = info.data.get("step_size_up")
        if v is not None and up is not None:
            require_total_in_domain(up + v, "step_size_up + step_size_down")
        return v

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        up = self.step_size_up
        down = up if self.step_size_down is None else self.step_size_down
        momentum = None
        if self.cycle_momentum:
            momentum = (_per_group(self.base_momentum, base_lrs), _per_group(self.max_momentum, base_lrs))
        return cyclic.cyclic(
            _per_group(self.base_lr, base_lrs),
            _per_group(self.max_lr, base_lrs),
            up,
            down,
            self.mode,
            self.gamma,
            momentum,
        )


class OneCycleLR(TorchSpec):
    """1cycle: up from ``max_lr / div_factor`` to ``max_lr``, then down to ``max_lr / div_factor / final_div_factor``.

    ``{type: OneCycleLR, max_lr: 0.1, total_steps: 10000}`` (or ``epochs`` and ``steps_per_epoch``).
    Ignores the param groups' ``lr`` (torch overwrites ``initial_lr`` with ``max_lr / div_factor``).

    Past the end: torch's ``step()`` raises after ``total_steps`` steps, and its value *at* ``total_steps``
    extrapolates the anneal past its end (below the final LR; negative with ``anneal_strategy: linear``).
    We never raise: from step ``total_steps`` on we hold the value of step ``total_steps - 1``, the end of the
    cycle (``max_lr / div_factor / final_div_factor``; momentum ``max_momentum``), which is what a run
    that goes on longer than planned should get. ``Schedule.total_steps`` is ``total_steps``.
    """

    type: Literal["OneCycleLR"] = "OneCycleLR"
    max_lr: PerGroupLr = Field(description="peak LR, scalar or one per param group")
    total_steps: PositiveStepCount | None = Field(None, description="steps of the cycle (or epochs * steps_per_epoch)")
    epochs: PositiveStepCount | None = Field(None, description="with steps_per_epoch, when total_steps is not given")
    steps_per_epoch: PositiveStepCount | None = Field(
        None, validate_default=True, description="with epochs, when total_steps is not given"
    )
    pct_start: FiniteFloat = Field(
        0.3, validate_default=True, description="fraction of the cycle spent rising, in [0, 1]"
    )
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="cos or linear annealing")
    cycle_momentum: bool = Field(True, description="cycle the momentum inversely to the LR")
    base_momentum: PerGroupMomentum = Field(0.85, description="momentum at the LR's peak")
    max_momentum: PerGroupMomentum = Field(0.95, description="momentum at the start and the end")
    div_factor: FiniteFloat = Field(25.0, gt=0.0, description="initial LR = max_lr / div_factor")
    final_div_factor: FiniteFloat = Field(1e4, gt=0.0, description="final LR = initial LR / final_div_factor")
    three_phase: bool = Field(False, description="back down to the initial LR before annihilating")

    uses_base_lr: ClassVar[bool] = False
    per_group_fields: ClassVar[tuple[str, ...]] = ("max_lr", "base_momentum", "max_momentum")

    @field_validator("steps_per_epoch")
    @classmethod
    def _length_given(cls, v: int | None, info: ValidationInfo) -> int | None:
        if "total_steps" not in info.data or "epochs" not in info.data:
            return v  # one of them failed its own validation: reported there
        if info.data["total_steps"] is None and (info.data["epochs"] is None or v is None):
            raise ValueError("give total_steps, or both epochs and steps_per_epoch")
        epochs = info.data["epochs"]
        if info.data["total_steps"] is None and epochs is not None and v is not None:
            require_total_in_domain(epochs * v, "epochs * steps_per_epoch")
        return v

    @field_validator("pct_start")
    @classmethod
    def _pct(cls, v: float, info: ValidationInfo) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError("pct_start must be between 0 and 1")
        total = _total_steps(info.data)
        if total is not None and float(v * total) == 1.0:
            raise ValueError(f"pct_start * total_steps is exactly 1 ({v} * {total}): torch divides 0 by 0 at step 0")
        return v

    @property
    def cycle_steps(self) -> int:
        total = _total_steps(self.__dict__)
        assert total is not None  # the validators guarantee it
        return total

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        momentum = None
        if self.cycle_momentum:
            momentum = (_per_group(self.base_momentum, base_lrs), _per_group(self.max_momentum, base_lrs))
        return cyclic.one_cycle(
            _per_group(self.max_lr, base_lrs),
            self.cycle_steps,
            self.pct_start,
            self.anneal_strategy,
            self.div_factor,
            self.final_div_factor,
            self.three_phase,
            momentum,
        )


def _total_steps(data: dict[str, Any]) -> int | None:
    if data.get("total_steps") is not None:
        return int(data["total_steps"])
    if data.get("epochs") is not None and data.get("steps_per_epoch") is not None:
        return int(data["epochs"]) * int(data["steps_per_epoch"])
    return None


SPECS: tuple[type[ScheduleSpecBase], ...] = (
    LambdaLR,
    MultiplicativeLR,
    StepLR,
    MultiStepLR,
    ConstantLR,
    LinearLR,
    ExponentialLR,
    PolynomialLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    OneCycleLR,
)
