"""Keras 3 dialect (``keras.optimizers.schedules``) and TF1's linear cosine decays.

Class names are the ``type``; parameter names and defaults are Keras'. These schedules name their own initial
LR (``initial_learning_rate``), so the param groups' ``lr`` is ignored (``uses_base_lr = False``); every group
gets the same value unless an LR-valued parameter is given as a list with one entry per group. Keras' ``name``
is accepted (so a ``get_config()`` dict pastes in as it is) and ignored.

.. code-block:: yaml

    schedule: {type: CosineDecay, initial_learning_rate: 0.0, decay_steps: 9000,
               warmup_target: 0.1, warmup_steps: 1000}

Past its end a schedule holds its end value (PolynomialDecay without ``cycle``, CosineDecay, the linear cosine
decays), as Keras' ``min(step, decay_steps)`` does; the others never end. Rules Keras does not check but that
keep every value a finite, non-negative LR at any step: rates and ``alpha`` in [0, 1], ``t_mul >= 1``,
``m_mul`` in [0, 1], and ``warmup_steps`` only with a ``warmup_target`` (Keras silently ignores it otherwise).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from lrserve.schemas.core import decays
from lrserve.schemas.core.schedule import Schedule, ValueFn, column
from lrserve.schemas.limits import MAX_STEP, require_total_in_domain
from lrserve.schemas.specs.base import (
    FiniteFloat,
    Integer,
    PerGroupLr,
    PositiveStepCount,
    ScheduleSpecBase,
    StepCount,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

_NAME = Field(None, description="Keras' op name: accepted and ignored")
_INIT = Field(description="the initial learning rate (scalar, or one per param group)")


UnitFloat = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]


class _KerasSpec(ScheduleSpecBase):
    uses_base_lr: ClassVar[bool] = False
    per_group_fields: ClassVar[tuple[str, ...]] = ("initial_learning_rate",)

    name: str | None = _NAME

    def _schedule(self, base_lrs: FloatArray, lr: ValueFn, total_steps: int | None = None) -> Schedule:
        return Schedule(lr=lr, num_groups=int(base_lrs.shape[0]), total_steps=total_steps)


class ExponentialDecay(_KerasSpec):
    """``lr(s) = initial_learning_rate * decay_rate ** (s / decay_steps)``; ``staircase``: ``s // decay_steps``.

    ``{type: ExponentialDecay, initial_learning_rate: 0.1, decay_steps: 1000, decay_rate: 0.96}``
    """

    type: Literal["ExponentialDecay"] = "ExponentialDecay"
    initial_learning_rate: PerGroupLr = _INIT
    decay_steps: PositiveStepCount = Field(description="steps over which the LR is multiplied by decay_rate")
    decay_rate: UnitFloat = Field(description="factor per decay_steps, in [0, 1]")
    staircase: bool = Field(False, description="decay at whole multiples of decay_steps only")

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        init = column(self.initial_learning_rate, base_lrs.shape[0])
        lr = decays.exponential(init, period=self.decay_steps, rate=self.decay_rate, staircase=self.staircase)
        return self._schedule(base_lrs, lr)


class PiecewiseConstantDecay(_KerasSpec):
    """``values[0]`` while ``s <= boundaries[0]``, ``values[i]`` while ``boundaries[i-1] < s <= boundaries[i]``,
    ``values[-1]`` once ``s > boundaries[-1]``: the value changes at ``boundary + 1``, not at the boundary.

    ``{type: PiecewiseConstantDecay, boundaries: [100000, 110000], values: [1.0, 0.5, 0.1]}``: 1.0 for steps
    0..100000, 0.5 for 100001..110000, 0.1 after. Each value may be a per-group list.
    """

    type: Literal["PiecewiseConstantDecay"] = "PiecewiseConstantDecay"
    per_group_fields: ClassVar[tuple[str, ...]] = ()  # values: checked entry by entry below
    boundaries: list[StepCount] = Field(min_length=1, description="strictly increasing steps")
    values: list[PerGroupLr] = Field(description="one more value than boundaries; each a scalar or per group")

    @field_validator("boundaries")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        for a, b in itertools.pairwise(v):
            if b <= a:
                raise ValueError(f"must be strictly increasing ({a} then {b})")
        return v

    @field_validator("values")
    @classmethod
    def _one_more(cls, v: list[float | list[float]], info: ValidationInfo) -> list[float | list[float]]:
        bounds = info.data.get("boundaries")
        if bounds is not None and len(v) != len(bounds) + 1:
            raise ValueError(f"needs one more entry than boundaries: {len(bounds) + 1}, got {len(v)}")
        return v

    def group_count_errors(
        self, num_groups: int, loc: tuple[str | int, ...]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        return [
            ((*loc, "values", i), f"has {len(v)} entries but the run has {num_groups} param groups")
            for i, v in enumerate(self.values)
            if isinstance(v, list) and len(v) != num_groups
        ]

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        groups = base_lrs.shape[0]
        table = np.hstack([column(v, groups) for v in self.values])
        lr = decays.piecewise(table, self.boundaries, right_closed=True)
        return self._schedule(base_lrs, lr, total_steps=self.boundaries[-1] + 2)


class PolynomialDecay(_KerasSpec):
    """``(initial_learning_rate - end_learning_rate) * (1 - min(s, decay_steps) / decay_steps) ** power
    + end_learning_rate``; held at ``end_learning_rate`` from ``decay_steps`` on.

    ``cycle``: ``decay_steps`` is replaced by its first multiple ``>= s`` (``max(1, ceil(s / decay_steps))``
    times it), so the decay restarts after every multiple. ``end_learning_rate`` may exceed the initial LR
    (a polynomial warm-up).
    """

    type: Literal["PolynomialDecay"] = "PolynomialDecay"
    per_group_fields: ClassVar[tuple[str, ...]] = ("initial_learning_rate", "end_learning_rate")
    initial_learning_rate: PerGroupLr = _INIT
    decay_steps: PositiveStepCount = Field(description="steps to go from the initial to the end LR")
    end_learning_rate: PerGroupLr = Field(0.0001, description="the LR reached at decay_steps")
    power: FiniteFloat = Field(1.0, ge=0.0, description="exponent of the polynomial, >= 0")
    cycle: bool = Field(False, description="restart the decay after every multiple of decay_steps")

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        groups = base_lrs.shape[0]
        lr = decays.polynomial(
            column(self.initial_learning_rate, groups),
            column(self.end_learning_rate, groups),
            period=self.decay_steps,
            power=self.power,
            cycle=self.cycle,
        )
        return self._schedule(base_lrs, lr, None if self.cycle else self.decay_steps + 1)


class InverseTimeDecay(_KerasSpec):
    """``initial_learning_rate / (1 + decay_rate * s / decay_steps)``; ``staircase``: ``s // decay_steps``.

    ``{type: InverseTimeDecay, initial_learning_rate: 0.1, decay_steps: 1, decay_rate: 0.5}``
    """

    type: Literal["InverseTimeDecay"] = "InverseTimeDecay"
    initial_learning_rate: PerGroupLr = _INIT
    decay_steps: PositiveStepCount = Field(description="steps per unit of decay")
    decay_rate: FiniteFloat = Field(ge=0.0, description="growth of the denominator per decay_steps, >= 0")
    staircase: bool = Field(False, description="decay at whole multiples of decay_steps only")

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        init = column(self.initial_learning_rate, base_lrs.shape[0])
        lr = decays.inverse_time(init, period=self.decay_steps, rate=self.decay_rate, staircase=self.staircase)
        return self._schedule(base_lrs, lr)


class CosineDecay(_KerasSpec):
    """Optional linear warm-up, then a half cosine to ``alpha`` times its start, held after.

    Without ``warmup_target``: ``init * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s, D) / D)) + alpha)`` with
    ``D = decay_steps``. With ``warmup_target`` (W = ``warmup_steps``): ``init + (warmup_target - init) * s / W``
    for ``s < W``, then the cosine from ``warmup_target`` over ``s - W``, held from ``W + D`` on.

    ``{type: CosineDecay, initial_learning_rate: 0.0, decay_steps: 1000, warmup_target: 0.1,
    warmup_steps: 100}``
    """

    type: Literal["CosineDecay"] = "CosineDecay"
    per_group_fields: ClassVar[tuple[str, ...]] = ("initial_learning_rate", "warmup_target")
    initial_learning_rate: PerGroupLr = _INIT
    decay_steps: PositiveStepCount = Field(description="steps of the cosine decay")
    alpha: UnitFloat = Field(0.0, description="final LR as a fraction of the decay's start, in [0, 1]")
    warmup_target: PerGroupLr | None = Field(None, description="LR reached by the warm-up; none: no warm-up")
    warmup_steps: StepCount = Field(0, description="steps of the linear warm-up (needs warmup_target)")

    @field_validator("warmup_steps")
    @classmethod
    def _needs_target(cls, v: int, info: ValidationInfo) -> int:
        # A warmup_target that failed validation is absent from info.data: that error is reported already.
        if v > 0 and "warmup_target" in info.data and info.data["warmup_target"] is None:
            raise ValueError("needs a warmup_target: without one Keras skips the warm-up and ignores warmup_steps")
        decay = info.data.get("decay_steps")
        if decay is not None:
            require_total_in_domain(v + decay, "warmup_steps + decay_steps")
        return v

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        groups = base_lrs.shape[0]
        target = None if self.warmup_target is None else column(self.warmup_target, groups)
        lr = decays.cosine(
            column(self.initial_learning_rate, groups),
            period=self.decay_steps,
            alpha=self.alpha,
            warmup_steps=self.warmup_steps,
            warmup_target=target,
        )
        warm = 0 if target is None else self.warmup_steps
        return self._schedule(base_lrs, lr, warm + self.decay_steps + 1)


class CosineDecayRestarts(_KerasSpec):
    """SGDR: cosine periods of ``first_decay_steps * t_mul ** i`` steps, the i-th peaking at ``m_mul ** i``.

    ``init * ((1 - alpha) * m_mul ** i * 0.5 * (1 + cos(pi * f)) + alpha)`` with ``i`` the period a step is
    in and ``f`` the fraction of it done. A restart step always starts its new period (Keras' float
    ``floor(log(..))`` can land one period early exactly there). Never ends.

    ``{type: CosineDecayRestarts, initial_learning_rate: 0.1, first_decay_steps: 1000}``
    """

    type: Literal["CosineDecayRestarts"] = "CosineDecayRestarts"
    initial_learning_rate: PerGroupLr = _INIT
    first_decay_steps: PositiveStepCount = Field(description="steps of the first period")
    # A growth past the step domain makes the second period endless anyway; bounded, steps * t_mul stays finite.
    t_mul: FiniteFloat = Field(2.0, ge=1.0, le=MAX_STEP, description="growth of each period's length, in [1, 2**53]")
    m_mul: UnitFloat = Field(1.0, description="factor of each period's peak, in [0, 1]")
    alpha: UnitFloat = Field(0.0, description="floor of the LR as a fraction of initial_learning_rate, in [0, 1]")

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        init = column(self.initial_learning_rate, base_lrs.shape[0])
        lr = decays.cosine_restarts(
            init, first_period=self.first_decay_steps, t_mul=self.t_mul, m_mul=self.m_mul, alpha=self.alpha
        )
        return self._schedule(base_lrs, lr)


class _LinearCosine(_KerasSpec):
    initial_learning_rate: PerGroupLr = _INIT
    decay_steps: PositiveStepCount = Field(description="steps to decay over")
    num_periods: FiniteFloat = Field(0.5, ge=0.0, description="periods of the cosine part")
    alpha: FiniteFloat = Field(0.0, ge=0.0, description="added to the linear part, >= 0")
    beta: FiniteFloat = Field(0.001, ge=0.0, description="added to the product, >= 0")

    def _noise(self) -> decays.Noise | None:
        return None

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        init = column(self.initial_learning_rate, base_lrs.shape[0])
        lr = decays.linear_cosine(
            init,
            period=self.decay_steps,
            num_periods=self.num_periods,
            alpha=self.alpha,
            beta=self.beta,
            noise=self._noise(),
        )
        return self._schedule(base_lrs, lr, self.decay_steps + 1)


class LinearCosineDecay(_LinearCosine):
    """TF1 ``tf.compat.v1.train.linear_cosine_decay`` (Bello et al., 2017), with ``t = min(s, decay_steps)``::

        linear = (decay_steps - t) / decay_steps
        cosine = 0.5 * (1 + cos(pi * 2 * num_periods * t / decay_steps))
        lr     = initial_learning_rate * ((alpha + linear) * cosine + beta)

    Held from ``decay_steps`` on. ``{type: LinearCosineDecay, initial_learning_rate: 0.1, decay_steps: 1000}``
    """

    type: Literal["LinearCosineDecay"] = "LinearCosineDecay"


class NoisyLinearCosineDecay(_LinearCosine):
    """TF1 ``noisy_linear_cosine_decay``: LinearCosineDecay with ``linear + eps`` in place of ``linear``,
    ``eps ~ N(0, initial_variance / (1 + t) ** variance_decay)``.

    The noise is a pure function of ``(seed, step)``: the same seed gives the same LR at a step whatever other
    steps are asked and in whatever order (TF draws fresh noise at every call). Where the noise would make the
    LR negative it is clamped at 0 (TF returns the negative value). Past ``decay_steps`` the noise keeps the
    variance it had there, as in TF (it vanishes only where the cosine part is 0, e.g. ``num_periods: 0.5``).

    ``{type: NoisyLinearCosineDecay, initial_learning_rate: 0.1, decay_steps: 1000, initial_variance: 0.01,
    seed: 7}``
    """

    type: Literal["NoisyLinearCosineDecay"] = "NoisyLinearCosineDecay"
    initial_variance: FiniteFloat = Field(1.0, ge=0.0, description="variance of the noise at step 0")
    variance_decay: FiniteFloat = Field(0.55, ge=0.0, description="the variance decays as (1 + t) ** -variance_decay")
    seed: Integer = Field(0, ge=0, le=2**63 - 1, description="seed of the noise: same seed, same numbers")

    def _noise(self) -> decays.Noise | None:
        return decays.Noise(self.seed, self.initial_variance, self.variance_decay)


SPECS: tuple[type[ScheduleSpecBase], ...] = (
    ExponentialDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    InverseTimeDecay,
    CosineDecay,
    CosineDecayRestarts,
    LinearCosineDecay,
    NoisyLinearCosineDecay,
)
