"""ReduceLROnPlateau as an immutable state and a pure ``observe``.

The caller feeds metric values in step order together with each group's current LR; ``observe`` returns the
new state and the per-group multiplier to apply to the run's scale from the next step (1.0 where nothing
changes). Two dialects:

torch (``torch.optim.lr_scheduler.ReduceLROnPlateau.step``)::

    better  ->  best = v, bad = 0           else bad += 1
    if cooldown_counter > 0: cooldown_counter -= 1; bad = 0
    if bad > patience: reduce; cooldown_counter = cooldown; bad = 0
    reduce group g: new = max(lr*factor, min_lr); apply only if lr - new > eps

Keras (``keras.callbacks.ReduceLROnPlateau.on_epoch_end``)::

    if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
    better  ->  best = v, wait = 0
    elif not in cooldown: wait += 1
        if wait >= patience and lr > min_lr: reduce (max(lr*factor, min_lr)); cooldown_counter = cooldown; wait = 0

NaN is never better, so it counts as a bad value in both (as in both references).

Relative threshold with a negative best: torch computes ``best * (1 - threshold)``, which for a negative best
*loosens* the bar (a slightly worse value counts as better). We use ``best - threshold * |best|`` (min mode;
``best + threshold * |best|`` in max mode), the improvement torch intends; for positive metrics this is
exactly torch's rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from lrserve.schemas.specs.plateau import PlateauSpec

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PlateauState:
    best: float
    num_bad: int = 0
    cooldown_counter: int = 0
    num_reductions: int = 0
    last_value: float | None = None


def initial_state(spec: PlateauSpec) -> PlateauState:
    return PlateauState(best=math.inf if spec.resolved_mode == "min" else -math.inf)


def is_better(spec: PlateauSpec, value: float, best: float) -> bool:
    if math.isnan(value):
        return False
    mode = spec.resolved_mode
    if spec.style == "keras":
        delta = spec.resolved_min_delta
        return value < best - delta if mode == "min" else value > best + delta
    if spec.threshold_mode == "abs":
        return value < best - spec.threshold if mode == "min" else value > best + spec.threshold
    if math.isinf(best):
        return value < best if mode == "min" else value > best
    margin = spec.threshold * abs(best)
    return value < best - margin if mode == "min" else value > best + margin


def _min_lrs(spec: PlateauSpec, num_groups: int) -> FloatArray:
    return np.broadcast_to(np.asarray(spec.min_lr, dtype=np.float64), (num_groups,)).astype(np.float64)


def reduction_multipliers(spec: PlateauSpec, lr_now: FloatArray) -> FloatArray:
    """Per-group multiplier of the scale for one reduction (``factor`` where the group reduces, else 1)."""
    min_lr = _min_lrs(spec, lr_now.shape[0])
    new = np.maximum(lr_now * spec.factor, min_lr)
    if spec.style == "keras":
        applies = lr_now > min_lr
    else:
        applies = (lr_now - new) > spec.eps
    return np.where(applies, spec.factor, 1.0)


def observe(
    spec: PlateauSpec, state: PlateauState, value: float, lr_now: FloatArray
) -> tuple[PlateauState, FloatArray]:
    """Feed one metric value. ``lr_now``: each group's LR at the metric's step. Returns (state, multipliers)."""
    ones = np.ones(lr_now.shape[0])
    state = replace(state, last_value=value)
    if spec.style == "keras":
        cooldown = state.cooldown_counter
        wait = state.num_bad
        if cooldown > 0:
            cooldown -= 1
            wait = 0
        if is_better(spec, value, state.best):
            return replace(state, best=value, num_bad=0, cooldown_counter=cooldown), ones
        if cooldown > 0:
            return replace(state, num_bad=wait, cooldown_counter=cooldown), ones
        wait += 1
        if wait >= spec.patience:
            mult = reduction_multipliers(spec, lr_now)
            if np.any(mult != 1.0):
                return replace(
                    state, num_bad=0, cooldown_counter=spec.cooldown, num_reductions=state.num_reductions + 1
                ), mult
        return replace(state, num_bad=wait, cooldown_counter=cooldown), ones

    best, bad = state.best, state.num_bad
    if is_better(spec, value, best):
        best, bad = value, 0
    else:
        bad += 1
    cooldown = state.cooldown_counter
    if cooldown > 0:
        cooldown -= 1
        bad = 0
    if bad > spec.patience:
        mult = reduction_multipliers(spec, lr_now)
        reduced = bool(np.any(mult != 1.0))
        return replace(
            state,
            best=best,
            num_bad=0,
            cooldown_counter=spec.cooldown,
            num_reductions=state.num_reductions + int(reduced),
        ), mult
    return replace(state, best=best, num_bad=bad, cooldown_counter=cooldown), ones
