"""The plan: a run's LR at any step, given its spec, its changes and its plateau reductions.

The rules (documented for users in the README):

- Changes apply in the order they were recorded, each from its ``from_step`` on. At step ``s`` the plan is the
  spec folded with every change whose ``from_step <= s``.
- ``replace`` swaps the schedule (``origin: restart`` evaluates it at ``s - from_step``) and ends any manual
  scale or ``set``; plateau reductions already made keep counting.
- ``scale`` multiplies the manual scale (and ends a ``set``).
- ``set`` holds a fixed LR from ``from_step`` to ``until_step`` (exclusive; null: until another replace,
  scale or set), whatever else applies.
- ``plateau`` replaces (or, with null, removes) the plateau rules: its state restarts, the scale it has built
  stays.
- Reductions multiply the plateau scale from their ``from_step`` on; after a group's first reduction its LR is
  ``max(schedule * manual * plateau_scale, min(schedule, min_lr))``: never below min_lr, unless the schedule
  itself is.

Because every change and reduction starts above the horizon at the time it is recorded, no later event can
alter a served step (until a resume explicitly re-opens steps).

Purity: each layer is folded from the records alone and evaluated at the steps of its own interval, and a pin
re-evaluates the plan as of its event at the pinned steps only; so the value at step ``s`` depends on the
records and ``s``, never on the other steps asked for (``tests/schemas/test_window_purity.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.schedule import Schedule, Values
from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.evaluate import apply_scale
from lrserve.schemas.specs.base import ScheduleSpecBase, schedule_type
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.wire import (
    PlannedChange,
    PlannedPin,
    PlannedReduction,
    PlateauChange,
    ReplaceChange,
    RunPlan,
    ScaleChange,
    SetChange,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ChangeRec:
    """A recorded change: ``change`` applies from ``from_step`` (see the rules above)."""

    seq: int
    from_step: int
    revision: int
    change: ReplaceChange | ScaleChange | SetChange | PlateauChange
    at: datetime
    actor: str | None
    reason: str | None


@dataclass(frozen=True)
class Reduction:
    metric_seq: int
    metric_step: int
    from_step: int
    multipliers: tuple[float, ...]


@dataclass(frozen=True)
class Pin:
    """Steps ``start..stop`` were applied by a worker (offline) with the plan as of event ``as_of``: they keep
    those values whatever was recorded after ``as_of``."""

    seq: int
    start: int
    stop: int
    as_of: int


@dataclass(frozen=True)
class Layer:
    """The plan in force over one interval of steps."""

    schedule: Schedule
    schedule_type: str
    origin: int
    manual: FloatArray
    set_lr: FloatArray | None
    plateau: PlateauSpec | None
    plateau_scale: FloatArray
    reduced: npt.NDArray[np.bool_]

    def lr(self, steps: IntArray) -> Values:
        if self.set_lr is not None:
            return np.repeat(self.set_lr.reshape(-1, 1), steps.shape[0], axis=1)
        raw = self.schedule.lr(steps - self.origin)
        g = raw.shape[0]
        scale = np.broadcast_to((self.manual * self.plateau_scale).reshape(g, 1), raw.shape)
        reduced = np.broadcast_to(self.reduced.reshape(g, 1), raw.shape)
        return apply_scale(self.plateau, raw, scale, reduced)

    def work(self, steps: IntArray) -> int:
        """Element-operations of ``lr(steps)``: the schedule's work, plus one per point and group for the scale."""
        g = int(self.manual.shape[0])
        if self.set_lr is not None:
            return int(steps.shape[0]) * g
        return self.schedule.work(steps - self.origin) + int(steps.shape[0]) * g

    def momentum(self, steps: IntArray) -> Values | None:
        return None if self.schedule.momentum is None else self.schedule.momentum(steps - self.origin)

    @property
    def scale(self) -> FloatArray:
        return self.manual * self.plateau_scale

    def end_step(self) -> int | None:
        """First step past the schedule's defined steps (None: unbounded; a held ``set`` never ends)."""
        if self.set_lr is not None or self.schedule.total_steps is None:
            return None
        return self.origin + self.schedule.total_steps


ScheduleBuilder = Callable[[ScheduleSpecBase], Schedule]


