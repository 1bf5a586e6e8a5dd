"""torch.optim.lr_scheduler dialect (being filled in)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveInt

from lrserve.schemas.core.schedule import Schedule, Steps, Values
from lrserve.schemas.specs.base import FiniteFloat, ScheduleSpecBase


class StepLR(ScheduleSpecBase):
    """``lr(s) = base_lr * gamma ** (s // step_size)``"""

    type: Literal["StepLR"] = "StepLR"
    step_size: PositiveInt = Field(description="steps between decays")
    gamma: FiniteFloat = Field(0.1, description="multiplicative factor of a decay")

    per_group_fields: ClassVar[tuple[str, ...]] = ()

    def to_schedule(self, base_lrs: np.ndarray[Any, np.dtype[np.float64]]) -> Schedule:
        base = base_lrs.reshape(-1, 1)

        def lr(steps: Steps) -> Values:
            return base * self.gamma ** (steps // self.step_size)[None, :].astype(np.float64)

        return Schedule(lr=lr, num_groups=base.shape[0])


SPECS: tuple[type[ScheduleSpecBase], ...] = (StepLR,)
