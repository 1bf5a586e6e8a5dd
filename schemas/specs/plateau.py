"""The plateau block: ReduceLROnPlateau in torch's dialect (default) or Keras' callback dialect.

torch (``style: torch``)::

    {metric: val_loss, mode: min, factor: 0.1, patience: 10, threshold: 1e-4, threshold_mode: rel,
     cooldown: 0, min_lr: 0, eps: 1e-8}

Keras (``style: keras``) uses the callback's names: ``monitor`` (alias of ``metric``), ``min_delta`` (an
absolute threshold), ``mode: auto|min|max``, and reduces after ``patience`` bad values (torch after
``patience + 1``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, model_validator

from lrserve.schemas.core.schedule import Schedule, constant
from lrserve.schemas.specs.base import FiniteFloat, PerGroupLr, ScheduleSpecBase, StrictModel


class PlateauSpec(StrictModel):
    """ReduceLROnPlateau layered on any schedule: each reduction multiplies the run's scale by ``factor``."""

    per_group_fields: ClassVar[tuple[str, ...]] = ("min_lr",)

    style: Literal["torch", "keras"] = Field("torch", description="whose counting rules apply")
    metric: str = Field(
        "loss",
        alias="monitor",
        min_length=1,
        max_length=200,
        description="name of the metric watched (Keras: monitor); other metrics are recorded, not used",
    )
    mode: Literal["min", "max", "auto"] = Field(
        "min",
        description="min: lower is better; max: higher is better; auto (Keras): max if 'acc' in the name",
    )
    factor: FiniteFloat = Field(0.1, description="multiplier of a reduction, in (0, 1)")
    patience: NonNegativeInt = Field(10, description="bad values tolerated before a reduction")
    threshold: FiniteFloat = Field(1e-4, ge=0, description="torch: improvement needed to count as better")
    threshold_mode: Literal["rel", "abs"] = Field("rel", description="torch: relative or absolute threshold")
    min_delta: FiniteFloat | None = Field(None, ge=0, description="Keras: absolute improvement needed (default 1e-4)")
    cooldown: NonNegativeInt = Field(0, description="values to wait after a reduction before counting again")
    min_lr: PerGroupLr = Field(0.0, description="lower bound of the LR, scalar or one per group")
    eps: FiniteFloat = Field(1e-8, ge=0, description="torch: a reduction smaller than eps is skipped")

    @model_validator(mode="after")
    def _rules(self) -> PlateauSpec:
        if not 0.0 < self.factor < 1.0:
            raise ValueError("factor must be in (0, 1): a reduction must reduce")
        if self.style == "torch":
            if self.mode == "auto":
                raise ValueError("mode 'auto' is Keras' (style: keras); torch takes 'min' or 'max'")
            if self.min_delta is not None:
                raise ValueError("min_delta is Keras' name (style: keras); torch uses threshold/threshold_mode")
        return self

    @property
    def resolved_mode(self) -> Literal["min", "max"]:
        if self.mode == "auto":
            return "max" if "acc" in self.metric or self.metric.startswith("fmeasure") else "min"
        return self.mode

    @property
    def resolved_min_delta(self) -> float:
        return 1e-4 if self.min_delta is None else self.min_delta


class ReduceLROnPlateau(PlateauSpec, ScheduleSpecBase):
    """torch's ``ReduceLROnPlateau`` as a schedule type: the group's base LR, held, plus the plateau rules.

    ``{type: ReduceLROnPlateau, metric: val_loss, mode: min, factor: 0.5, patience: 5}``
    """

    type: Literal["ReduceLROnPlateau"] = "ReduceLROnPlateau"

    per_group_fields: ClassVar[tuple[str, ...]] = ("min_lr",)

    def to_schedule(self, base_lrs: np.ndarray[Any, np.dtype[np.float64]]) -> Schedule:
        return constant(base_lrs)

    def as_plateau(self) -> PlateauSpec:
        return PlateauSpec.model_validate(self.model_dump(exclude={"type"}, by_alias=False))