class Plan:
    """Evaluates the folded plan at arrays of steps (vectorized within each interval between breakpoints)."""

    def __init__(
        self,
        spec: RunSpec,
        changes: Sequence[ChangeRec],
        reductions: Sequence[Reduction],
        build: ScheduleBuilder,
        pins: Sequence[Pin] = (),
    ) -> None:
        self.spec = spec
        self.changes = list(changes)
        self.reductions = list(reductions)
        self.pins = list(pins)
        self._build = build
        self.num_groups = len(spec.param_groups)
        points = {0}
        for c in self.changes:
            points.add(c.from_step)
            if isinstance(c.change, SetChange) and c.change.until_step is not None:
                points.add(c.change.until_step)
        points.update(r.from_step for r in self.reductions)
        self.breakpoints: IntArray = np.array(sorted(points), dtype=np.int64)
        self._layers: dict[int, Layer] = {}

    def layer_at(self, step: int) -> Layer:
        start = int(self.breakpoints[np.searchsorted(self.breakpoints, step, side="right") - 1])
        layer = self._layers.get(start)
        if layer is None:
            layer = self._fold(start)
            self._layers[start] = layer
        return layer

    def _fold(self, step: int) -> Layer:
        g = self.num_groups
        schedule_spec: ScheduleSpecBase = self.spec.schedule
        origin = 0
        manual = np.ones(g)
        set_lr: FloatArray | None = None
        plateau = self.spec.effective_plateau()
        for rec in self.changes:
            if rec.from_step > step:
                continue
            ch = rec.change
            if isinstance(ch, ReplaceChange):
                schedule_spec = ch.schedule
                origin = rec.from_step if ch.origin == "restart" else 0
                manual = np.ones(g)
                set_lr = None
            elif isinstance(ch, ScaleChange):
                manual = manual * ch.factor
                set_lr = None
            elif isinstance(ch, SetChange):
                until = ch.until_step
                set_lr = (
                    np.broadcast_to(np.asarray(ch.lr, dtype=np.float64), (g,)).copy()
                    if until is None or step < until
                    else None
                )
            elif isinstance(ch, PlateauChange):
                plateau = ch.plateau
        plateau_scale = np.ones(g)
        reduced = np.zeros(g, dtype=bool)
        for r in self.reductions:
            if r.from_step <= step:
                mult = np.asarray(r.multipliers)
                plateau_scale = plateau_scale * mult
                reduced |= mult != 1.0
        return Layer(
            schedule=self._build(schedule_spec),
            schedule_type=schedule_type(schedule_spec),
            origin=origin,
            manual=manual,
            set_lr=set_lr,
            plateau=plateau,
            plateau_scale=plateau_scale,
            reduced=reduced,
        )

    def values(self, steps: IntArray) -> tuple[Values, Values | None]:
        """``(lr, momentum)`` of shape ``(G, N)``; momentum is None when no layer cycles it (NaN where some don't).

        A schedule that cannot be evaluated at these steps (e.g. a scan refusing a step past its limit) raises
        ``InvalidInput`` naming the steps, not a bare ``ValueError``.
        """
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught below, as non-finite values
                lr, momentum = self._unpinned_values(steps)
        except ValueError as exc:
            raise InvalidInput(
                detail=f"the schedule cannot be evaluated at these steps: {exc}",
                errors=[FieldError(("step",), str(exc))],
            ) from None
        finite = np.isfinite(lr)
        if not finite.all():
            # Parameters at the edge of float64 (e.g. alpha ~ 1e307) can overflow: never serve a NaN/inf LR.
            bad = int(steps[np.argmax(~finite.all(axis=0))])
            raise InvalidInput(
                detail=f"the schedule gives a non-finite LR at step {bad}: its parameters overflow float64",
                errors=[FieldError(("spec", "schedule"), f"non-finite LR at step {bad}")],
            )
        for pin in self.pins:
            inside = (steps >= pin.start) & (steps <= pin.stop)
            if not inside.any():
                continue
            then = self._as_of(pin)
            pinned_lr, pinned_mom = then.values(steps[inside])
            lr[:, inside] = pinned_lr
            if pinned_mom is not None or momentum is not None:
                if momentum is None:
                    momentum = np.full(lr.shape, np.nan)
                momentum[:, inside] = np.nan if pinned_mom is None else pinned_mom
        return lr, momentum

    def work(self, steps: IntArray) -> int:
        """Element-operations ``values(steps)`` will do, estimated without doing them.

        ``sum over intervals k of layer_k.work(steps in k)`` (a closed form: ``N_k * G``, doubled for the
        scale; a scan: ``(max step - anchor + 1) * G * cost per step``; see ``Schedule.work``), plus, for each
        pin that covers some of the steps, the work of the plan as of the pin at those steps.
        """
        total = 0
        idx = np.searchsorted(self.breakpoints, steps, side="right") - 1
        for k in np.unique(idx):
            total += self.layer_at(int(self.breakpoints[k])).work(steps[idx == k])
        for pin in self.pins:
            inside = (steps >= pin.start) & (steps <= pin.stop)
            if inside.any():
                total += self._as_of(pin).work(steps[inside])
        return total

    def _as_of(self, pin: Pin) -> Plan:
        """The plan as of a pin's event: the changes and reductions recorded up to it."""
        return Plan(
            self.spec,
            [c for c in self.changes if c.seq <= pin.as_of],
            [r for r in self.reductions if r.metric_seq <= pin.as_of],
            self._build,
        )

    def _unpinned_values(self, steps: IntArray) -> tuple[Values, Values | None]:
        n = steps.shape[0]
        lr = np.empty((self.num_groups, n))
        momentum: Values | None = None
        idx = np.searchsorted(self.breakpoints, steps, side="right") - 1
        for k in np.unique(idx):
            mask = idx == k
            layer = self.layer_at(int(self.breakpoints[k]))
            part = steps if mask.all() else steps[mask]
            lr[:, mask] = layer.lr(part)
            mom = layer.momentum(part)
            if mom is not None:
                if momentum is None:
                    momentum = np.full((self.num_groups, n), np.nan)
                momentum[:, mask] = mom
        return lr, momentum


