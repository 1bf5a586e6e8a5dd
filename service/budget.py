"""The cost model: what one request may make the server do, checked before any of it is done.

Invariant 6: no single request, from any token, can starve the server. Every request that evaluates schedules is
priced first, and refused with a 422 ``over-budget`` problem naming the budget, its limit and the price, when

- **values**: ``points x groups`` (doubled when momentum comes too) of one answer — a lease, a curve, a dry run,
  a preview, an ``/applied`` comparison — exceeds ``max_values`` (memory: 8 bytes a value, plus its JSON);
- **work**: the element-operations ``estimate_work`` predicts (``schemas.evaluate``: a closed form costs one per
  value, an expression its node count per value, a scan every step it walks) exceed ``max_work`` (CPU: about
  1–20 ns each here, so the default is well under a second to a few seconds at the very worst);
- **metrics**: a preview simulating plateau reductions over more than ``max_preview_metrics`` metrics;
- **applied**: one ``/applied`` report covering more than ``max_applied_steps`` steps (the client splits longer
  outages into several reports).

The limits are settings (``limits`` in ``service.settings``); the cached evaluated windows have a byte budget of
their own (``service.windows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lrserve.schemas.errors import FieldError, OverBudget
from lrserve.schemas.evaluate import estimate_work
from lrserve.schemas.plan import Plan
from lrserve.schemas.wire import MAX_APPLIED_STEPS

DEFAULT_MAX_VALUES = 4_000_000  # a 1M-step curve of 2 groups with momentum
DEFAULT_MAX_WORK = 200_000_000
DEFAULT_MAX_PREVIEW_METRICS = 2_000
DEFAULT_MAX_APPLIED_STEPS = MAX_APPLIED_STEPS
DEFAULT_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class Budget:
    max_values: int = DEFAULT_MAX_VALUES
    max_work: int = DEFAULT_MAX_WORK
    max_preview_metrics: int = DEFAULT_MAX_PREVIEW_METRICS
    max_applied_steps: int = DEFAULT_MAX_APPLIED_STEPS

    @staticmethod
    def _refuse(budget: str, limit: int, asked: int, field: tuple[str | int, ...], what: str) -> OverBudget:
        return OverBudget(
            detail=f"{what}: {asked:,} asked, the {budget} budget is {limit:,}",
            errors=[FieldError(field, f"over the {budget} budget ({asked:,} > {limit:,})")],
            extra={"budget": budget, "limit": limit, "asked": asked},
        )

    def values(self, points: int, groups: int, *, momentum: bool, field: tuple[str | int, ...]) -> None:
        """Refuse an answer of ``points x groups`` (x2 with momentum) values above ``max_values``."""
        asked = points * groups * (2 if momentum else 1)
        if asked > self.max_values:
            raise self._refuse(
                "max_values", self.max_values, asked, field, f"{points:,} steps x {groups} groups is too many values"
            )

    def work(self, plan: Plan, steps: npt.NDArray[np.int64], *, field: tuple[str | int, ...]) -> None:
        """Refuse evaluating ``plan`` at ``steps`` when its estimated element-operations exceed ``max_work``."""
        asked = estimate_work(plan, steps) if steps.size else 0
        if asked > self.max_work:
            raise self._refuse("max_work", self.max_work, asked, field, "this evaluation would take too long")

    def evaluation(self, plan: Plan, steps: npt.NDArray[np.int64], *, field: tuple[str | int, ...]) -> None:
        """``values`` and ``work`` of evaluating ``plan`` at ``steps`` (momentum counted if any layer cycles it)."""
        momentum = any(plan.layer_at(int(b)).schedule.momentum is not None for b in plan.breakpoints)
        self.values(int(steps.size), plan.num_groups, momentum=momentum, field=field)
        self.work(plan, steps, field=field)

    def window(self, plan: Plan, start: int, count: int, *, field: tuple[str | int, ...]) -> None:
        """``evaluation`` of the window ``start .. start + count - 1``."""
        self.evaluation(plan, np.arange(start, start + count, dtype=np.int64), field=field)

    def preview_metrics(self, count: int) -> None:
        if count > self.max_preview_metrics:
            raise self._refuse(
                "max_preview_metrics", self.max_preview_metrics, count, ("metrics",), "too many simulated metrics"
            )

    def applied_steps(self, count: int) -> None:
        if count > self.max_applied_steps:
            raise self._refuse(
                "max_applied_steps", self.max_applied_steps, count, ("stop",), "one report covers too many steps"
            )
