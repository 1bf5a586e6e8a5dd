"""ReduceLROnPlateau as an immutable state and a pure ``observe``.

The caller feeds metric values in step order together with each group's current LR; ``observe`` returns the
new state and the per-group multiplier to apply to the run's scale from the next step (1.0 where nothing
changes). Two dialects:

torch (``torch.optim.lr_scheduler.ReduceLROnPlateau.step``)::

    better  ->  best = v, bad = 0           else bad += 1
    if cooldown_counter > 0: cooldown_counter -= 1; bad = 0
    if bad > patience: reduce; cooldown_counter = cooldown; bad = 0
    reduce group g: new = max(lr*factor, min_lr); apply only if lr - new > eps

Keras 3 (``keras.callbacks.ReduceLROnPlateau.on_epoch_end``, as of Keras 3.15)::

    if cooldown_counter > 0: cooldown_counter -= 1; wait = 0
    first value, or better  ->  best = v, wait = 0
    elif not in cooldown: wait += 1
        if wait >= patience: reduce each group with lr > min_lr (to max(lr*factor, min_lr));
                             if any did: cooldown_counter = cooldown; wait = 0

Keras' "better" is ``less(v + min_delta, best)`` (min) or ``greater(v - min_delta, best)`` (max), evaluated by
``keras.ops`` in float32 (floatx), and its first value always counts as better (``best`` starts as ``None``): a
NaN first value becomes ``best`` and nothing improves on it afterwards. We reproduce all three, and its
``lr > float32(min_lr)`` test. Keras keeps the LR itself in a float32 variable; we serve float64 (the values
agree to float32 precision).

NaN is never better (except as Keras' first value), so it counts as a bad value in both.

torch's relative threshold with a negative best: torch compares with ``best * (1 - threshold)`` (min mode),
which for a negative best *loosens* the bar: a slightly worse value counts as better and ``best`` ratchets the
wrong way (pytorch/pytorch#47513, #38622, open). For a finite negative best we use ``best * (1 + threshold)``
(``best - threshold * |best|``, the improvement torch documents), and mirrored in max mode. For a best >= 0 or
infinite we evaluate torch's own expression, so positive metrics give torch's results bit for bit.
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


def _float32(x: float) -> np.float32:
    # keras.ops converts Python floats to floatx (float32); values past float32's range become inf, silently.
    with np.errstate(over="ignore"):
        return np.float32(x)


def is_better(spec: PlateauSpec, value: float, best: float) -> bool:
    """Whether ``value`` improves on ``best`` (never for NaN). Keras' "first value" rule lives in ``observe``."""
    if math.isnan(value):
        return False
    minimize = spec.resolved_mode == "min"
    if spec.style == "keras":
        delta = spec.resolved_min_delta
        if minimize:
            return bool(_float32(value + delta) < _float32(best))
        return bool(_float32(value - delta) > _float32(best))
    threshold = spec.threshold
    if spec.threshold_mode == "abs":
        return value < best - threshold if minimize else value > best + threshold
    negative = best < 0 and math.isfinite(best)
    if minimize:
        return value < best * (1.0 + threshold if negative else 1.0 - threshold)
    return value > best * (1.0 - threshold if negative else threshold + 1.0)


def _min_lrs(spec: PlateauSpec, num_groups: int) -> FloatArray:
    return np.broadcast_to(np.asarray(spec.min_lr, dtype=np.float64), (num_groups,)).astype(np.float64)


def reduction_multipliers(spec: PlateauSpec, lr_now: FloatArray) -> FloatArray:
    """Per-group multiplier of the scale for one reduction (``factor`` where the group reduces, else 1)."""
    min_lr = _min_lrs(spec, lr_now.shape[0])
    if spec.style == "keras":
        with np.errstate(over="ignore"):
            applies = lr_now.astype(np.float32) > min_lr.astype(np.float32)
    else:
        applies = (lr_now - np.maximum(lr_now * spec.factor, min_lr)) > spec.eps
    return np.where(applies, spec.factor, 1.0)


def observe(
    spec: PlateauSpec, state: PlateauState, value: float, lr_now: FloatArray
) -> tuple[PlateauState, FloatArray]:
    """Feed one metric value. ``lr_now``: each group's LR at the metric's step. Returns (state, multipliers)."""
    if spec.style == "keras":
        return _observe_keras(spec, state, value, lr_now)
    ones = np.ones(lr_now.shape[0])
    state = replace(state, last_value=value)
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
        # torch restarts the cooldown even where every group was already at min_lr (nothing changed).
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


def _observe_keras(
    spec: PlateauSpec, state: PlateauState, value: float, lr_now: FloatArray
) -> tuple[PlateauState, FloatArray]:
    ones = np.ones(lr_now.shape[0])
    first = state.last_value is None
    state = replace(state, last_value=value)
    cooldown, wait = state.cooldown_counter, state.num_bad
    if cooldown > 0:
        cooldown, wait = cooldown - 1, 0
    if first or is_better(spec, value, state.best):
        return replace(state, best=value, num_bad=0, cooldown_counter=cooldown), ones
    if cooldown > 0:
        return replace(state, num_bad=wait, cooldown_counter=cooldown), ones
    wait += 1
    if wait >= spec.patience:
        mult = reduction_multipliers(spec, lr_now)
        # Keras restarts the cooldown only where some LR was above min_lr; otherwise `wait` keeps growing.
        if np.any(mult != 1.0):
            return replace(
                state, num_bad=0, cooldown_counter=spec.cooldown, num_reductions=state.num_reductions + 1
            ), mult
    return replace(state, num_bad=wait, cooldown_counter=cooldown), ones