def schedule_builder(base_lrs: FloatArray) -> ScheduleBuilder:
    """A ``build`` for ``Plan``: each distinct schedule spec is built once for these base LRs."""
    cache: dict[str, Schedule] = {}

    def build(spec: ScheduleSpecBase) -> Schedule:
        key = spec.model_dump_json()
        schedule = cache.get(key)
        if schedule is None:
            schedule = cache[key] = spec.to_schedule(base_lrs)
        return schedule

    return build


def plan_to_wire(run_id: str, plan: Plan, *, horizon: int, incarnation: int, revision: int, last_seq: int) -> RunPlan:
    """The plan as ``GET /v1/runs/{id}/plan`` sends it (``plan_from_wire`` is its inverse)."""
    return RunPlan(
        run_id=run_id,
        spec=plan.spec,
        changes=[
            PlannedChange(
                seq=c.seq,
                from_step=c.from_step,
                revision=c.revision,
                change=c.change,
                at=c.at,
                actor=c.actor,
                reason=c.reason,
            )
            for c in plan.changes
        ],
        reductions=[
            PlannedReduction(
                metric_seq=r.metric_seq,
                metric_step=r.metric_step,
                from_step=r.from_step,
                multipliers=list(r.multipliers),
            )
            for r in plan.reductions
        ],
        pins=[PlannedPin(seq=p.seq, start=p.start, stop=p.stop, as_of=p.as_of) for p in plan.pins],
        horizon=horizon,
        incarnation=incarnation,
        revision=revision,
        last_seq=last_seq,
    )


def plan_from_wire(wire: RunPlan) -> Plan:
    """A ``Plan`` that evaluates a run's LRs exactly as the server does (a client's offline fallback)."""
    changes = [ChangeRec(c.seq, c.from_step, c.revision, c.change, c.at, c.actor, c.reason) for c in wire.changes]
    reductions = [Reduction(r.metric_seq, r.metric_step, r.from_step, tuple(r.multipliers)) for r in wire.reductions]
    pins = [Pin(p.seq, p.start, p.stop, p.as_of) for p in wire.pins]
    return Plan(wire.spec, changes, reductions, schedule_builder(wire.spec.base_lrs()), pins)
