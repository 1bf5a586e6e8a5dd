"""Caffe dialect: ``SGDSolver::GetLearningRate`` (``src/caffe/solvers/sgd_solver.cpp``) with solver.prototxt names.

A nested tagged union: ``type: caffe``, then ``lr_policy`` picks the class, and each class takes exactly the
fields its formula uses (with ``iter`` the step)::

    fixed      base_lr
    step       base_lr * gamma ^ floor(iter / stepsize)
    exp        base_lr * gamma ^ iter
    inv        base_lr * (1 + gamma * iter) ^ (-power)
    multistep  base_lr * gamma ^ (number of stepvalue <= iter)
    poly       base_lr * (1 - min(iter / max_iter, 1)) ^ power
    sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))

.. code-block:: yaml

    schedule: {type: caffe, lr_policy: multistep, base_lr: 0.01, gamma: 0.1, stepvalue: [30000, 60000]}

``base_lr`` may be a list with one value per param group (Caffe's per-layer ``lr_mult``, folded in); the
groups' own ``lr`` is ignored. ``max_iter`` is optional except for ``poly``: where given it is the run's
length (``Schedule.total_steps``; Caffe trains iterations ``0 .. max_iter - 1``) and the formula simply goes
on past it. Caffe keeps these parameters as float32 and computes in float32/double; we compute in float64
from the decimal values, so Caffe's own numbers differ by the float32 rounding of ``gamma`` amplified by
the exponent (for ``exp``, up to about ``iter * 6e-8`` relative).

Checks beyond Caffe's own (``gamma >= 0``, ``stepsize > 0``): ``gamma <= 1`` where it is raised to a power
(a larger one grows the LR without bound), ``power >= 0``, ``stepvalue`` strictly increasing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, field_validator

from lrserve.schemas.core import decays
from lrserve.schemas.core.schedule import Column, Schedule, ValueFn, column, constant
from lrserve.schemas.specs.base import FiniteFloat, PerGroupLr, PositiveStepCount, ScheduleSpecBase, StepCount

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

_DECAY_GAMMA = Field(ge=0.0, le=1.0, description="factor per decay, in [0, 1]")
_POWER = Field(ge=0.0, description="exponent, >= 0")


class _CaffeSpec(ScheduleSpecBase):
    """Fields every policy shares; subclasses add their own and set ``lr_policy``."""

    uses_base_lr: ClassVar[bool] = False
    per_group_fields: ClassVar[tuple[str, ...]] = ("base_lr",)

    type: Literal["caffe"] = "caffe"
    base_lr: PerGroupLr = Field(description="the base learning rate (scalar, or one per param group)")
    max_iter: PositiveStepCount | None = Field(None, description="iterations of the run (optional; poly needs it)")

    def _values(self, base: Column) -> ValueFn:
        raise NotImplementedError

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        base = column(self.base_lr, base_lrs.shape[0])
        return Schedule(lr=self._values(base), num_groups=base.shape[0], total_steps=self.max_iter)


class CaffeFixed(_CaffeSpec):
    """``fixed``: ``base_lr`` at every iteration."""

    lr_policy: Literal["fixed"] = "fixed"

    def _values(self, base: Column) -> ValueFn:
        return constant(base[:, 0]).lr


class CaffeStep(_CaffeSpec):
    """``step``: ``base_lr * gamma ^ floor(iter / stepsize)``."""

    lr_policy: Literal["step"] = "step"
    gamma: FiniteFloat = _DECAY_GAMMA
    stepsize: PositiveStepCount = Field(description="iterations between decays")

    def _values(self, base: Column) -> ValueFn:
        return decays.exponential(base, period=self.stepsize, rate=self.gamma, staircase=True)


class CaffeExp(_CaffeSpec):
    """``exp``: ``base_lr * gamma ^ iter``."""

    lr_policy: Literal["exp"] = "exp"
    gamma: FiniteFloat = _DECAY_GAMMA

    def _values(self, base: Column) -> ValueFn:
        return decays.exponential(base, period=1, rate=self.gamma)


class CaffeInv(_CaffeSpec):
    """``inv``: ``base_lr * (1 + gamma * iter) ^ (-power)``."""

    lr_policy: Literal["inv"] = "inv"
    gamma: FiniteFloat = Field(ge=0.0, description="growth of the base per iteration, >= 0")
    power: FiniteFloat = _POWER

    def _values(self, base: Column) -> ValueFn:
        return decays.inverse_time(base, period=1, rate=self.gamma, power=self.power)


class CaffeMultiStep(_CaffeSpec):
    """``multistep``: ``base_lr * gamma ^ k`` with ``k`` the number of ``stepvalue`` entries ``<= iter``.

    Caffe advances its ``current_step_`` while ``iter >= stepvalue[current_step_]``, so the LR drops at the
    iteration equal to a stepvalue (unlike Keras' PiecewiseConstantDecay, which drops one step later).
    """

    lr_policy: Literal["multistep"] = "multistep"
    gamma: FiniteFloat = _DECAY_GAMMA
    stepvalue: list[StepCount] = Field(min_length=1, description="strictly increasing iterations")

    @field_validator("stepvalue")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        for i in range(1, len(v)):
            if v[i] <= v[i - 1]:
                raise ValueError(f"must be strictly increasing ({v[i - 1]} then {v[i]})")
        return v

    def _values(self, base: Column) -> ValueFn:
        table = base * np.power(self.gamma, np.arange(len(self.stepvalue) + 1, dtype=np.float64))[None, :]
        return decays.piecewise(table, self.stepvalue, right_closed=False)


class CaffePoly(_CaffeSpec):
    """``poly``: ``base_lr * (1 - iter / max_iter) ^ power``, reaching 0 at ``max_iter``.

    Caffe leaves iterations past ``max_iter`` undefined (its solver stops there; the formula would go
    negative, or NaN for a fractional power). Here the ratio is clamped at 1, so the LR holds 0 (``base_lr``
    when ``power`` is 0) from ``max_iter`` on.
    """

    lr_policy: Literal["poly"] = "poly"
    power: FiniteFloat = _POWER
    max_iter: PositiveStepCount = Field(description="iterations of the run: the LR reaches 0 there")

    def _values(self, base: Column) -> ValueFn:
        return decays.polynomial(base, np.zeros_like(base), period=self.max_iter, power=self.power)


class CaffeSigmoid(_CaffeSpec):
    """``sigmoid``: ``base_lr / (1 + exp(-gamma * (iter - stepsize)))``.

    With Caffe's ``gamma >= 0`` this *rises* from near 0 to ``base_lr``, half-way at ``stepsize``.
    """

    lr_policy: Literal["sigmoid"] = "sigmoid"
    gamma: FiniteFloat = Field(ge=0.0, description="steepness, >= 0")
    stepsize: PositiveStepCount = Field(description="the iteration where the LR is base_lr / 2")

    def _values(self, base: Column) -> ValueFn:
        return decays.sigmoid(base, rate=self.gamma, center=self.stepsize)


POLICIES: tuple[type[_CaffeSpec], ...] = (
    CaffeFixed,
    CaffeStep,
    CaffeExp,
    CaffeInv,
    CaffeMultiStep,
    CaffePoly,
    CaffeSigmoid,
)

if TYPE_CHECKING:
    CaffeSpec = _CaffeSpec
else:
    CaffeSpec = Annotated[Union[POLICIES], Field(discriminator="lr_policy")]  # noqa: UP007

SPECS: tuple[Any, ...] = (CaffeSpec,)
