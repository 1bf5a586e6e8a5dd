"""``evaluate``: the LR (or momentum) of every param group of a spec at an array of steps.

    >>> spec = parse_spec({"param_groups": [{"name": "g", "lr": 0.1}],
    ...                    "schedule": {"type": "StepLR", "step_size": 2, "gamma": 0.5}})
    >>> evaluate(spec, [0, 1, 2, 3, 4]).round(4).tolist()
    [[0.1, 0.1, 0.05, 0.05, 0.025]]

Plateau: metrics named as the plateau's ``metric`` are fed in step order; a reduction triggered by the metric at
step m applies from step m + 1 (torch: the scheduler steps after the epoch that produced the metric). After a
group's first reduction its LR is ``max(schedule(s) * scale, min(schedule(s), min_lr))``: reductions never take
it below ``min_lr``, and never above the schedule's own value (torch never *raises* an LR to min_lr); before
it, the schedule's own value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core import plateau as plateau_core
from lrserve.schemas.core.schedule import Schedule, Values, as_steps
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.run import RunSpec

if TYPE_CHECKING:
    from lrserve.schemas.plan import Plan

Metric = tuple[int, str, float]


def build(spec: RunSpec) -> Schedule:
    """The schedule of a spec, without plateau."""
    return spec.schedule.to_schedule(spec.base_lrs())


@dataclass(frozen=True)
class Reduction:
    """A plateau reduction: triggered by the metric at ``metric_step``, applies from ``from_step``."""

    metric_step: int
    from_step: int
    multipliers: tuple[float, ...]
    scale_after: tuple[float, ...]


@dataclass(frozen=True)
class ScaleTrack:
    """Piecewise-constant per-group scale: ``scales[k]`` holds from ``starts[k]`` on (``starts[0] == 0``)."""

    starts: npt.NDArray[np.int64]
    scales: npt.NDArray[np.float64]  # shape (K, G)
    reduced: npt.NDArray[np.bool_]  # shape (K, G): group reduced at least once by then

    def at(self, steps: npt.NDArray[np.int64]) -> tuple[Values, npt.NDArray[np.bool_]]:
        idx = np.searchsorted(self.starts, steps, side="right") - 1
        return self.scales[idx].T, self.reduced[idx].T


def replay_plateau(
    plateau: PlateauSpec, schedule: Schedule, metrics: Iterable[Metric]
) -> tuple[ScaleTrack, list[Reduction], plateau_core.PlateauState]:
    """Fold the plateau's metrics (in step order, stable) into the scale track and the reductions."""
    groups = schedule.num_groups
    watched = sorted(((s, v) for s, name, v in metrics if name == plateau.metric), key=lambda sv: sv[0])
    state = plateau_core.initial_state(plateau)
    scale = np.ones(groups)
    reduced = np.zeros(groups, dtype=bool)
    starts, scales, reduced_rows = [0], [scale.copy()], [reduced.copy()]
    reductions: list[Reduction] = []
    # The schedule's own values at every watched step, in one vectorized call.
    raw_at = schedule.lr(np.array([s for s, _ in watched], dtype=np.int64))
    for i, (step, value) in enumerate(watched):
        lr_now = apply_scale(plateau, raw_at[:, i : i + 1], scale[:, None], reduced[:, None])[:, 0]
        state, mult = plateau_core.observe(plateau, state, value, lr_now)
        if np.any(mult != 1.0):
            scale = scale * mult
            reduced = reduced | (mult != 1.0)
            starts.append(step + 1)
            scales.append(scale.copy())
            reduced_rows.append(reduced.copy())
            reductions.append(Reduction(step, step + 1, tuple(mult.tolist()), tuple(scale.tolist())))
    track = ScaleTrack(np.array(starts, dtype=np.int64), np.array(scales), np.array(reduced_rows))
    return track, reductions, state


def apply_scale(plateau: PlateauSpec | None, raw: Values, scale: Values, reduced: npt.NDArray[np.bool_]) -> Values:
    """``max(raw * scale, min(raw, min_lr))`` where a group has been reduced, ``raw * scale`` elsewhere.

    The floor is ``min_lr``, except where the schedule itself is below it: a reduction never raises an LR.
    """
    scaled = raw * scale
    if plateau is None:
        return scaled
    min_lr = np.asarray(plateau.min_lr, dtype=np.float64)
    min_col = np.broadcast_to(min_lr, (raw.shape[0],)).reshape(-1, 1)
    return np.where(reduced, np.maximum(scaled, np.minimum(raw, min_col)), scaled)


def evaluate(
    spec: RunSpec,
    steps: npt.ArrayLike,
    *,
    field: Literal["lr", "momentum"] = "lr",
    metrics: Sequence[Metric] | None = None,
) -> Values:
    """Values of shape ``(num_groups, len(steps))``, float64.

    ``field="momentum"`` gives the cycled momentum (``momentum``, or ``betas[0]`` for Adam-style optimizers)
    of CyclicLR and OneCycleLR with ``cycle_momentum``; every other schedule returns NaN (the optimizer's own
    momentum stands). Plateau reductions never touch momentum.
    """
    arr = as_steps(steps)
    schedule = build(spec)
    if field == "momentum":
        if schedule.momentum is None:
            return np.full((schedule.num_groups, arr.shape[0]), np.nan)
        return schedule.momentum(arr)
    raw = schedule.lr(arr)
    plateau = spec.effective_plateau()
    if plateau is None or not metrics:
        return raw
    track, _, _ = replay_plateau(plateau, schedule, metrics)
    scale, reduced = track.at(arr)
    return apply_scale(plateau, raw, scale, reduced)


def estimate_work(target: RunSpec | Plan, steps: npt.ArrayLike) -> int:
    """Element-operations evaluating ``target`` at ``steps`` will do: an estimate made before any of the work,
    so a caller can refuse an over-budget request first (``steps`` are validated as ``evaluate`` does).

    With ``N`` points, ``G`` groups and ``max`` the largest step, a schedule's work is

    * a closed form: ``N * G``; LambdaLR: ``N * G * nodes`` (``nodes``: the expression's node count);
    * a scan (MultiplicativeLR, a SequentialLR phase continuing one): ``(max - anchor + 1) * G * nodes + N * G``,
      with ``anchor`` 0 or the phase's milestone;
    * ChainedScheduler: its links' factors at the steps below the cosine's first restart ``r``, plus
      ``(max - r + 1) * G * sum_j cost_j + N * G`` for the scan from ``r`` (``cost_j``: 1, or a lambda's nodes);
    * CosineAnnealingLR: ``N * G`` plus 65 replayed steps per period past ``T_max`` that the steps reach;
    * SequentialLR: the sum of its phases' work at the steps of each phase.

    A ``Plan`` adds ``N * G`` per interval for the scales and the work of the plan as of each pin at the
    steps it pins (``Plan.work``).

        >>> spec = parse_spec({"param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.2}],
        ...                    "schedule": {"type": "MultiplicativeLR", "lr_lambda": "0.99"}})
        >>> estimate_work(spec, [0, 9_999])  # 10,000 steps walked, 2 groups, 1 node; 2 points gathered
        20004
    """
    arr = as_steps(steps)
    if isinstance(target, RunSpec):
        return build(target).work(arr)
    return target.work(arr)


def parse_spec(data: Any) -> RunSpec:
    """Validate a mapping (parsed JSON/YAML) into a RunSpec, raising ``SpecInvalid`` with field paths."""
    from lrserve.schemas.validation import validate_run_spec

    return validate_run_spec(data)
