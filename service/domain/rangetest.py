"""A range-test run read as such: its loss history, where it stopped, and what it suggests.

The test's losses are the counting metrics named as the spec's ``metric`` (default ``loss``), one per step in
step order (the first recorded value of a step counts); the LR of each step is what the run served there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core import lrfinder
from lrserve.schemas.errors import Conflict
from lrserve.schemas.specs.base import schedule_type
from lrserve.schemas.specs.rangetest import LRRangeTest
from lrserve.service.domain.history import RunState


@dataclass(frozen=True)
class RangeHistory:
    test: LRRangeTest
    steps: npt.NDArray[np.int64]
    lrs: npt.NDArray[np.float64]  # (G, N)
    losses: npt.NDArray[np.float64]


def range_test_of(state: RunState) -> LRRangeTest | None:
    schedule = state.spec.schedule
    return schedule if isinstance(schedule, LRRangeTest) else None


def history(state: RunState) -> RangeHistory:
    test = range_test_of(state)
    if test is None:
        raise Conflict(detail=f"the run's schedule is {schedule_type(state.spec.schedule)!r}, not an LRRangeTest")
    by_step: dict[int, float] = {}
    for m in state.counted:
        if m.name == test.metric and m.step not in by_step:
            by_step[m.step] = m.value
    steps = np.array(sorted(by_step), dtype=np.int64)
    lrs, _ = state.plan.values(steps)
    losses = np.array([by_step[int(s)] for s in steps], dtype=np.float64)
    return RangeHistory(test=test, steps=steps, lrs=lrs, losses=losses)


def stopped_step(state: RunState) -> int | None:
    """The step where the test diverged (None: not a range test, or it did not diverge). Memoized per history."""
    if range_test_of(state) is None:
        return None
    key = ("range_stop", state.last_seq)
    if key not in state.memo:
        h = history(state)
        smoothed = lrfinder.smooth_losses(h.losses, smooth_f=h.test.smooth_f, method=h.test.smoothing)
        index = lrfinder.divergence_index(smoothed, diverge_th=h.test.diverge_th, losses=h.losses)
        state.memo.clear()
        state.memo[key] = None if index is None else int(h.steps[index])
    stop = state.memo[key]
    return stop if isinstance(stop, int) else None


def suggest(
    state: RunState, *, upper_rule: lrfinder.UpperRule = "valley", lower_div: float = lrfinder.DEFAULT_LOWER_DIV
) -> tuple[RangeHistory, lrfinder.Suggestions]:
    h = history(state)
    if h.losses.size == 0:
        raise Conflict(detail=f"no {h.test.metric!r} metric recorded yet: run the test first")
    reading = lrfinder.suggest(
        h.lrs[0],
        h.losses,
        smooth_f=h.test.smooth_f,
        smoothing=h.test.smoothing,
        diverge_th=h.test.diverge_th,
        num_steps=h.test.num_steps,
        upper_rule=upper_rule,
        lower_div=lower_div,
    )
    return h, reading
