"""Shared pieces of every spec model.

Each schedule spec is a pydantic model with a ``Literal`` ``type`` (the union in ``union.py`` dispatches on it),
``extra="forbid"``, the reference library's parameter names and defaults, and one method, ``to_schedule``,
that builds the pure numeric schedule for given base LRs. Cross-field rules raise ``ValueError`` in words, so
pydantic's error ``loc`` names the field.

Per-group parameters (learning rates such as ``eta_min`` or ``max_lr``) take a scalar or a list with one entry
per param group, as torch does; the class lists them in ``per_group_fields`` so ``RunSpec`` can check the list
lengths against its ``param_groups`` in one place.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from lrserve.schemas.core.schedule import Schedule
from lrserve.schemas.limits import MAX_STEP, step_domain_error


def _not_bool(v: Any) -> Any:
    # Lax mode would read true/false as 1/0 (Python's bool is an int): a boolean is never a number here.
    if isinstance(v, bool):
        raise ValueError("must be a number, not a boolean")
    return v


def not_bool_per_group(v: Any) -> Any:
    _not_bool(v)
    if isinstance(v, list):
        for i, x in enumerate(v):
            if isinstance(x, bool):
                raise ValueError(f"entry {i} must be a number, not a boolean")
    return v


def _in_step_domain(v: int) -> int:
    problem = step_domain_error(v)
    if problem is not None:
        raise ValueError(problem)
    return v


def _finite(v: float) -> float:
    if not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


def _finite_list(v: float | list[float]) -> float | list[float]:
    values = v if isinstance(v, list) else [v]
    if isinstance(v, list) and not v:
        raise ValueError("a per-group list must not be empty")
    for x in values:
        if not math.isfinite(x):
            raise ValueError("must be finite numbers")
    return v


def _non_negative(v: float | list[float]) -> float | list[float]:
    values = v if isinstance(v, list) else [v]
    if any(x < 0 for x in values):
        raise ValueError("a learning rate must be >= 0")
    return v


FiniteFloat = Annotated[float, BeforeValidator(_not_bool), AfterValidator(_finite)]
# A learning-rate-like parameter: a scalar for every group, or one value per group.
PerGroupLr = Annotated[
    float | list[float],
    BeforeValidator(not_bool_per_group),
    AfterValidator(_finite_list),
    AfterValidator(_non_negative),
]
PerGroupFloat = Annotated[float | list[float], BeforeValidator(not_bool_per_group), AfterValidator(_finite_list)]
#: An integer that is not a step (a seed, a count with its own bound): still never a boolean.
Integer = Annotated[int, BeforeValidator(_not_bool)]

# Step-valued parameters (lengths, periods, milestones, boundaries, patience): integers in the step domain
# (``lrserve.schemas.limits.MAX_STEP``), so int64 and float64 arithmetic on them and on steps stays exact.
_DOMAIN_SCHEMA = {"maximum": MAX_STEP}
StepCount = Annotated[
    int, Field(ge=0, json_schema_extra=_DOMAIN_SCHEMA), BeforeValidator(_not_bool), AfterValidator(_in_step_domain)
]
PositiveStepCount = Annotated[
    int, Field(gt=0, json_schema_extra=_DOMAIN_SCHEMA), BeforeValidator(_not_bool), AfterValidator(_in_step_domain)
]


class StrictModel(BaseModel):
    """No unknown fields, immutable once parsed.

    Lax (not strict) mode on purpose: YAML 1.1 reads ``1e-3`` (no dot) as the *string* "1e-3", and users write
    LRs that way; numeric strings are therefore accepted as numbers, anything else non-numeric is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, populate_by_name=True)

    # Fields taking a scalar or one value per param group (schedules, the plateau block); RunSpec checks them.
    per_group_fields: ClassVar[tuple[str, ...]] = ()

    def group_count_errors(
        self, num_groups: int, loc: tuple[str | int, ...]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Per-group lists whose length differs from ``num_groups``, as ``(loc, message)``."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        for name in self.per_group_fields:
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != num_groups:
                out.append(
                    (
                        (*loc, name),
                        f"has {len(value)} entries but the run has {num_groups} param groups "
                        "(give a scalar or one value per group)",
                    )
                )
        return out


class ScheduleSpecBase(StrictModel):
    """Base of every schedule spec (torch, Keras, Caffe, composite)."""

    def to_schedule(self, base_lrs: np.ndarray[Any, np.dtype[np.float64]]) -> Schedule:
        """Build the numeric schedule for the given per-group base LRs (shape ``(G,)``)."""
        raise NotImplementedError

    def nested(self) -> list[ScheduleSpecBase]:
        """Child schedules of a composite (SequentialLR, ChainedScheduler); empty for primitives."""
        return []


def schedule_type(spec: ScheduleSpecBase) -> str:
    """The ``type`` tag of a schedule spec (every member of the union has one)."""
    return str(getattr(spec, "type", type(spec).__name__))
