"""RunService: the one entry point of the HTTP layer into the run model (no FastAPI, no SQL here).

Each write is one store transaction on the run (serialized across processes): catch up with events recorded
elsewhere, check the request against the folded state, append events, commit. The folded state is cached per
run; a served (frozen) step is answered from the cache without touching the store — safe because nothing
recorded later can change a step at or below the horizon within an incarnation (see ``domain.plan``).
On a shared store (PostgreSQL replicas) every call but the frozen read re-reads the run row first; the frozen
read trusts memory only while the store's coherence is fresh: another replica's delete, re-create (a new
generation) or resume reaches this cache within the staleness bound (``store.coherence``).
"""

from __future__ import annotations

import copy
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np

from lrserve.schemas.core import lrfinder
from lrserve.schemas.errors import (
    Conflict,
    FieldError,
    HorizonConflict,
    InvalidInput,
    LrserveError,
    MetricConflict,
    PreconditionFailed,
    RevisionConflict,
    RunExists,
    RunNotFound,
    StaleIncarnation,
)
from lrserve.schemas.evaluate import estimate_work
from lrserve.schemas.plan import ChangeRec, Plan, plan_to_wire
from lrserve.schemas.specs.base import schedule_type
from lrserve.schemas.specs.plateau import ReduceLROnPlateau
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.validation import check_values, validate_model
from lrserve.schemas.wire import (
    MAX_CURVE_POINTS,
    AppliedIn,
    AppliedResult,
    ChangeIn,
    ChangeResult,
    ClrBoundsPublic,
    CurveGroups,
    CurveRequest,
    Event,
    EventPage,
    FollowupIn,
    Marker,
    MetricBatch,
    MetricPublic,
    MetricsResult,
    PlateauChange,
    PlateauStatePublic,
    RangeTestPlot,
    ReductionPublic,
    ReplaceChange,
    ResumeIn,
    ResumeResult,
    RulePick,
    RunCreate,
    RunPage,
    RunPlan,
    RunPublic,
    RunSummary,
    SetChange,
    SuggestionPublic,
)
from lrserve.service.budget import DEFAULT_CACHE_BYTES, Budget
from lrserve.service.domain import events as ev
from lrserve.service.domain import rangetest
from lrserve.service.domain.history import RunState
from lrserve.service.domain.views import CurveData, LeaseData, groups_of
from lrserve.service.observability import Telemetry
from lrserve.service.store.base import EventRecord, NewEvent, RunRecord, RunTransaction, Store, iter_pages
from lrserve.service.windows import Window, WindowCache, WindowKey

T = TypeVar("T")
R = TypeVar("R")


_serials = itertools.count(1)
#: element-operations a window may cost to be evaluated on the event loop (~0.1 ms; ``lease_cached``)
LOOP_WORK = 20_000
#: steps compared at a time by ``applied`` (memory: 2 plans x groups x 8 bytes x this)
APPLIED_CHUNK = 1 << 16


