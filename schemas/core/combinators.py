"""Composites: torch's SequentialLR (``join``) and ChainedScheduler (``chain``), and the one scan they share.

``join(phases, boundaries)``: phase ``i`` runs from ``boundaries[i-1]`` on, seeing steps relative to it (optax's
``join_schedules``); torch's SequentialLR enters each later scheduler with ``_update_lr(0)``, which restarts it
from the base LR, except where the scheduler has no closed form and multiplies the *current* LR
(MultiplicativeLR): such a phase is given as a ``Continuation`` of the LR at the step before its boundary.

``chain(base, links)``: torch's ChainedScheduler steps every scheduler in turn on the same LR, so a chain of
multipliers is ``base * prod factor_j(s)``, in closed form, until some link restarts (sets the LR outright,
discarding the others' history); from the first restart on the chain is the scan below.

``scan_product``: ``v(u) = v(u-1) * m(u)`` over ``u = start..max(step)`` (``v(start-1) = init``), with optional
restart steps where ``v(u)`` is given outright; chunked, so memory stays bounded for any step. Used only where
torch's recursion has no closed form.

Purity (the value at step ``s`` never depends on the other steps asked for): every path is anchored at points
fixed by the schedule, never by the query. A chain takes its closed form below its first restart and the scan
from that restart on, whatever the window; a scan's chunks start at ``start + k * CHUNK``; a phase sees the
steps of its own interval only. Cutting the last chunk at ``max(step) + 1`` cannot change a value: the
products run strictly left to right (``cumprod`` accumulates sequentially), and the multipliers are
element-wise functions of the step (``tests/schemas/test_window_purity.py`` checks both, bit for bit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.primitives import Link, Multiplier
from lrserve.schemas.core.schedule import Column, Schedule, Steps, Values, scan_work

CHUNK = 1 << 17
# The scan walks every step up to the largest asked for (~30 ns a step for MultiplicativeLR, ~150 ns for a
# chain): past this it refuses rather than keep a request busy for minutes.
MAX_SCAN_STEP = 100_000_000
# steps (n,) -> (m (G, n) or (n,), restart mask (n,) or None): where the mask is set, m holds v(u) itself
Stepper = Callable[[Steps], tuple[Values, npt.NDArray[np.bool_] | None]]
# the LR (G, 1) at the step before a phase's boundary -> the phase's schedule
Continuation = Callable[[Column], Schedule]


def _segmented_cumprod(m: Values, reset: np.ndarray, carry: Column) -> Values:
    """Cumulative products of ``m`` along axis 1, restarting at ``reset`` positions; ``carry`` leads segment 0."""
    if not reset.any():
        return np.cumprod(np.concatenate([carry, m], axis=1), axis=1)[:, 1:]
    n = m.shape[1]
    starts = np.concatenate([[0], np.flatnonzero(reset)])
    if starts.size > 1 and starts[1] == 0:
        starts = starts[1:]
        carry = np.ones_like(carry)  # the chunk opens on a restart: nothing carries over
    lengths = np.diff(np.append(starts, n))
    width = int(lengths.max()) + 1
    if starts.size * width > 4 * n + 4096:  # ragged segments: a loop costs less than the padding
        out = np.empty_like(m)
        for k, (a, b) in enumerate(zip(starts, np.append(starts[1:], n), strict=True)):
            lead = carry if k == 0 else np.ones_like(carry)
            out[:, a:b] = np.cumprod(np.concatenate([lead, m[:, a:b]], axis=1), axis=1)[:, 1:]
        return out
    seg = np.repeat(np.arange(starts.size), lengths)
    pos = np.arange(n) - starts[seg] + 1
    padded = np.ones((m.shape[0], starts.size, width))
    padded[:, 0, 0] = carry[:, 0]
    padded[:, seg, pos] = m
    np.cumprod(padded, axis=2, out=padded)
    return padded[:, seg, pos]


def scan_product(
    steps: Steps, init: Column, step: Multiplier | Stepper, *, restarts: bool = False, start: int = 0
) -> Values:
    """``v(s)`` of shape ``(G, N)`` for ``v(start-1) = init``, ``v(u) = v(u-1) * m(u)`` (or ``m(u)`` at a restart).

    Every step must be ``>= start``. ``step(u)`` gives ``m`` for a chunk of consecutive steps (chunks start at
    ``start + k * CHUNK``, whatever is asked); with ``restarts=True`` it gives ``(m, mask)``. The products run
    left to right in float64, as torch's repeated ``lr * ratio`` does. Steps past ``MAX_SCAN_STEP`` are
    refused (ValueError): they would take minutes.
    """
    groups = init.shape[0]
    out = np.empty((groups, steps.shape[0]))
    if steps.size == 0:
        return out
    order = np.argsort(steps, kind="stable")
    ordered = steps[order]
    carry = init
    last = int(ordered[-1])
    if int(ordered[0]) < start:
        raise ValueError(f"a scan from step {start} cannot give step {int(ordered[0])}")
    if last > MAX_SCAN_STEP:
        raise ValueError(
            f"step {last} is past {MAX_SCAN_STEP:,}: this schedule has no closed form there (MultiplicativeLR, "
            "or a ChainedScheduler past a cosine restart) and would multiply out every step before it"
        )
    no_reset = np.zeros(min(CHUNK, last + 1 - start), dtype=bool)
    for lo in range(start, last + 1, CHUNK):
        hi = min(lo + CHUNK, last + 1)
        u = np.arange(lo, hi, dtype=np.int64)
        if restarts:
            m, mask = step(u)
            reset = no_reset[: hi - lo] if mask is None else mask
        else:
            m, reset = step(u), no_reset[: hi - lo]
        m = np.broadcast_to(m, (groups, hi - lo))
        v = _segmented_cumprod(np.asarray(m, dtype=np.float64), reset, carry)
        a, b = np.searchsorted(ordered, [lo, hi], side="left")
        out[:, order[a:b]] = v[:, ordered[a:b] - lo]
        carry = v[:, -1:]
    return out


def continued(link: Link) -> Continuation:
    """A MultiplicativeLR entered at a milestone: ``entry * f(0) * ... * f(k)`` (``link`` built ``first=True``)."""

    def build(entry: Column) -> Schedule:
        groups = int(entry.shape[0])

        def lr(steps: Steps) -> Values:
            return scan_product(steps, entry, link.ratio)

        def cost(steps: Steps) -> int:
            return scan_work(steps, groups, link.step_cost)

        return Schedule(lr=lr, num_groups=groups, cost=cost)

    return build


def join(phases: Sequence[Schedule | Continuation], boundaries: Sequence[int]) -> Schedule:
    """Phase ``i`` on ``[boundaries[i-1], boundaries[i])`` with steps relative to its start.

    ``total_steps``: the last boundary plus the last phase's ``total_steps`` (``None`` if it has none).
    """
    bounds = [int(b) for b in boundaries]
    if len(bounds) != len(phases) - 1:
        raise ValueError("need exactly one boundary fewer than phases")
    if any(b <= 0 for b in bounds) or any(b >= c for b, c in pairwise(bounds)):
        raise ValueError("boundaries must be positive and strictly increasing")
    if not isinstance(phases[0], Schedule):
        raise ValueError("the first phase cannot continue from an earlier one")
    built: list[Schedule] = []
    for i, phase in enumerate(phases):
        if isinstance(phase, Schedule):
            built.append(phase)
        else:
            before = _join_built(built, bounds[: i - 1]).lr(np.array([bounds[i - 1] - 1], dtype=np.int64))
            built.append(phase(np.ascontiguousarray(before)))
    return _join_built(built, bounds)


def _join_built(phases: Sequence[Schedule], bounds: Sequence[int]) -> Schedule:
    if len(phases) == 1:
        return phases[0]
    groups = phases[0].num_groups
    starts = np.array([0, *bounds], dtype=np.int64)
    edges = np.array(bounds, dtype=np.int64)
    last = phases[-1]
    total = None if last.total_steps is None else int(bounds[-1]) + last.total_steps

    def lr(steps: Steps) -> Values:
        # Sorted or not, each phase is evaluated at the steps of its own interval, relative to its start: the
        # two paths differ in how they select those steps, never in the values.
        out = np.empty((groups, steps.shape[0]))
        n = steps.shape[0]
        if n > 1 and bool(np.all(steps[1:] >= steps[:-1])):
            # sorted steps (the common case): each phase is a contiguous slice, no masks, no gathers
            cuts = [0, *np.searchsorted(steps, edges, side="left").tolist(), n]
            for i, phase in enumerate(phases):
                a, b = cuts[i], cuts[i + 1]
                if a < b:
                    local = steps[a:b] - starts[i] if i else steps[a:b]
                    out[:, a:b] = phase.lr(local)
            return out
        index = np.searchsorted(edges, steps, side="right")
        for i, phase in enumerate(phases):
            sel = index == i
            if sel.any():
                out[:, sel] = phase.lr(steps[sel] - starts[i])
        return out

    def cost(steps: Steps) -> int:
        index = np.searchsorted(edges, steps, side="right")
        return sum(phase.work(steps[index == i] - starts[i]) for i, phase in enumerate(phases))

    return Schedule(lr=lr, num_groups=groups, total_steps=total, cost=cost)


def chain(base: Column, links: Sequence[Link]) -> Schedule:
    """torch's ChainedScheduler over chainable links (each scheduler's ``step()`` in list order, same LR).

    Before the first restart ``r``: ``base * prod_j factor_j(s)`` (closed form), for every window. From ``r`` on:
    the scan ``v(u) = v(u-1) * prod_j ratio_j(u)`` started at ``r``, where at a restart of link ``c`` the LR
    becomes ``restart_c * prod_{j > c} ratio_j(u)`` (the links after ``c`` still multiply it in that step). At
    ``r`` itself the value is given outright, so nothing carries over from before it: the scan never needs
    the steps below ``r``, and which form gives a step depends on the step alone.
    ``total_steps``: the largest of the links' when every link has one, else ``None``.
    ``work``: the links' factors at the steps below ``r``, plus ``(max(step) - r + 1) * G * sum_j cost_j``.
    """
    if not links:
        raise ValueError("a chain needs at least one link")
    groups = int(base.shape[0])
    first_restart = min((lk.restart.first for lk in links if lk.restart is not None), default=None)
    totals = [lk.total_steps for lk in links]
    total = None if any(t is None for t in totals) else max(t for t in totals if t is not None)

    def closed(steps: Steps) -> Values:
        out = base * links[0].factor(steps)
        for lk in links[1:]:
            out = out * lk.factor(steps)
        return np.broadcast_to(out, (groups, steps.shape[0]))

    def step(u: Steps) -> tuple[Values, npt.NDArray[np.bool_] | None]:
        # m(u) = prod_j ratio_j(u); at a restart of link c: restart_c * prod_{j > c} ratio_j(u)
        factor: Values = np.ones((groups, u.shape[0]))
        value: Values | None = None
        mask: npt.NDArray[np.bool_] | None = None
        for lk in links:
            r = lk.ratio(u)
            factor = factor * r
            if lk.restart is not None:
                hit = lk.restart.mask(u)
                if hit.any():
                    value = np.where(hit, lk.restart.value, np.zeros(1) if value is None else value * r)
                    mask = hit if mask is None else mask | hit
                    continue
            if value is not None:
                value = value * r
        if mask is None or value is None:
            return factor, None
        return np.where(mask, value, factor), mask

    per_step = sum(lk.step_cost for lk in links)

    def lr(steps: Steps) -> Values:
        if first_restart is None:
            return np.array(closed(steps))
        late = steps >= first_restart
        if not late.any():
            return np.array(closed(steps))
        out = np.empty((groups, steps.shape[0]))
        early = ~late
        if early.any():
            out[:, early] = closed(steps[early])
        with np.errstate(divide="ignore", invalid="ignore"):
            # init is never used: step first_restart is a restart (mask set), so v there is m itself
            out[:, late] = scan_product(steps[late], np.ones((groups, 1)), step, restarts=True, start=first_restart)
        return out

    def cost(steps: Steps) -> int:
        if first_restart is None:
            return sum(lk.factor_work(steps, groups) for lk in links)
        early = steps[steps < first_restart]
        closed_work = sum(lk.factor_work(early, groups) for lk in links) if early.size else 0
        return closed_work + scan_work(steps, groups, per_step, start=first_restart)

    return Schedule(lr=lr, num_groups=groups, total_steps=total, cost=cost)
