"""RunSpec: the param groups, the schedule and the optional plateau block of one training run.

.. code-block:: yaml

    param_groups:
      - {name: backbone, lr: 0.01}
      - {name: head, lr: 0.1}
    schedule: {type: OneCycleLR, max_lr: [0.1, 1.0], total_steps: 10000}
    plateau: {metric: val_loss, mode: min, factor: 0.1, patience: 10}
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from lrserve.schemas.specs.base import FiniteFloat, ScheduleSpecBase, StrictModel, schedule_type
from lrserve.schemas.specs.plateau import PlateauSpec, ReduceLROnPlateau
from lrserve.schemas.specs.union import ScheduleSpec

MAX_PARAM_GROUPS = 256
GROUP_NAME_PATTERN = r"^[A-Za-z0-9_.:/\-]{1,100}$"


class ParamGroup(StrictModel):
    """One optimizer param group: its name and base LR (torch's ``initial_lr`` / ``base_lrs`` entry)."""

    name: Annotated[str, Field(pattern=GROUP_NAME_PATTERN, description="group name, e.g. 'backbone'")]
    lr: Annotated[FiniteFloat, Field(ge=0, description="base LR of the group")] | None = Field(
        None,
        description="base LR; may be omitted when the schedule names its own initial LR (Keras, Caffe)",
    )


def _all_nested(
    spec: ScheduleSpecBase, loc: tuple[str | int, ...]
) -> list[tuple[ScheduleSpecBase, tuple[str | int, ...]]]:
    out = [(spec, loc)]
    for i, child in enumerate(spec.nested()):
        out.extend(_all_nested(child, (*loc, "schedulers", i)))
    return out


class RunSpec(StrictModel):
    """What a run is: param groups, a schedule in any dialect, and an optional plateau block."""

    param_groups: list[ParamGroup] = Field(
        default_factory=lambda: [ParamGroup(name="default")],
        min_length=1,
        max_length=MAX_PARAM_GROUPS,
        description="one entry per optimizer param group, in the optimizer's order",
    )
    schedule: ScheduleSpec = Field(description="the schedule, in torch's, Keras' or Caffe's dialect")
    plateau: PlateauSpec | None = Field(None, description="ReduceLROnPlateau rules layered on the schedule")

    @field_validator("param_groups")
    @classmethod
    def _unique_names(cls, groups: list[ParamGroup]) -> list[ParamGroup]:
        seen: set[str] = set()
        for group in groups:
            if group.name in seen:
                raise ValueError(f"param group name {group.name!r} appears twice; names must be unique")
            seen.add(group.name)
        return groups

    @field_validator("schedule")
    @classmethod
    def _groups_fit_schedule(cls, schedule: ScheduleSpecBase, info: ValidationInfo) -> ScheduleSpecBase:
        groups: list[ParamGroup] | None = info.data.get("param_groups")
        if groups is None:
            return schedule
        problems: list[str] = []
        for spec, loc in _all_nested(schedule, ()):
            for where, msg in spec.group_count_errors(len(groups), loc):
                problems.append(f"schedule.{'.'.join(map(str, where))} {msg}")
            if getattr(spec, "uses_base_lr", True):
                missing = [g.name for g in groups if g.lr is None]
                if missing:
                    problems.append(
                        f"{schedule_type(spec)} scales each group's base LR: param_groups {missing} need an 'lr'"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return schedule

    @field_validator("plateau")
    @classmethod
    def _plateau_fits_run(cls, plateau: PlateauSpec | None, info: ValidationInfo) -> PlateauSpec | None:
        if plateau is None:
            return None
        if isinstance(info.data.get("schedule"), ReduceLROnPlateau):
            raise ValueError("schedule ReduceLROnPlateau already carries the plateau rules; drop the 'plateau' block")
        groups: list[ParamGroup] | None = info.data.get("param_groups")
        if groups is not None:
            problems = [f"{'.'.join(map(str, loc))} {msg}" for loc, msg in plateau.group_count_errors(len(groups), ())]
            if problems:
                raise ValueError("; ".join(problems))
        return plateau

    def effective_plateau(self) -> PlateauSpec | None:
        """The plateau rules in force: the ``plateau`` block, or those of a ReduceLROnPlateau schedule."""
        if isinstance(self.schedule, ReduceLROnPlateau):
            return self.schedule.as_plateau()
        return self.plateau

    def base_lrs(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Per-group base LRs (NaN where omitted: the schedule names its own)."""
        return np.array([np.nan if g.lr is None else g.lr for g in self.param_groups], dtype=np.float64)

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.param_groups]
