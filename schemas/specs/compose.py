"""Composite schedules: torch's SequentialLR and ChainedScheduler (nested specs).

.. code-block:: yaml

    schedule:
      type: SequentialLR
      milestones: [500]
      schedulers:
        - {type: LinearLR, start_factor: 0.01, total_iters: 500}
        - {type: CosineAnnealingLR, T_max: 9500}

SequentialLR (torch 2.13): phase ``i`` runs from ``milestones[i-1]`` with its steps counted from there, and
restarts from the group's *base* LR: at a milestone torch calls the scheduler's ``_update_lr(0)``, which uses
its closed form at step 0. The one exception is MultiplicativeLR (no closed form): torch multiplies the LR of
the step before the milestone by ``f(0)``, ``f(1)``, ..., and so do we. Children of other dialects (Keras,
Caffe) run the same way, on steps relative to their milestone.

ChainedScheduler: every scheduler steps in list order on the same LR, so the LR is the base LR times each
child's own factor: ``base * prod_j factor_j(s)`` (``core.combinators.chain``). That is exact only for
children whose ``step()`` multiplies the LR by a ratio of the step: StepLR, MultiStepLR, ConstantLR,
LinearLR, ExponentialLR, PolynomialLR, MultiplicativeLR, and CosineAnnealingLR with ``eta_min: 0`` (whose
step ``T_max + 1`` restarts the LR from the base LR, discarding the others' factors, as torch does).

Neither composite cycles momentum (``Schedule.momentum`` is ``None``): CyclicLR and OneCycleLR are refused.

Refused, with the reason (each of these gives, in torch, a result that depends on the order the schedulers
were *built* in, or an error):

* ReduceLROnPlateau anywhere (torch refuses it too): use the ``plateau`` block;
* a composite inside a composite (torch's nested SequentialLR steps off by one; entered at a milestone it
  raises NotImplementedError);
* CyclicLR and OneCycleLR (their constructors overwrite the optimizer's ``lr``/``initial_lr`` and momentum,
  which the other schedulers then read);
* in a ChainedScheduler: LambdaLR and CosineAnnealingWarmRestarts (they set the LR outright, discarding the
  schedulers before them), CosineAnnealingLR with ``eta_min > 0`` (its step adds ``eta_min`` terms that do not
  factor), and more than one CosineAnnealingLR (their restarts would interleave).
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from lrserve.schemas.core.combinators import Continuation, chain, join
from lrserve.schemas.core.schedule import Schedule
from lrserve.schemas.specs.base import ScheduleSpecBase, StepCount, schedule_type
from lrserve.schemas.specs.plateau import ReduceLROnPlateau
from lrserve.schemas.specs.torch import ChainableSpec, CosineAnnealingLR, CyclicLR, OneCycleLR, TorchSpec

if TYPE_CHECKING:
    ScheduleSpec = ScheduleSpecBase

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def _phase(child: ScheduleSpecBase) -> ScheduleSpecBase:
    """A SequentialLR child: no plateau, no composite, no scheduler with construction side effects."""
    name = schedule_type(child)
    if isinstance(child, ReduceLROnPlateau):
        raise ValueError("ReduceLROnPlateau cannot be nested (torch refuses it): use the plateau block")
    if child.nested():
        raise ValueError(f"{name} cannot be nested in a composite (torch mis-steps nested composites)")
    if isinstance(child, CyclicLR | OneCycleLR):
        raise ValueError(
            f"{name} cannot be combined: its constructor overwrites the optimizer's LR and momentum, so "
            "torch's result depends on the order the schedulers were built in"
        )
    return child


def _link(child: ScheduleSpecBase) -> ScheduleSpecBase:
    """A ChainedScheduler child: a SequentialLR child whose step() multiplies the LR by a ratio."""
    _phase(child)
    if not isinstance(child, ChainableSpec):
        raise ValueError(
            f"{schedule_type(child)} cannot be chained: it sets the LR outright rather than multiplying it, "
            "which discards the schedulers before it (chain StepLR, MultiStepLR, ConstantLR, LinearLR, "
            "ExponentialLR, PolynomialLR, MultiplicativeLR or CosineAnnealingLR)"
        )
    if isinstance(child, CosineAnnealingLR) and not child.is_chainable():
        raise ValueError(
            "a chained CosineAnnealingLR needs eta_min 0: with eta_min > 0 torch's step adds eta_min terms, "
            "so the chain is no longer a product of factors"
        )
    return child


class SequentialLR(ScheduleSpecBase):
    """Schedulers one after another: ``schedulers[i]`` from ``milestones[i-1]``, restarted from the base LR.

    ``{type: SequentialLR, schedulers: [{type: LinearLR, ...}, {type: CosineAnnealingLR, ...}], milestones: [500]}``
    ``total_steps``: the last milestone plus the last scheduler's, where it has one.
    """

    type: Literal["SequentialLR"] = "SequentialLR"
    schedulers: list[Annotated[ScheduleSpec, AfterValidator(_phase)]] = Field(
        min_length=1, description="the phases, in order"
    )
    milestones: list[StepCount] = Field(
        description="steps at which the next scheduler takes over: strictly increasing, one fewer than schedulers"
    )

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, v: list[int], info: ValidationInfo) -> list[int]:
        children = info.data.get("schedulers")
        if children is not None and len(v) != len(children) - 1:
            raise ValueError(
                f"need one milestone fewer than schedulers: got {len(v)} milestones for {len(children)} schedulers"
            )
        for m in v:
            if m < 1:
                raise ValueError(f"milestones must be >= 1 (got {m})")
        for a, b in pairwise(v):
            if b <= a:
                raise ValueError(f"milestones must be strictly increasing ({a} then {b})")
        return v

    def nested(self) -> list[ScheduleSpecBase]:
        return list(self.schedulers)

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        phases: list[Schedule | Continuation] = [self.schedulers[0].to_schedule(base_lrs)]
        for child in self.schedulers[1:]:
            phases.append(child.to_phase(base_lrs) if isinstance(child, TorchSpec) else child.to_schedule(base_lrs))
        return join(phases, self.milestones)


class ChainedScheduler(ScheduleSpecBase):
    """Schedulers stepped together: ``base_lr * prod_j factor_j(s)`` (see the module docstring for who may join).

    ``{type: ChainedScheduler, schedulers: [{type: ConstantLR, factor: 0.1, total_iters: 2},
    {type: ExponentialLR, gamma: 0.9}]}``. ``total_steps``: the largest of the children's when all have one.
    """

    type: Literal["ChainedScheduler"] = "ChainedScheduler"
    schedulers: list[Annotated[ScheduleSpec, AfterValidator(_link)]] = Field(
        min_length=1, description="the schedulers, stepped in this order"
    )

    @field_validator("schedulers")
    @classmethod
    def _one_cosine(cls, v: list[ScheduleSpecBase]) -> list[ScheduleSpecBase]:
        if sum(isinstance(child, CosineAnnealingLR) for child in v) > 1:
            raise ValueError("chain at most one CosineAnnealingLR (their restarts would interleave)")
        return v

    def nested(self) -> list[ScheduleSpecBase]:
        return list(self.schedulers)

    def to_schedule(self, base_lrs: FloatArray) -> Schedule:
        base = np.asarray(base_lrs, dtype=np.float64).reshape(-1, 1)
        links = []
        for child in self.schedulers:
            assert isinstance(child, ChainableSpec)  # the validator guarantees it
            links.append(child.to_link(base_lrs))
        return chain(base, links)


SPECS: tuple[type[ScheduleSpecBase], ...] = (SequentialLR, ChainedScheduler)
