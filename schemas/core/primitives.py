"""torch's closed-form schedules as small factories: validate the arguments, return pure closures over steps.

Neutral vocabulary (the torch names live in ``specs/torch.py``): ``every`` (StepLR's ``step_size``),
``boundaries`` (milestones), ``horizon`` (``total_iters``, ``T_max``), ``floor`` (``eta_min``).

Most torch schedulers are *chainable*: their ``step()`` multiplies the optimizer's current LR by a ratio that
depends on the step only. Such a scheduler is a ``Link``:

* ``ratio(u)``: the multiplier its ``u``-th step applies (``u = 0`` is the step the constructor makes);
* ``factor(s)``: the product of ``ratio(0..s)``, in closed form, so a lone link is ``base * factor(s)`` and a
  ChainedScheduler of links is ``base * prod factor_j(s)`` (``combinators.chain``);
* ``restart``: steps where the scheduler sets the LR outright instead of multiplying it (CosineAnnealingLR
  past ``T_max``), which a chain has to honour.

The closed forms agree with torch's step-by-step products to a few ulps per step (torch multiplies ``s`` times
where we raise to the power ``s``); see ``tests/schemas/test_torch_parity.py`` for the bounds.

    >>> import numpy as np
    >>> scaled(np.array([[0.1]]), step_decay(every=2, gamma=0.5)).lr(np.arange(5)).round(4).tolist()
    [[0.1, 0.1, 0.05, 0.05, 0.025]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.expression import expression_cost
from lrserve.schemas.core.schedule import Column, Schedule, Steps, Values, points_work, scan_work

# steps (N,) -> factors broadcastable against a (G, 1) column: shape (N,) or (G, N)
Multiplier = Callable[[Steps], Values]
ExpressionFn = Callable[[Steps], Values]


@dataclass(frozen=True)
class Restart:
    """Steps ``first, first + period, ...`` at which a link sets the LR to ``value`` (a ``(G, 1)`` column)."""

    first: int
    period: int
    value: Column

    def mask(self, steps: Steps) -> npt.NDArray[np.bool_]:
        hit: npt.NDArray[np.bool_] = (steps >= self.first) & ((steps - self.first) % self.period == 0)
        return hit


@dataclass(frozen=True)
class Link:
    """A chainable torch scheduler: what each of its steps does to the current LR (see the module docstring).

    ``factor`` is exact only before ``restart.first``; past it only ``ratio`` and ``restart`` describe torch.
    ``step_cost``: operations per element of ``ratio`` (an expression's node count); ``scan``: ``factor`` is a
    scan over every step from 0 (MultiplicativeLR), not a closed form.
    """

    factor: Multiplier
    ratio: Multiplier
    restart: Restart | None = None
    total_steps: int | None = None
    step_cost: int = 1
    scan: bool = False

    def factor_work(self, steps: Steps, groups: int) -> int:
        """Element-operations of ``factor(steps)`` for ``groups`` groups (see ``Schedule.work``)."""
        if self.scan:
            return scan_work(steps, groups, self.step_cost)
        return points_work(steps, groups, self.step_cost)


def scaled(base: Column, link: Link) -> Schedule:
    """The schedule of one link on its own: ``base * factor(s)`` (the link must not restart)."""
    if link.restart is not None:
        raise ValueError("a restarting link has no closed form; build it with its own factory")
    factor = link.factor
    groups = int(base.shape[0])

    def lr(steps: Steps) -> Values:
        return base * factor(steps)

    def cost(steps: Steps) -> int:
        return link.factor_work(steps, groups)

    return Schedule(lr=lr, num_groups=groups, total_steps=link.total_steps, cost=cost)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _powers(gamma: float, exponents: Values) -> Values:
    # gamma > 1 is allowed (torch allows it: a growing LR); far enough out it overflows to inf, as torch's
    # repeated multiplication does, without numpy's warning
    with np.errstate(over="ignore"):
        out: Values = np.power(gamma, exponents)
    return out


_POWER_TABLE = 4097


def step_decay(every: int, gamma: float) -> Link:
    """StepLR: ``gamma ** (s // every)``; torch multiplies by ``gamma`` at every non-zero multiple of ``every``."""
    _require(every >= 1, "every must be >= 1")
    # A table of powers and a gather beat a float power per element. The table is fixed here, not sized by
    # the query, so which of the two computes a step's value depends on the step alone.
    table = _powers(gamma, np.arange(_POWER_TABLE, dtype=np.float64))

    def factor(steps: Steps) -> Values:
        k = steps // every
        inside = k < _POWER_TABLE
        if inside.all():
            return table[k]
        out = _powers(gamma, k.astype(np.float64))
        out[inside] = table[k[inside]]
        return out

    def ratio(steps: Steps) -> Values:
        return np.where((steps > 0) & (steps % every == 0), gamma, 1.0)

    return Link(factor=factor, ratio=ratio)


def multistep(boundaries: Sequence[int], gamma: float) -> Link:
    """MultiStepLR: ``gamma ** (number of boundaries <= s)``: the drop applies *at* the boundary step."""
    bounds = np.asarray(boundaries, dtype=np.int64)
    _require(bool(np.all(np.diff(bounds) > 0)), "boundaries must be strictly increasing")
    powers = _powers(gamma, np.arange(bounds.size + 1, dtype=np.float64))

    def factor(steps: Steps) -> Values:
        return powers[np.searchsorted(bounds, steps, side="right")]

    def ratio(steps: Steps) -> Values:
        return np.where(np.isin(steps, bounds), gamma, 1.0)

    return Link(factor=factor, ratio=ratio)


def constant_factor(factor: float, until: int) -> Link:
    """ConstantLR: ``factor`` for ``s < until``, then 1 (torch multiplies by ``1 / factor`` at ``until``)."""
    _require(0.0 < factor <= 1.0, "factor must be in (0, 1]")
    _require(until >= 1, "until must be >= 1")
    restored = factor * (1.0 / factor)  # what torch's two multiplications leave, to the last bit

    def fac(steps: Steps) -> Values:
        return np.where(steps < until, factor, restored)

    def ratio(steps: Steps) -> Values:
        return np.where(steps == 0, factor, np.where(steps == until, 1.0 / factor, 1.0))

    return Link(factor=fac, ratio=ratio, total_steps=until + 1)


def linear_factor(start: float, end: float, horizon: int) -> Link:
    """LinearLR: ``start + (end - start) * min(s, horizon) / horizon``."""
    _require(0.0 < start <= 1.0, "start must be in (0, 1]")
    _require(0.0 <= end <= 1.0, "end must be in [0, 1]")
    _require(horizon >= 1, "horizon must be >= 1")
    delta = end - start
    # From the horizon on, torch holds ramp(T - 1) * its ratio at T: with end = 0 that ratio is 1 - d/d' for two
    # roundings of the same number, which leaves ~1e-16 of the LR rather than 0. Hold exactly what torch holds.
    held = (start + delta * (horizon - 1) / horizon) * (1.0 + delta / (horizon * start + (horizon - 1) * delta))

    def factor(steps: Steps) -> Values:
        return np.where(steps < horizon, start + delta * steps / horizon, held)

    def ratio(steps: Steps) -> Values:
        # torch's chainable formula, to the letter; the denominator is 0 only past the horizon (end = 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = 1.0 + delta / (horizon * start + (steps - 1) * delta)
        return np.where(steps == 0, start, np.where(steps > horizon, 1.0, r))

    return Link(factor=factor, ratio=ratio, total_steps=horizon + 1)


def exponential(gamma: float) -> Link:
    """ExponentialLR: ``gamma ** s``."""

    def factor(steps: Steps) -> Values:
        return _powers(gamma, steps.astype(np.float64))

    def ratio(steps: Steps) -> Values:
        return np.where(steps == 0, 1.0, gamma)

    return Link(factor=factor, ratio=ratio)


def polynomial(horizon: int, power: float) -> Link:
    """PolynomialLR: ``(1 - min(s, horizon) / horizon) ** power``; 0 from ``horizon`` on when power > 0."""
    _require(horizon >= 1, "horizon must be >= 1")
    _require(power >= 0.0, "power must be >= 0")

    def factor(steps: Steps) -> Values:
        return np.power(1.0 - np.minimum(steps, horizon) / horizon, power)

    def ratio(steps: Steps) -> Values:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.power((1.0 - steps / horizon) / (1.0 - (steps - 1) / horizon), power)
        return np.where((steps == 0) | (steps > horizon), 1.0, r)

    return Link(factor=factor, ratio=ratio, total_steps=horizon + 1)


def _cos_term(steps: Steps, horizon: int) -> Values:
    # 1 + cos(pi * s / T), with torch's operation order ((pi * s) / T) so the terms torch divides cancel exactly;
    # in place: one buffer instead of four
    x = np.multiply(steps, np.pi, dtype=np.float64)
    x /= horizon
    np.cos(x, out=x)
    x += 1.0
    return x


REPLAYED_STEPS = 64


def cosine_annealing(base: Column, horizon: int, floor: Column) -> Schedule:
    """CosineAnnealingLR as torch's recursion computes it, in closed form.

    For ``s <= T``: ``floor + (base - floor) * (1 + cos(pi s / T)) / 2``. At ``s = T`` the LR is ``floor``
    exactly; torch's step ``T + 1`` then adds ``(base - floor) * (1 - cos(pi / T)) / 2`` (its special case for
    the zero denominator) and goes on multiplying ``lr - floor`` by the ratio of consecutive cosine terms
    ``c(s) = 1 + cos(pi s / T)``, so past ``T`` the curve rises and falls with period ``2T``, anchored at each
    restart step ``a = T + 1 + 2Tk``::

        lr(s) = floor + (lr(a + J) - floor) * c(s) / c(a + J)

    The first ``J = 64`` steps after each anchor are replayed step by step (vectorized over the periods, not a
    loop over the curve): there ``lr - floor`` is ~``(pi/T)**2`` of the amplitude, so torch's rounding of
    ``+ floor`` at each step is amplified up to ~T**2 times on the way back up (~1e-9 relative for T = 12000);
    replaying those steps reproduces torch's rounding where it matters. ``total_steps`` is ``T + 1`` (the LR
    reaches ``floor`` at step ``T``); past it we follow torch rather than hold.
    """
    _require(horizon >= 1, "horizon must be >= 1")
    amp = base - floor
    anchor = floor + amp * (1.0 - np.cos(np.pi / horizon)) / 2  # torch: lr (= floor) + (base - floor) * ... / 2
    period = 2 * horizon
    replay = min(REPLAYED_STEPS, period - 2)
    groups = int(base.shape[0])

    def late(s: Steps, c: Values) -> Values:
        k = (s - horizon - 1) // period
        ks, kidx = np.unique(k, return_inverse=True)
        starts = horizon + 1 + period * ks  # one anchor per period present
        walk = np.empty((amp.shape[0], ks.size, replay + 1))
        x = np.broadcast_to(anchor, (amp.shape[0], ks.size)).copy()
        walk[:, :, 0] = x
        prev = _cos_term(starts, horizon)
        for j in range(1, replay + 1):  # torch's own step, J times, for every period at once
            cur = _cos_term(starts + j, horizon)
            x = cur / prev * (x - floor) + floor
            walk[:, :, j] = x
            prev = cur
        offset = s - starts[kidx]
        direct = offset <= replay
        out = floor + (walk[:, kidx, replay] - floor) * (c / prev[kidx])
        out[:, direct] = walk[:, kidx[direct], offset[direct]]
        return out

    def lr(steps: Steps) -> Values:
        c = _cos_term(steps, horizon)
        out = amp * c  # floor + amp * c / 2, in place
        out /= 2
        out += floor
        smax = int(steps.max()) if steps.size else 0
        if smax > horizon:
            past = steps > horizon
            out[:, past] = late(steps[past], c[past])
        return out

    def cost(steps: Steps) -> int:
        # the closed form at every point, plus the replay of each period past T the steps reach
        past = steps[steps > horizon]
        periods = 0 if past.size == 0 else min(past.size, (int(past.max()) - horizon - 1) // period + 1)
        return points_work(steps, groups) + periods * (replay + 1) * groups

    return Schedule(lr=lr, num_groups=groups, total_steps=horizon + 1, cost=cost)


def cosine_link(base: Column, horizon: int) -> Link:
    """CosineAnnealingLR with ``eta_min = 0`` as a link: a pure multiplier up to ``T``, then restarts.

    torch's step ``T + 1 + 2Tk`` adds ``base * (1 - cos(pi/T)) / 2`` to an LR that step ``T + 2Tk`` made 0,
    which (in a chain) discards what the other schedulers had multiplied in.
    """
    _require(horizon >= 1, "horizon must be >= 1")
    anchor = base * (1.0 - np.cos(np.pi / horizon)) / 2

    def factor(steps: Steps) -> Values:
        return _cos_term(steps, horizon) / 2

    def ratio(steps: Steps) -> Values:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = _cos_term(steps, horizon) / _cos_term(steps - 1, horizon)
        return np.where(steps == 0, 1.0, r)

    return Link(factor=factor, ratio=ratio, restart=Restart(horizon + 1, 2 * horizon, anchor), total_steps=horizon + 1)


def _stack(fns: Sequence[ExpressionFn], steps: Steps) -> Values:
    if len(fns) == 1:
        return np.asarray(fns[0](steps), dtype=np.float64)
    return np.stack([np.asarray(f(steps), dtype=np.float64) for f in fns])


def lambda_schedule(base: Column, fns: Sequence[ExpressionFn]) -> Schedule:
    """LambdaLR: ``base * f(s)``, with one ``f`` for every group or one per group."""
    _require(len(fns) in (1, base.shape[0]), "give one function, or one per param group")
    groups = int(base.shape[0])
    nodes = max(expression_cost(f) for f in fns)

    def lr(steps: Steps) -> Values:
        return base * _stack(fns, steps)

    def cost(steps: Steps) -> int:
        return points_work(steps, groups, nodes)

    return Schedule(lr=lr, num_groups=groups, cost=cost)


def multiplicative(fns: Sequence[ExpressionFn], num_groups: int, *, first: bool = False) -> Link:
    """MultiplicativeLR: ``f(1) * f(2) * ... * f(s)`` (torch's constructor step does not call ``f``).

    ``first=True`` multiplies in ``f(0)`` as well: what torch does when SequentialLR enters the scheduler at a
    milestone (``_update_lr(0)`` has no closed form to fall back on, so it calls ``get_lr`` on the current LR).
    The product has no closed form: ``factor`` is a cumulative product over ``0..max(step)`` (chunked).
    """
    from lrserve.schemas.core.combinators import scan_product

    _require(len(fns) in (1, num_groups), "give one function, or one per param group")

    def ratio(steps: Steps) -> Values:
        values = _stack(fns, steps)
        return values if first else np.where(steps == 0, 1.0, values)

    def factor(steps: Steps) -> Values:
        return scan_product(steps, np.ones((num_groups, 1)), ratio)

    return Link(factor=factor, ratio=ratio, step_cost=max(expression_cost(f) for f in fns), scan=True)
