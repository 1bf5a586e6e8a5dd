"""The shape every schedule in the numeric core has.

A schedule is a pure function of an integer step array. ``lr(steps)`` takes ``steps`` of shape ``(N,)``
(int64, any values >= 0, unsorted allowed) and returns float64 values of shape ``(G, N)``: one row per
param group. Per-group parameters are carried as ``(G, 1)`` columns so numpy broadcasting does the rest.

    >>> import numpy as np
    >>> s = constant(np.array([0.1, 1.0]))
    >>> s.lr(np.arange(3)).shape
    (2, 3)

``momentum`` is ``None`` for schedules that do not cycle momentum (the optimizer's own momentum stands).
``total_steps`` is the number of steps the schedule defines (steps ``0 .. total_steps-1``), ``None`` when it
never ends; the core never raises past the end: each schedule documents what it holds there.

``work(steps)`` estimates, before any is done, the element-operations ``lr(steps)`` will do, so a caller can
refuse an over-budget request first: ``N * G`` for a closed form (``cost`` is ``None``), more where the
schedule says so (``cost``): scans walk every step from their anchor to the largest asked for, expressions
cost their node count per element, composites sum their parts.

Purity: the value at step ``s`` depends on ``s`` and the schedule only, never on which other steps are in
the array, their order or their number (``tests/schemas/test_window_purity.py``, bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Steps = npt.NDArray[np.int64]
Values = npt.NDArray[np.float64]
Column = npt.NDArray[np.float64]  # shape (G, 1): one value per param group
ValueFn = Callable[[Steps], Values]
# steps (N,) -> the element-operations an evaluation at those steps does (an estimate, made before the work)
WorkFn = Callable[[Steps], int]


@dataclass(frozen=True)
class Schedule:
    """A built schedule: pure functions of a step array, for a fixed number of param groups."""

    lr: ValueFn
    num_groups: int
    momentum: ValueFn | None = None
    total_steps: int | None = None
    cost: WorkFn | None = None  # None: a closed form, one operation per point and group

    def work(self, steps: Steps) -> int:
        """Element-operations ``lr(steps)`` does: ``N * G`` for a closed form, else what ``cost`` says."""
        if self.cost is not None:
            return self.cost(steps)
        return points_work(steps, self.num_groups)

    def done(self, steps: Steps) -> npt.NDArray[np.bool_]:
        """True where a step lies past the steps the schedule defines."""
        if self.total_steps is None:
            return np.zeros(steps.shape, dtype=bool)
        return np.asarray(steps) >= self.total_steps


def points_work(steps: Steps, groups: int, per_point: int = 1) -> int:
    """A closed form's work: ``N * G * per_point`` (``per_point``: operations per element, e.g. node count)."""
    return int(steps.shape[0]) * groups * per_point


def scan_work(steps: Steps, groups: int, per_step: int = 1, start: int = 0) -> int:
    """A scan's work: ``(max(step) - start + 1) * G * per_step`` for the walk, plus ``N * G`` for the gather.

    Only steps ``>= start`` are scanned (0 when none is); ``start`` is where the scan is anchored.
    """
    walked = steps[steps >= start] if start else steps
    if walked.size == 0:
        return 0
    return (int(walked.max()) - start + 1) * groups * per_step + points_work(walked, groups)


def as_steps(steps: npt.ArrayLike) -> Steps:
    """Validate and convert user steps to a 1-D int64 array (negative steps are refused)."""
    arr = np.asarray(steps)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"steps must be a 1-D array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError("steps must be integers")
    out = arr.astype(np.int64, copy=False)
    if out.size and out.min() < 0:
        raise ValueError("steps must be >= 0")
    return out


def column(values: float | list[float] | npt.ArrayLike, num_groups: int) -> Column:
    """A scalar or per-group list as a ``(G, 1)`` float64 column (a scalar is broadcast to every group)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(num_groups, float(arr))
    if arr.shape != (num_groups,):
        raise ValueError(f"expected a scalar or {num_groups} per-group values, got shape {arr.shape}")
    return arr.reshape(num_groups, 1)


def constant(base_lrs: npt.ArrayLike) -> Schedule:
    """``lr(s) = base_lr`` for every group."""
    base = np.asarray(base_lrs, dtype=np.float64).reshape(-1, 1)

    def lr(steps: Steps) -> Values:
        return np.broadcast_to(base, (base.shape[0], steps.shape[0])).copy()

    return Schedule(lr=lr, num_groups=base.shape[0])