@dataclass
class _Entry:
    run: RunRecord
    state: RunState
    lock: threading.RLock = field(default_factory=threading.RLock)
    #: unique per load: the evaluated windows of this entry are keyed by it (``service.windows``)
    serial: int = field(default_factory=lambda: next(_serials))
    #: False once a write on it failed: it may hold what did not commit (a horizon, events), so whoever still
    #: holds it must load the run again (``_locked``, ``_write``, ``lease_cached``).
    valid: bool = True


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class RunService:
    def __init__(
        self,
        store: Store,
        *,
        presets: Mapping[str, dict[str, Any]] | None = None,
        telemetry: Telemetry | None = None,
        budget: Budget | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._store = store
        self._budget = budget if budget is not None else Budget()
        self._windows = WindowCache(cache_bytes)
        #: counters and info lines (``observability``); fed after each commit, never inside a transaction
        self._telemetry = telemetry if telemetry is not None else Telemetry()
        self._presets = dict(presets or {})
        self._cache: dict[str, _Entry] = {}
        self._cache_lock = threading.Lock()
        #: bumped by every invalidation: a load that read the store before one must not cache what it read
        self._epoch = 0
        #: other replicas' creates, deletes and resumes reach ``_run_changed`` (``store.coherence``)
        self._coherence = store.watch()
        self._coherence.subscribe(self._run_changed, self._forget_all)

    # ---- loading and the write boundary -------------------------------------------------------------------------

    def _load(self, run_id: str) -> _Entry:
        with self._cache_lock:
            entry = self._cache.get(run_id)
        if entry is not None:
            return entry
        epoch = self._epoch
        run = self._store.get_run(run_id)
        if run is None:
            raise RunNotFound(detail=f"no run {run_id!r}")
        state = RunState(spec=RunSpec.model_validate(run.spec))
        state.extend(e for e in iter_pages(self._store, run_id) if e.seq > 1)
        entry = _Entry(run=run, state=state)
        with self._cache_lock:
            if self._epoch != epoch:
                return entry  # read before an invalidation: good for this request, not for the cache
            return self._cache.setdefault(run_id, entry)

    def _forget(self, run_id: str) -> None:
        with self._cache_lock:
            self._epoch += 1
            entry = self._cache.pop(run_id, None)
        if entry is not None:
            entry.valid = False  # whoever holds it loads the run again

    def _run_changed(self, run_id: str) -> None:
        """Another process created, deleted or resumed ``run_id``: nothing cached of it may be served again."""
        self._forget(run_id)

    def _forget_all(self) -> None:
        with self._cache_lock:
            self._epoch += 1
            entries, self._cache = list(self._cache.values()), {}
        for entry in entries:
            entry.valid = False

    @staticmethod
    def _same_run(a: RunRecord, b: RunRecord) -> bool:
        """The same generation of a run (a namesake created after a delete is another)."""
        return a.generation == b.generation and a.created_at == b.created_at

    def _refresh(self, run_id: str) -> _Entry:
        """The entry brought up to date with the store (on a shared store; a no-op cost otherwise)."""
        entry = self._load(run_id)
        if not self._store.shared:
            return entry
        run = self._store.get_run(run_id)
        if run is None:
            self._forget(run_id)
            raise RunNotFound(detail=f"no run {run_id!r}")
        with entry.lock:
            if not self._same_run(run, entry.run):
                self._forget(run_id)
                return self._load(run_id)
            if run.last_seq > entry.state.last_seq:
                entry.state.extend(self._store.events(run_id, after=entry.state.last_seq))
            entry.run = run
        return entry

    @contextmanager
    def _locked(self, run_id: str) -> Iterator[_Entry]:
        """The run's entry, up to date and locked: never one that a failed write left behind (waiting for the
        lock, a caller may have held it while that write failed)."""
        while True:
            entry = self._refresh(run_id)
            with entry.lock:
                if entry.valid:
                    yield entry
                    return

    def _write(self, run_id: str, fn: Callable[[RunTransaction, _Entry], T]) -> T:
        return self._write_then(run_id, fn, _result)

    def _write_then(self, run_id: str, fn: Callable[[RunTransaction, _Entry], T], then: Callable[[_Entry, T], R]) -> R:
        """``fn`` inside the run's transaction, then ``then`` after the commit, still holding the run's lock.

        Evaluation belongs in ``then``: inside the transaction it would hold the store's write lock (on SQLite, every
        run's writes) for as long as it computes.
        """
        while True:
            entry = self._load(run_id)
            with entry.lock:
                if not entry.valid:
                    continue  # a write on it failed while this one waited: load the run again
                committed: RunRecord | None = None  # the row as locked, once the fold has caught up with it
                try:
                    with self._store.transaction(run_id) as tx:
                        if not self._same_run(tx.run, entry.run):
                            raise _Recreated
                        entry.state.extend(tx.events_after(entry.state.last_seq))
                        committed, caught_up = tx.run, entry.state.last_seq
                        result = fn(tx, entry)
                        run = tx.run
                except _Recreated:
                    entry.valid = False
                    self._forget(run_id)
                    continue
                except LrserveError as e:
                    if (
                        e.status < 500
                        and committed is not None
                        and tx.run is committed
                        and (entry.state.last_seq == caught_up)
                    ):
                        # Refused before it wrote anything (a stale incarnation, a conflict): the entry holds only
                        # what is committed, so it stays; poisoning it would let a zombie force a replay per request.
                        entry.run = committed
                        raise
                    entry.valid = False
                    self._forget(run_id)
                    raise
                except BaseException:
                    # The entry may hold what did not commit (events in the fold, a horizon, evaluated windows):
                    # nobody may use it again, and the run is rebuilt from the store next time.
                    entry.valid = False
                    self._forget(run_id)
                    raise
                entry.run = run
                return then(entry, result)

    @staticmethod
    def _check_incarnation(entry: _Entry, incarnation: int | None, *, write: bool = False) -> None:
        """Fence requests from earlier incarnations (409).

        A write that names no incarnation is taken as the current one's only while the run has never resumed:
        after a resume nobody can tell a zombie of an earlier launch from the live job, so such a write is refused
        (409, ``incarnation`` in the problem) and can never block what the live incarnation records.
        """
        current = entry.state.incarnation
        if incarnation is None:
            if write and current > 1:
                raise StaleIncarnation(
                    detail=f"the run has resumed (incarnation {current}): a write must carry its incarnation",
                    errors=[FieldError(("incarnation",), f"required once the run has resumed; current: {current}")],
                    extra={"incarnation": current},
                )
            return
        if incarnation == current:
            return
        if incarnation < current:
            raise StaleIncarnation(
                detail=f"incarnation {incarnation} is stale: the run resumed as incarnation {current}",
                extra={"incarnation": current},
            )
        raise InvalidInput(
            detail=f"incarnation {incarnation} does not exist (current: {current})",
            errors=[FieldError(("incarnation",), f"must be <= {current}")],
        )

    # ---- runs ---------------------------------------------------------------------------------------------------

    def _resolve_spec(self, body: RunCreate) -> RunSpec:
        if body.preset is None:
            if body.spec is None:
                raise InvalidInput(detail="give a spec or a preset", errors=[FieldError(("spec",), "required")])
            if body.overrides:
                raise InvalidInput(
                    detail="overrides apply to a preset",
                    errors=[FieldError(("overrides",), "needs 'preset'")],
                )
            return body.spec
        if body.spec is not None:
            raise InvalidInput(
                detail="give a spec or a preset, not both",
                errors=[FieldError(("preset",), "conflicts with spec")],
            )
        preset = self._presets.get(body.preset)
        if preset is None:
            known = ", ".join(sorted(self._presets)) or "none configured"
            raise InvalidInput(
                detail=f"unknown preset {body.preset!r} (known: {known})",
                errors=[FieldError(("preset",), "unknown preset")],
            )
        return validate_model(RunSpec, _deep_merge(preset, body.overrides or {}), prefix=("overrides",))

    def ensure_run(
        self, run_id: str, body: RunCreate, actor: str | None, *, derived_from: dict[str, Any] | None = None
    ) -> tuple[RunPublic, bool]:
        spec = self._resolve_spec(body)
        check_values(spec)  # a non-finite LR at a defined step: refused before the run exists
        spec_json = spec.model_dump(mode="json")
        created_payload: dict[str, Any] = {"spec": spec_json, "labels": dict(body.labels)}
        if derived_from is not None:
            created_payload["derived_from"] = derived_from
        first = NewEvent(ev.CREATED, created_payload, actor=actor)
        record, created = self._store.create_run(run_id, spec_json, body.labels, first)
        if not created and RunSpec.model_validate(record.spec) != spec:
            raise RunExists(
                detail=f"run {run_id!r} exists with another spec; pick another id or delete it first",
                extra={"existing_spec": record.spec},
            )
        if created:
            self._forget(run_id)  # a cached entry of a deleted namesake must not survive
        return self.get_run(run_id), created

    def get_run(self, run_id: str) -> RunPublic:
        with self._locked(run_id) as entry:
            return self._public(entry)

    def _public(self, entry: _Entry) -> RunPublic:
        state, run = entry.state, entry.run
        next_step = run.horizon + 1
        layer = state.plan.layer_at(next_step)
        lr, _ = state.plan.values(np.array([next_step], dtype=np.int64))
        plateau = None
        if state.plateau is not None and state.plateau_state is not None:
            ps = state.plateau_state
            plateau = PlateauStatePublic(
                metric=state.plateau.metric,
                best=ps.best if math.isfinite(ps.best) else None,
                num_bad=ps.num_bad,
                cooldown_counter=ps.cooldown_counter,
                num_reductions=ps.num_reductions,
                last_value=ps.last_value,
            )
        last = state.last_metric()
        end = layer.end_step()
        return RunPublic(
            run_id=run.run_id,
            spec=state.spec,
            labels=run.labels,
            revision=state.revision,
            horizon=run.horizon,
            incarnation=state.incarnation,
            group_names=state.spec.group_names,
            schedule_type=layer.schedule_type,
            scale=layer.scale.tolist(),
            current_lr=lr[:, 0].tolist(),
            plateau=plateau,
            last_metric=None if last is None else MetricPublic(step=last.step, name=last.name, value=last.value),
            total_steps=end,
            created_at=run.created_at,
            updated_at=run.updated_at,
        )

    def list_runs(self, labels: dict[str, str], limit: int, cursor: str | None) -> RunPage:
        records = self._store.list_runs(labels=labels, limit=limit + 1, after=cursor)
        page = records[:limit]
        summaries = [
            RunSummary(
                run_id=r.run_id,
                labels=r.labels,
                schedule_type=str(r.spec.get("schedule", {}).get("type", "")),
                revision=r.revision,
                horizon=r.horizon,
                incarnation=r.incarnation,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in page
        ]
        return RunPage(runs=summaries, next_cursor=page[-1].run_id if len(records) > limit else None)

    def delete_run(self, run_id: str, actor: str | None) -> None:
        deleted = self._store.delete_run(run_id)
        self._forget(run_id)
        if not deleted:
            raise RunNotFound(detail=f"no run {run_id!r}")

    def ready(self) -> None:
        self._store.ping()

    # ---- leases -------------------------------------------------------------------------------------------------

    def lease_cached(
        self, run_id: str, start: int, count: int, incarnation: int | None, *, evaluate: bool = True
    ) -> LeaseData | None:
        """The lease answered from memory alone, or None when the store must be asked (never blocks on I/O).

        ``evaluate=False`` (the event loop's fast path) answers only windows already evaluated: evaluation is work
        that must not run on the loop.
        """
        with self._cache_lock:
            entry = self._cache.get(run_id)
        # Called from the event loop: never wait for a writer holding the run (it may be waiting on the disk).
        if entry is None or not entry.lock.acquire(blocking=False):
            return None
        try:
            if not entry.valid:
                return None
            frozen = start + count - 1 <= entry.run.horizon
            # Memory is current up to the coherence's staleness bound (another replica may have deleted,
            # re-created or resumed the run since): past it, or while the listener is down, ask the store.
            if not (frozen and self._coherence.fresh()):
                return None
            self._check_incarnation(entry, incarnation)
            if not evaluate and self._windows.get(self._window_key(entry, start, count)) is None:
                # Not evaluated yet: only a small window is evaluated here (every rank asks for it at about the
                # same moment; sending them all to the thread pool costs more than this). Others go to the route.
                steps = np.arange(start, start + count, dtype=np.int64)
                if count * entry.state.plan.num_groups > LOOP_WORK or estimate_work(entry.state.plan, steps) > (
                    LOOP_WORK
                ):
                    return None
            data = self._lease_data(entry, start, count)
        finally:
            entry.lock.release()
        self._telemetry.lease_from_cache.inc()
        return data

    def lease(self, run_id: str, start: int, count: int, incarnation: int | None) -> LeaseData:
        cached = self.lease_cached(run_id, start, count, incarnation)
        if cached is not None:
            return cached
        stop = start + count - 1
        with self._locked(run_id) as entry:
            self._budget.window(entry.state.plan, start, count, field=("query", "count"))
            if stop <= entry.run.horizon:
                self._check_incarnation(entry, incarnation)
                data = self._lease_data(entry, start, count)
                self._telemetry.lease_from_store.inc()
                return data
        extended = False

        def extend(tx: RunTransaction, entry: _Entry) -> None:
            nonlocal extended
            self._check_incarnation(entry, incarnation, write=stop > tx.run.horizon)
            if stop > tx.run.horizon:
                tx.update(horizon=stop)
                extended = True

        data = self._write_then(run_id, extend, lambda entry, _: self._lease_data(entry, start, count))
        self._telemetry.lease_from_store.inc()
        if extended:
            self._telemetry.horizon_extension.inc()
        return data

    @staticmethod
    def _window_key(entry: _Entry, start: int, count: int) -> WindowKey:
        return (entry.serial, entry.state.incarnation, start, count)

    def _lease_data(self, entry: _Entry, start: int, count: int) -> LeaseData:
        """The values of a window at or below the horizon (served: frozen for this incarnation, so cached)."""
        key = self._window_key(entry, start, count)
        window = self._windows.get(key)
        if window is None:
            steps = np.arange(start, start + count, dtype=np.int64)
            plan = entry.state.plan
            lr, momentum = plan.values(steps)
            lr.flags.writeable = False
            if momentum is not None:
                momentum.flags.writeable = False
            window = Window(lr, momentum, plan.layer_at(start + count - 1).end_step())
            self._windows.put(key, window)
        lr, momentum, end = window.lr, window.momentum, window.end
        return LeaseData(
            run_id=entry.run.run_id,
            start=start,
            count=count,
            revision=entry.state.revision,
            incarnation=entry.state.incarnation,
            horizon=entry.run.horizon,
            group_names=entry.state.spec.group_names,
            lr=lr,
            momentum=momentum,
            done=(end is not None and start + count - 1 >= end) or rangetest.stopped_step(entry.state) is not None,
            total_steps=end,
            last_seq=entry.state.last_seq,
        )

    def plan(self, run_id: str) -> RunPlan:
        """The run's spec, changes and reductions: what a client needs to evaluate LRs itself during an outage."""
        with self._locked(run_id) as entry:
            state = entry.state
            return plan_to_wire(
                run_id,
                state.plan,
                horizon=entry.run.horizon,
                incarnation=state.incarnation,
                revision=state.revision,
                last_seq=state.last_seq,
            )

    def applied(self, run_id: str, body: AppliedIn, actor: str | None) -> AppliedResult:
        """A worker applied steps ``start..stop`` offline with the plan as of ``last_seq``: make that the history.

        Steps already served keep their values. The others are served now (the horizon moves to ``stop``);
        where the plan changed after ``last_seq`` (a change or reduction recorded during the outage) the steps
        are pinned to the plan the worker used, and the change takes effect after them.
        """
        if body.stop < body.start:
            raise InvalidInput(detail="stop must be >= start", errors=[FieldError(("stop",), "must be >= start")])
        self._budget.applied_steps(body.stop - body.start + 1)

        def check(entry: _Entry) -> None:
            self._check_incarnation(entry, body.incarnation, write=True)
            if body.last_seq > entry.state.last_seq:
                raise InvalidInput(
                    detail=f"last_seq {body.last_seq} is ahead of the run's history ({entry.state.last_seq})",
                    errors=[FieldError(("last_seq",), f"must be <= {entry.state.last_seq}")],
                )

        def decide(state: RunState, start: int) -> bool:
            """Whether the plan as of ``last_seq`` differs from today's anywhere in ``start..stop`` (chunked)."""
            then = Plan(
                state.spec,
                [c for c in state.changes if c.seq <= body.last_seq],
                [r for r in state.reductions if r.metric_seq <= body.last_seq],
                state.build,
            )
            for lo in range(start, body.stop + 1, APPLIED_CHUNK):
                steps = np.arange(lo, min(lo + APPLIED_CHUNK, body.stop + 1), dtype=np.int64)
                self._budget.work(state.plan, steps, field=("stop",))
                if not np.array_equal(state.plan.values(steps)[0], then.values(steps)[0]):
                    return True
            return False

        # Compared before the transaction (the store's write lock is not held while it computes); the transaction
        # compares again only if the history or the horizon moved in between (another replica wrote).
        with self._locked(run_id) as entry:
            check(entry)
            first = max(body.start, entry.run.horizon + 1)
            decided = (entry.state.last_seq, first, first <= body.stop and decide(entry.state, first))

        def record(tx: RunTransaction, entry: _Entry) -> AppliedResult:
            state = entry.state
            check(entry)
            horizon = tx.run.horizon
            start = max(body.start, horizon + 1)
            if start > body.stop:
                return AppliedResult(horizon=horizon, pinned=False, start=start, stop=body.stop)
            pinned = decided[2] if decided[:2] == (state.last_seq, start) else decide(state, start)
            if pinned:
                payload = {"start": start, "stop": body.stop, "as_of": body.last_seq, "incarnation": state.incarnation}
                state.extend([tx.append(NewEvent(ev.APPLIED, payload, actor=actor))])
            tx.update(horizon=body.stop)
            return AppliedResult(horizon=body.stop, pinned=pinned, start=start, stop=body.stop)

        return self._write(run_id, record)

    # ---- metrics ------------------------------------------------------------------------------------------------

    def post_metrics(self, run_id: str, batch: MetricBatch, actor: str | None) -> MetricsResult:
        def record(tx: RunTransaction, entry: _Entry) -> MetricsResult:
            state = entry.state
            self._check_incarnation(entry, batch.incarnation, write=True)
            accepted, duplicates, conflicts = [], [], []
            in_batch: dict[tuple[int, str], float] = {}
            for i, m in enumerate(batch.metrics):
                known = state.counting_metric(m.step, m.name)
                prior = known.value if known is not None else in_batch.get((m.step, m.name))
                if prior is None:
                    in_batch[(m.step, m.name)] = m.value
                    accepted.append(m)
                elif prior == m.value or (math.isnan(prior) and math.isnan(m.value)):
                    duplicates.append(m)
                else:
                    conflicts.append(
                        FieldError(("metrics", i, "value"), f"step {m.step} {m.name!r} is recorded as {prior!r}")
                    )
            if conflicts:
                raise MetricConflict(
                    detail=f"{len(conflicts)} metric(s) already recorded with another value; nothing was recorded",
                    errors=conflicts,
                )
            reductions = []
            for m in accepted:
                applies_from = max(m.step + 1, tx.run.horizon + 1)
                payload = ev.metric_payload(m.step, m.name, m.value, state.incarnation, applies_from)
                event = tx.append(NewEvent(ev.METRIC, payload, actor=actor))
                for red in state.extend([event]):
                    reductions.append(red)
                    audit = {
                        "metric_seq": red.metric_seq,
                        "metric_step": red.metric_step,
                        "from_step": red.from_step,
                        "multipliers": list(red.multipliers),
                    }
                    state.extend([tx.append(NewEvent(ev.REDUCTION, audit, actor="plateau"))])
            public = self._public(_Entry(run=tx.run, state=state))
            return MetricsResult(
                accepted=[MetricPublic(step=m.step, name=m.name, value=m.value) for m in accepted],
                duplicates=[MetricPublic(step=m.step, name=m.name, value=m.value) for m in duplicates],
                plateau=public.plateau,
                reductions=[
                    ReductionPublic(metric_step=r.metric_step, from_step=r.from_step, multipliers=list(r.multipliers))
                    for r in reductions
                ],
                reduction_from_step=reductions[-1].from_step if reductions else None,
            )

        result = self._write(run_id, record)
        self._telemetry.metrics_posted(run_id, result, actor)
        return result

    # ---- changes ------------------------------------------------------------------------------------------------

    def _check_change(self, entry: _Entry, change: ChangeIn, horizon: int) -> int:
        spec = entry.state.spec
        groups = len(spec.param_groups)
        from_step = horizon + 1 if change.from_step is None else change.from_step
        if from_step <= horizon:
            raise HorizonConflict(
                detail=f"steps up to {horizon} are already served; from_step must be >= {horizon + 1}",
                errors=[FieldError(("from_step",), f"must be > horizon {horizon}")],
                extra={"horizon": horizon},
            )
        if isinstance(change, ReplaceChange):
            if isinstance(change.schedule, ReduceLROnPlateau):
                raise InvalidInput(
                    detail="replace cannot install ReduceLROnPlateau; use op 'plateau' to change plateau rules",
                    errors=[FieldError(("schedule", "type"), "ReduceLROnPlateau is not allowed in a replace")],
                )
            candidate = {
                "param_groups": [g.model_dump(mode="json") for g in spec.param_groups],
                "schedule": change.schedule.model_dump(mode="json"),
            }
            check_values(validate_model(RunSpec, candidate))
        elif isinstance(change, SetChange):
            if isinstance(change.lr, list) and len(change.lr) != groups:
                raise InvalidInput(
                    detail=f"lr has {len(change.lr)} entries; the run has {groups} param groups",
                    errors=[FieldError(("lr",), f"give a scalar or {groups} values")],
                )
            if change.until_step is not None and change.until_step <= from_step:
                raise InvalidInput(
                    detail="until_step must be after from_step",
                    errors=[FieldError(("until_step",), f"must be > from_step {from_step}")],
                )
        elif isinstance(change, PlateauChange) and change.plateau is not None:
            min_lr = change.plateau.min_lr
            if isinstance(min_lr, list) and len(min_lr) != groups:
                raise InvalidInput(
                    detail=f"plateau.min_lr has {len(min_lr)} entries; the run has {groups} param groups",
                    errors=[FieldError(("plateau", "min_lr"), f"give a scalar or {groups} values")],
                )
        return from_step

    @staticmethod
    def _check_revision(state: RunState, change: ChangeIn, if_match: int | None) -> None:
        if change.expected_revision is not None and change.expected_revision != state.revision:
            raise RevisionConflict(
                detail=f"the run is at revision {state.revision}, not {change.expected_revision}: "
                "someone changed it first; reload and retry",
                extra={"revision": state.revision},
            )
        if if_match is not None and if_match != state.revision:
            raise PreconditionFailed(
                detail=f"If-Match {if_match} does not match revision {state.revision}",
                extra={"revision": state.revision},
            )

    def change(self, run_id: str, change: ChangeIn, actor: str | None, if_match: int | None = None) -> ChangeResult:
        if change.dry_run:
            with self._locked(run_id) as entry:
                self._check_revision(entry.state, change, if_match)
                from_step = self._check_change(entry, change, entry.run.horizon)
                return self._preview(entry, change, from_step, actor)

        def record(tx: RunTransaction, entry: _Entry) -> ChangeResult:
            self._check_revision(entry.state, change, if_match)
            from_step = self._check_change(entry, change, tx.run.horizon)
            revision = entry.state.revision + 1
            payload = ev.change_payload(change, from_step, revision)
            event = tx.append(NewEvent(ev.CHANGE, payload, actor=actor, reason=change.reason))
            entry.state.extend([event])
            tx.update(revision=revision)
            return ChangeResult(
                applied=True,
                revision=revision,
                from_step=from_step,
                event_seq=event.seq,
                current=None,
                proposed=None,
            )

        result = self._write(run_id, record)
        self._telemetry.changed(run_id, change, result, actor)
        return result

    def _preview(self, entry: _Entry, change: ChangeIn, from_step: int, actor: str | None) -> ChangeResult:
        state = entry.state
        steps = np.arange(from_step, from_step + change.preview_steps, dtype=np.int64)
        names = state.spec.group_names
        self._budget.evaluation(state.plan, steps, field=("preview_steps",))
        lr, mom = state.plan.values(steps)
        rec = ChangeRec(
            seq=state.last_seq + 1,
            from_step=from_step,
            revision=state.revision + 1,
            change=ev.CHANGE_ADAPTER.validate_python(ev.change_payload(change, from_step, 0)["change"]),
            at=datetime.now(UTC),
            actor=actor,
            reason=change.reason,
        )
        proposed_plan = Plan(state.spec, [*state.changes, rec], state.reductions, state.build)
        self._budget.evaluation(proposed_plan, steps, field=("preview_steps",))
        lr2, mom2 = proposed_plan.values(steps)
        step_list = steps.tolist()
        return ChangeResult(
            applied=False,
            revision=state.revision,
            from_step=from_step,
            event_seq=None,
            current=CurveGroups(steps=step_list, groups=groups_of(names, lr, mom)),
            proposed=CurveGroups(steps=step_list, groups=groups_of(names, lr2, mom2)),
        )

    # ---- resume -------------------------------------------------------------------------------------------------

    def resume(self, run_id: str, body: ResumeIn, actor: str | None) -> ResumeResult:
        new = False

        def record(tx: RunTransaction, entry: _Entry) -> ResumeResult:
            nonlocal new
            state = entry.state
            done = next((r for r in state.resumes if body.key is not None and r.key == body.key), None)
            if done is None:
                # A zombie of an earlier launch must not fence the live job: a stale incarnation is refused (the
                # ranks of one launch share a key, so a rank that has not yet seen the new incarnation gets the
                # keyed answer above instead).
                self._check_incarnation(entry, body.incarnation)
                incarnation = state.incarnation + 1
                payload = {
                    "step": body.step,
                    "incarnation": incarnation,
                    "previous_horizon": tx.run.horizon,
                    "key": body.key,
                }
                state.extend([tx.append(NewEvent(ev.RESUME, payload, actor=actor))])
                # Steps from body.step on are re-opened; the values at body.step are served now.
                tx.update(horizon=body.step, incarnation=incarnation)
                step = body.step
                new = True
            else:
                incarnation, step = done.incarnation, done.step
            entry.run = tx.run
            lr, mom = state.plan.values(np.array([step], dtype=np.int64))
            return ResumeResult(
                incarnation=incarnation,
                step=step,
                horizon=tx.run.horizon,
                groups=groups_of(state.spec.group_names, lr, mom),
            )

        result = self._write(run_id, record)
        self._telemetry.resumed(run_id, result, actor, new)
        return result

    # ---- LR range tests -----------------------------------------------------------------------------------------

    def suggestion(
        self, run_id: str, upper_rule: lrfinder.UpperRule = "valley", lower_div: float = lrfinder.DEFAULT_LOWER_DIV
    ) -> SuggestionPublic:
        with self._locked(run_id) as entry:
            h, reading = rangetest.suggest(entry.state, upper_rule=upper_rule, lower_div=lower_div)
        rows = h.lrs[:, : len(reading.lr)].tolist()
        picks = []
        names: tuple[lrfinder.UpperRule, ...] = ("steepest", "valley", "minimum_div_10")
        for name in names:
            pick = reading.rule(name)
            if pick is not None:
                picks.append(
                    RulePick(
                        rule=name,
                        description=lrfinder.RULES[name],
                        lr=pick.for_groups(rows),
                        step=int(h.steps[pick.index]),
                        loss=pick.loss,
                    )
                )
        bounds = None
        if reading.clr_bounds is not None:
            b = reading.clr_bounds
            lower, upper = b.for_groups(rows)
            bounds = ClrBoundsPublic(
                lower=lower, upper=upper, upper_rule=b.upper_rule, lower_div=b.lower_div, step=int(h.steps[b.index])
            )
        n = len(reading.lr)
        last_step = int(h.steps[-1]) if h.steps.size else -1
        return SuggestionPublic(
            run_id=run_id,
            done=reading.stopped_at is not None or last_step >= h.test.num_steps - 1,
            stopped_at=None if reading.stopped_at is None else int(h.steps[reading.stopped_at]),
            smoothing=reading.smoothing,
            smooth_f=reading.smooth_f,
            diverge_th=reading.diverge_th,
            rules=picks,
            clr_bounds=bounds,
            plot=RangeTestPlot(
                steps=h.steps[:n].tolist(),
                lr=list(reading.lr),
                loss=list(reading.loss),
                smoothed=list(reading.smoothed),
            ),
        )

    def followup(self, run_id: str, body: FollowupIn, actor: str | None) -> tuple[RunPublic, bool]:
        """Create the training run a range test suggests (CyclicLR or OneCycleLR between its bounds)."""
        with self._locked(run_id) as entry:
            h, reading = rangetest.suggest(entry.state, upper_rule=body.upper_rule, lower_div=body.lower_div)
            groups = [g.model_dump(mode="json") for g in entry.state.spec.param_groups]
        if reading.clr_bounds is None:
            raise Conflict(detail=f"rule {body.upper_rule!r} gives no suggestion for this test (too few steps?)")
        rows = h.lrs[:, : len(reading.lr)].tolist()
        try:
            schedule = lrfinder.followup_schedule(
                reading.clr_bounds,
                body.policy,
                step_size_up=body.step_size_up,
                steps_per_epoch=body.steps_per_epoch,
                gamma=body.gamma,
                total_steps=body.total_steps,
                group_lrs=rows if len(rows) > 1 else None,
            )
        except ValueError as exc:
            raise InvalidInput(detail=str(exc), errors=[FieldError(("policy",), str(exc))]) from None
        lower, upper = reading.clr_bounds.for_groups(rows)
        derived = {
            "run_id": run_id,
            "upper_rule": body.upper_rule,
            "lower": lower,
            "upper": upper,
            "step": int(h.steps[reading.clr_bounds.index]),
        }
        create = RunCreate.model_validate(
            {
                "spec": {"param_groups": groups, "schedule": schedule},
                "labels": {"derived_from": run_id, **body.labels},
            }
        )
        return self.ensure_run(body.run_id, create, actor, derived_from=derived)

    # ---- curves and events --------------------------------------------------------------------------------------

    @staticmethod
    def _check_range(start: int, stop: int, stride: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        if stop <= start:
            raise InvalidInput(
                detail="stop must be > start", errors=[FieldError(("stop",), f"must be > start {start}")]
            )
        if stride < 1:
            raise InvalidInput(detail="stride must be >= 1", errors=[FieldError(("stride",), "must be >= 1")])
        points = -(-(stop - start) // stride)
        if points > MAX_CURVE_POINTS:
            raise InvalidInput(
                detail=f"{points} points asked; at most {MAX_CURVE_POINTS} (raise stride)",
                errors=[FieldError(("stride",), f"too small for {stop - start} steps")],
            )
        return np.arange(start, stop, stride, dtype=np.int64)

    def curve(self, run_id: str, start: int, stop: int, stride: int) -> CurveData:
        steps = self._check_range(start, stop, stride)
        with self._locked(run_id) as entry:
            state = entry.state
            self._budget.evaluation(state.plan, steps, field=("query", "stride"))
            lr, mom = state.plan.values(steps)
            return CurveData(
                run_id=run_id,
                start=start,
                stop=stop,
                stride=stride,
                steps=steps,
                group_names=state.spec.group_names,
                lr=lr,
                momentum=mom,
                horizon=entry.run.horizon,
                revision=state.revision,
                markers=self._markers(state),
            )

    @staticmethod
    def _markers(state: RunState) -> list[Marker]:
        markers = [
            Marker(
                step=c.from_step,
                kind="change",
                detail=_describe_change(c),
                actor=c.actor,
                reason=c.reason,
                at=c.at,
            )
            for c in state.changes
        ]
        by_seq = {m.seq: m for m in state.metrics}
        for r in state.reductions:
            trigger = by_seq[r.metric_seq]
            factors = ", ".join(f"{m:g}" for m in r.multipliers)
            markers.append(
                Marker(
                    step=r.from_step,
                    kind="reduction",
                    detail=f"plateau: x[{factors}] after {trigger.name}={trigger.value:g} at step {r.metric_step}",
                    actor="plateau",
                    reason=None,
                    at=trigger.at,
                )
            )
        markers.extend(
            Marker(
                step=r.step,
                kind="resume",
                detail=f"incarnation {r.incarnation}",
                actor=r.actor,
                reason=None,
                at=r.at,
            )
            for r in state.resumes
        )
        markers.sort(key=lambda m: (m.step, m.at))
        return markers

    def preview_curve(self, req: CurveRequest) -> CurveData:
        steps = self._check_range(req.start, req.stop, req.stride)
        self._budget.preview_metrics(len(req.metrics))
        state = RunState(spec=req.spec)
        self._budget.evaluation(state.plan, steps, field=("stride",))
        now = datetime.now(UTC)
        fake = [
            EventRecord(
                run_id="",
                seq=i + 2,
                kind=ev.METRIC,
                at=now,
                actor=None,
                reason=None,
                payload=ev.metric_payload(m.step, m.name, m.value, 1, m.step + 1),
            )
            for i, m in enumerate(sorted(req.metrics, key=lambda m: m.step))
        ]
        state.extend(fake)
        self._budget.evaluation(state.plan, steps, field=("stride",))
        lr, mom = state.plan.values(steps)
        return CurveData(
            run_id=None,
            start=req.start,
            stop=req.stop,
            stride=req.stride,
            steps=steps,
            group_names=req.spec.group_names,
            lr=lr,
            momentum=mom,
            horizon=-1,
            revision=0,
            markers=self._markers(state),
        )

    def events(self, run_id: str, after: int, limit: int) -> EventPage:
        records = self._store.events(run_id, after=after, limit=limit + 1)
        if not records and self._store.get_run(run_id) is None:
            raise RunNotFound(detail=f"no run {run_id!r}")
        page = records[:limit]
        return EventPage(
            events=[
                Event(seq=r.seq, kind=r.kind, at=r.at, actor=r.actor, reason=r.reason, payload=r.payload) for r in page
            ],
            next_after=page[-1].seq if len(records) > limit else None,
        )


def _result(_entry: _Entry, result: T) -> T:
    return result


class _Recreated(Exception):
    """The run was deleted and created again since it was cached."""


def _describe_change(c: ChangeRec) -> str:
    ch = c.change
    if isinstance(ch, ReplaceChange):
        return f"replace: {schedule_type(ch.schedule)} ({ch.origin})"
    if isinstance(ch, SetChange):
        until = "" if ch.until_step is None else f" until {ch.until_step}"
        return f"set lr={ch.lr}{until}"
    if isinstance(ch, PlateauChange):
        return "plateau: off" if ch.plateau is None else f"plateau: watch {ch.plateau.metric}"
    return f"scale x{ch.factor:g}"
