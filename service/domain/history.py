"""Folding a run's events into its state: the plan, the plateau state and what still counts.

The fold is a pure function of the event list (invariant 1: same history, same numbers), processed in the
order events were recorded; ``RunState.extend(events)`` continues from where the state left off.

Which metrics count: a metric at step ``m`` stops counting when a later ``resume`` declares step ``k <= m`` as
the next step to train (the work that produced it will be redone). Plateau rules process counting metrics in
the order they were recorded; a ``plateau`` change restarts the state with its rules. A resume replays the
plateau over what still counts, keeping the reductions already in force below ``k`` (see ``_resume``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from lrserve.schemas.core import plateau as plateau_core
from lrserve.schemas.core.schedule import Schedule
from lrserve.schemas.plan import ChangeRec, Pin, Plan, Reduction, ScheduleBuilder, schedule_builder
from lrserve.schemas.specs.base import ScheduleSpecBase
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.wire import PlateauChange
from lrserve.service.domain.events import MetricRec, ResumeRec, parse
from lrserve.service.store.base import EventRecord


@dataclass
class RunState:
    """Everything derived from a run's history. Mutated only by ``extend`` (callers hold the run's lock)."""

    spec: RunSpec
    last_seq: int = 1
    changes: list[ChangeRec] = field(default_factory=list)
    metrics: list[MetricRec] = field(default_factory=list)
    counted: list[MetricRec] = field(default_factory=list)
    resumes: list[ResumeRec] = field(default_factory=list)
    reductions: list[Reduction] = field(default_factory=list)
    pins: list[Pin] = field(default_factory=list)
    counting: dict[tuple[int, str], MetricRec] = field(default_factory=dict)
    plateau: PlateauSpec | None = None
    plateau_state: plateau_core.PlateauState | None = None
    memo: dict[tuple[str, int], object] = field(default_factory=dict)  # derived values keyed by last_seq
    _build: ScheduleBuilder | None = None
    _plan: Plan | None = None

    def __post_init__(self) -> None:
        self.plateau = self.spec.effective_plateau()
        self.plateau_state = None if self.plateau is None else plateau_core.initial_state(self.plateau)

    # ---- reading ------------------------------------------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        if self._plan is None:
            self._plan = Plan(self.spec, self.changes, self.reductions, self.build, self.pins)
        return self._plan

    def build(self, spec: ScheduleSpecBase) -> Schedule:
        if self._build is None:
            self._build = schedule_builder(self.spec.base_lrs())
        return self._build(spec)

    @property
    def revision(self) -> int:
        return self.changes[-1].revision if self.changes else 0

    @property
    def incarnation(self) -> int:
        return self.resumes[-1].incarnation if self.resumes else 1

    def counting_metric(self, step: int, name: str) -> MetricRec | None:
        return self.counting.get((step, name))

    def last_metric(self) -> MetricRec | None:
        return self.metrics[-1] if self.metrics else None

    # ---- folding ------------------------------------------------------------------------------------------------

    def extend(self, events: Iterable[EventRecord]) -> list[Reduction]:
        """Fold new events (seq > last_seq, in order). Returns the reductions the new metrics triggered."""
        new: list[Reduction] = []
        for event in events:
            if event.seq <= self.last_seq:
                continue
            self.last_seq = event.seq
            rec = parse(event)
            if isinstance(rec, ChangeRec):
                self._apply_change(rec)
            elif isinstance(rec, MetricRec):
                self.metrics.append(rec)
                self.counted.append(rec)
                self.counting[(rec.step, rec.name)] = rec
                reduction = self._observe(rec, floor=0)
                if reduction is not None:
                    new.append(reduction)
            elif isinstance(rec, Pin):
                self.pins.append(rec)
                self._plan = None
            elif isinstance(rec, ResumeRec):
                self.resumes.append(rec)
                self._resume(rec.step)
                new = []
        return new

    def _apply_change(self, rec: ChangeRec) -> None:
        self.changes.append(rec)
        self._plan = None
        if isinstance(rec.change, PlateauChange):
            self._restart_plateau(rec.change.plateau)

    def _restart_plateau(self, plateau: PlateauSpec | None) -> None:
        self.plateau = plateau
        self.plateau_state = None if plateau is None else plateau_core.initial_state(plateau)

    def _observe(self, metric: MetricRec, floor: int) -> Reduction | None:
        """Feed a counting metric to the plateau; a reduction that would start below ``floor`` is not made."""
        if self.plateau is None or self.plateau_state is None or metric.name != self.plateau.metric:
            return None
        lr_now = self.plan.values(np.array([metric.step], dtype=np.int64))[0][:, 0]
        self.plateau_state, mult = plateau_core.observe(self.plateau, self.plateau_state, metric.value, lr_now)
        if np.all(mult == 1.0) or metric.applies_from < floor:
            return None
        reduction = Reduction(metric.seq, metric.step, metric.applies_from, tuple(float(m) for m in mult))
        self.reductions.append(reduction)
        self._plan = None
        return reduction

    def _resume(self, step: int) -> None:
        """The job restarts at ``step``: steps below it stay as served, later ones are planned anew.

        Metrics at steps >= ``step`` (all from earlier incarnations) stop counting, and the plateau is replayed
        from the metrics that remain. Reductions already in force below ``step`` are part of the frozen past and
        stay; the replay may only add reductions that start at ``step`` or later.
        """
        pinned = [r for r in self.reductions if r.from_step < step]
        self.pins = [replace(p, stop=min(p.stop, step - 1)) for p in self.pins if p.start < step]
        self.counted = [m for m in self.counted if m.step < step]
        self.counting = {(m.step, m.name): m for m in self.counted}
        self.reductions = pinned
        self._plan = None
        self._restart_plateau(self.spec.effective_plateau())
        changes, self.changes = self.changes, []
        timeline: list[ChangeRec | MetricRec] = sorted([*changes, *self.counted], key=lambda r: r.seq)
        for rec in timeline:
            if isinstance(rec, ChangeRec):
                self._apply_change(rec)
            else:
                self._observe(rec, floor=step)


def fold(spec: RunSpec, events: Iterable[EventRecord]) -> RunState:
    state = RunState(spec=spec)
    state.extend(events)
    return state
