"""Cyclic schedules: torch's CyclicLR, OneCycleLR and CosineAnnealingWarmRestarts, in closed form.

All three set the LR outright at every step (no chaining), so each is a pure function of the step. The
arithmetic follows torch's ``get_lr`` operation by operation, so values agree to the last bit or two.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from lrserve.schemas.core.schedule import Column, Schedule, Steps, Values

CyclicMode = Literal["triangular", "triangular2", "exp_range"]
Anneal = Literal["cos", "linear"]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def cyclic(
    low: Column,
    high: Column,
    up: int,
    down: int,
    mode: CyclicMode = "triangular",
    gamma: float = 1.0,
    momentum: tuple[Column, Column] | None = None,
) -> Schedule:
    """CyclicLR: a triangle from ``low`` to ``high`` in ``up`` steps and back in ``down`` steps::

        cycle = floor(1 + s / (up + down));  x = 1 + s / (up + down) - cycle
        scale = x / r if x <= r else (x - 1) / (r - 1),   r = up / (up + down)
        lr = low + (high - low) * scale * amp(cycle or s)

    ``amp``: 1 (triangular), ``1 / 2 ** (cycle - 1)`` (triangular2), ``gamma ** s`` (exp_range).
    triangular2 past cycle 1024: torch's ``2.0 ** (cycle - 1)`` raises OverflowError; here the amplitude is 0
    (the LR stays at ``low``, the momentum at ``max``), the limit the halving was heading to.
    ``momentum = (base, max)`` cycles inversely: ``max - (max - base) * scale * amp``. Never ends.
    """
    _require(up >= 1, "up must be >= 1")
    _require(down >= 0, "down must be >= 0")
    total = float(up) + float(down)
    ratio = float(up) / total

    def scale(steps: Steps) -> tuple[Values, Values | None]:
        q = steps / total
        cycle = np.floor(1.0 + q)
        x = 1.0 + q - cycle
        with np.errstate(divide="ignore", invalid="ignore"):
            sf = np.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if mode == "triangular":
            return sf, None
        if mode == "triangular2":
            # past 1024 cycles 2 ** (cycle - 1) overflows: torch raises OverflowError, we let the amplitude be 0
            with np.errstate(over="ignore"):
                return sf, 1 / (2.0 ** (cycle - 1))
        with np.errstate(over="ignore"):  # gamma > 1 grows without bound, as in torch
            return sf, np.power(gamma, steps.astype(np.float64))

    def lr(steps: Steps) -> Values:
        sf, amp = scale(steps)
        height = (high - low) * sf
        return low + (height if amp is None else height * amp)

    mom = None
    if momentum is not None:
        m_base, m_max = momentum

        def mom(steps: Steps) -> Values:
            sf, amp = scale(steps)
            height = (m_max - m_base) * sf
            return m_max - (height if amp is None else height * amp)

    return Schedule(lr=lr, num_groups=low.shape[0], momentum=mom)


def one_cycle(
    peak: Column,
    total_steps: int,
    pct_start: float = 0.3,
    anneal: Anneal = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
    momentum: tuple[Column, Column] | None = None,
) -> Schedule:
    """OneCycleLR: from ``peak / div_factor`` up to ``peak`` over ``pct_start`` of the steps, then down to
    ``peak / div_factor / final_div_factor`` (three_phase: back to the start first, then down).

    Each phase anneals (``cos``: ``end + (start - end) / 2 * (1 + cos(pi p))``, ``linear``) with
    ``p = (s - phase_start) / (phase_end - phase_start)`` on torch's float phase ends ``pct * T - 1``,
    ``2 pct T - 2`` (three-phase) and ``T - 1``. Momentum (when given as ``(base, max)``) runs inversely.

    Past the end: torch computes one more value at ``s == total_steps`` (extrapolating ``p`` past 1, which for
    ``linear`` undershoots the final LR and can go negative) and raises after it. We hold the value of step
    ``total_steps - 1``, the end of the cycle (``peak / div_factor / final_div_factor``, and the max momentum),
    from ``total_steps`` on; ``Schedule.total_steps`` is ``total_steps``.
    """
    _require(total_steps >= 1, "total_steps must be >= 1")
    _require(0.0 <= pct_start <= 1.0, "pct_start must be in [0, 1]")
    _require(float(pct_start * total_steps) != 1.0, "pct_start * total_steps must not be 1 (torch divides 0 by 0)")
    _require(div_factor > 0 and final_div_factor > 0, "div factors must be > 0")
    initial = peak / div_factor
    low = initial / final_div_factor
    end0 = float(pct_start * total_steps) - 1
    if three_phase:
        ends = [end0, float(2 * pct_start * total_steps) - 2, float(total_steps - 1)]
        lr_marks = [(initial, peak), (peak, initial), (initial, low)]
        m_marks = [(1, 0), (0, 1), (1, 1)]  # indices into (base, max): start, end of each phase
    else:
        ends = [end0, float(total_steps - 1)]
        lr_marks = [(initial, peak), (peak, low)]
        m_marks = [(1, 0), (0, 1)]
    starts = [0.0, *ends[:-1]]
    n_phases = len(ends)
    last = total_steps - 1

    def pieces(steps: Steps) -> list[tuple[int, slice | np.ndarray]]:
        """``(phase, selection)``: torch takes the first phase whose end is >= s, else the last one."""
        n = steps.shape[0]
        if n <= 1 or bool(np.all(steps[1:] >= steps[:-1])):
            # sorted (the common case): every "s <= end" is a prefix, so every phase is a slice
            held = int(np.searchsorted(steps, last, side="right"))
            out: list[tuple[int, slice | np.ndarray]] = []
            lo = 0
            for i, end in enumerate(ends):
                hi = held if i == n_phases - 1 else min(int(np.searchsorted(steps, end, side="right")), held)
                if hi > lo:
                    out.append((i, slice(lo, hi)))
                lo = max(lo, hi)
            return out
        s = np.minimum(steps, last)
        index = np.full(n, n_phases - 1, dtype=np.int64)
        for i in range(n_phases - 2, -1, -1):
            index = np.where(s <= ends[i], i, index)
        return [(i, index == i) for i in range(n_phases)]

    def curve(marks: list[tuple[Column, Column]]) -> Callable[[Steps], Values]:
        # per phase and group, torch's constants: (start - end) / 2.0 for cos, (end - start) for linear
        coef = [(b, (a - b) / 2.0) if anneal == "cos" else (a, b - a) for a, b in marks]

        def fill(out: Values, steps: Steps) -> None:
            for i, sel in pieces(steps):
                s = steps[sel] if isinstance(sel, slice) else np.minimum(steps[sel], last)
                with np.errstate(divide="ignore", invalid="ignore"):
                    pct = (s - starts[i]) / (ends[i] - starts[i])
                off, scale = coef[i]
                if anneal == "cos":
                    term = np.cos(np.pi * pct)
                    term += 1
                else:
                    term = pct
                piece = scale * term
                piece += off
                out[:, sel] = piece

        def values(steps: Steps) -> Values:
            out = np.empty((marks[0][0].shape[0], steps.shape[0]))
            fill(out, steps)
            n = steps.shape[0]
            if n > 1 and steps[-1] > last and bool(np.all(steps[1:] >= steps[:-1])):
                held = int(np.searchsorted(steps, last, side="right"))
                end = np.empty((out.shape[0], 1))
                fill(end, np.array([last], dtype=np.int64))
                out[:, held:] = end
            elif n == 1 and steps[0] > last:
                fill(out, np.array([last], dtype=np.int64))
            return out

        return values

    lr = curve(lr_marks)
    mom = None
    if momentum is not None:
        pair = momentum  # (base, max)
        mom = curve([(pair[a], pair[b]) for a, b in m_marks])

    return Schedule(lr=lr, num_groups=peak.shape[0], momentum=mom, total_steps=total_steps)


def _restart_edges(first: int, mult: int, last: int) -> np.ndarray:
    """Start steps of the cosine periods (``0, T0, T0 + T0*m, ...``) up to ``last``, with Python ints."""
    edges = [0]
    period = first
    while edges[-1] + period <= last:
        edges.append(edges[-1] + period)
        period *= mult
    return np.array(edges, dtype=np.int64)


def warm_restarts(base: Column, first: int, mult: int, floor: Column) -> Schedule:
    """CosineAnnealingWarmRestarts stepped one step at a time, as torch's ``step()`` does::

        lr = floor + (base - floor) * (1 + cos(pi * t / T_i)) / 2

    with ``t`` the steps since the last restart and ``T_i = first * mult ** i`` the length of period ``i``;
    the restarts are at integer steps ``first * (mult**i - 1) / (mult - 1)`` (exact integer arithmetic: torch's
    ``step(epoch)`` form uses a float log and can land a step off, stepping does not). Never ends.
    """
    _require(first >= 1, "first must be >= 1")
    _require(mult >= 1, "mult must be >= 1")
    amp = base - floor

    def lr(steps: Steps) -> Values:
        if mult == 1:
            t = steps % first
            period: Values | int = first
        else:
            edges = _restart_edges(first, mult, int(steps.max()) if steps.size else 0)
            i = np.searchsorted(edges, steps, side="right") - 1
            t = steps - edges[i]
            period = np.array([first * mult**k for k in range(edges.size)], dtype=np.float64)[i]
        out: Values = floor + amp * (1 + np.cos(np.pi * t / period)) / 2
        return out

    return Schedule(lr=lr, num_groups=base.shape[0])
