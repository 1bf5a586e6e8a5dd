"""The LR range test as a schedule type: ``LRRangeTest``.

.. code-block:: yaml

    schedule: {type: LRRangeTest, start_lr: 1.0e-7, end_lr: 10, num_steps: 100, mode: exp}

The LR follows torch-lr-finder's ``ExponentialLR``/``LinearLR``: ``start_lr`` at step 0, ``end_lr`` at step
``num_steps - 1`` (fastai's ``lr_find`` reaches only ``start * (end / start) ** ((n - 1) / n)`` there), held
after. ``metric``, ``smoothing``, ``smooth_f`` and ``diverge_th`` drive the test itself on the server
(``core.lrfinder``): the reported loss is smoothed — ``debiased`` (default, fastai's exponential average with
bias correction) or ``seeded`` (torch-lr-finder's) with weight ``smooth_f`` on the new loss (fastai's ``beta``
is ``1 - smooth_f``) — and the test stops once the smoothed loss exceeds ``diverge_th`` times the best so far,
or a loss is not finite.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from lrserve.schemas.core import rangetest
from lrserve.schemas.core.schedule import Schedule, column
from lrserve.schemas.specs.base import FiniteFloat, Integer, PerGroupLr, ScheduleSpecBase

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class LRRangeTest(ScheduleSpecBase):
    """``exp``: ``start_lr * (end_lr / start_lr) ** r``; ``linear``: ``start_lr + (end_lr - start_lr) * r``,
    with ``r = min(s, num_steps - 1) / (num_steps - 1)``.

    ``{type: LRRangeTest, start_lr: 1.0e-7, end_lr: 10, num_steps: 100}``
    """

    uses_base_lr: ClassVar[bool] = False
    per_group_fields: ClassVar[tuple[str, ...]] = ("start_lr", "end_lr")

    type: Literal["LRRangeTest"] = "LRRangeTest"
    start_lr: PerGroupLr = Field(1e-7, description="LR of step 0, > 0 (scalar, or one per param group)")
    end_lr: PerGroupLr = Field(10.0, description="LR of step num_steps - 1, > start_lr")
    num_steps: Integer = Field(100, ge=2, le=10_000_000, description="steps of the test, >= 2")
    mode: Literal["exp", "linear"] = Field("exp", description="exponential or linear growth")
    metric: str = Field("loss", min_length=1, max_length=200, description="name of the loss metric the test reads")
    smoothing: Literal["debiased", "seeded"] = Field(
        "debiased", description="debiased: fastai's EMA with bias correction; seeded: torch-lr-finder's"
    )
    smooth_f: FiniteFloat = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="weight of the new loss in the smoothed loss, in [0, 1); 0: no smoothing "
        "(torch-lr-finder's smooth_f; fastai's beta = 1 - smooth_f)",
    )
    diverge_th: FiniteFloat = Field(
        5.0, gt=1.0, description="stop once the smoothed loss exceeds diverge_th * best (fastai uses 4)"
    )

    @field_validator("start_lr")
    @classmethod
    def _positive(cls, v: float | list[float]) -> float | list[float]:
        if np.any(np.asarray(v) <= 0):
            raise ValueError("must be > 0 (the range is swept from it)")
        return v

    @field_validator("end_lr")
    @classmethod
    def _above_start(cls, v: float | list[float], info: ValidationInfo) -> float | list[float]:
        start = info.data.get("start_lr")
        if start is None:
            return v
        lo, hi = np.asarray(start), np.asarray(v)
        comparable = lo.shape == hi.shape or lo.ndim == 0 or hi.ndim == 0  # else RunSpec reports the lengths
        if comparable and np.any(hi <= lo):
            raise ValueError("must be greater than start_lr")
        return v

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        groups = base_lrs.shape[0]
        lr = rangetest.lr_range(
            column(self.start_lr, groups), column(self.end_lr, groups), num_steps=self.num_steps, mode=self.mode
        )
        return Schedule(lr=lr, num_groups=groups, total_steps=self.num_steps)


SPECS: tuple[type[ScheduleSpecBase], ...] = (LRRangeTest,)
