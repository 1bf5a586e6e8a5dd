"""Leased windows of steps, refilled ahead in a background thread; local evaluation through outages.

``LeaseManager`` is the framework-free engine under ``RemoteScheduler`` (it imports no torch). The training
thread asks it for one ``Window`` of W steps at a time; the per-step path (in the scheduler) is a list index.

How a refill works:

- When the training thread reaches step ``refill_at`` of its window, a refill of the next window is queued on
  the manager's background thread: it first reports steps applied offline (``POST .../applied``), then flushes
  queued metrics (``POST .../metrics``), then leases the next W steps (``GET .../lr``) and, when the run's
  history moved (the window's ``last_seq`` differs from the cached plan's), refetches the plan
  (``GET .../plan``). Each call is retried with backoff and jitter (``LRClient``).
- At the window's end the training thread takes the refill. If it is not there it waits at most
  ``refill_budget`` seconds (0 once an outage is known), then goes on with a window it evaluates locally.

Outages. With no answer in time, the manager evaluates the next window itself from the cached plan (the run's
spec, changes, reductions and pins, with the numeric core of ``lrserve.schemas``), logs ONE warning for the
incident on the ``lrserve.client`` logger, keeps queueing metrics, and tries the server again at each refill.
When a refill succeeds it has already told the server which steps were applied offline and with which plan
(``last_seq``), and replayed the queued metrics (duplicates are no-ops, so a replay after a lost answer is
safe). The server freezes those steps with the values the worker applied. Exactly what happens to a change or a
plateau reduction during an outage:

- **A change made while the worker cannot reach the server** (the server up, the worker cut off) does not reach
  the worker: it goes on with the plan it has. On reconnect the server pins the steps the worker applied offline
  to that plan, so the run's history shows what was applied, and the change takes effect from the first step
  after them (which is served on reconnect).
- **A plateau reduction** is decided only by the server. Metrics reported during the outage are queued; the
  worker does not reduce the LR itself. On reconnect the steps applied offline are reported first, then the
  metrics replayed, so a reduction they trigger applies from the first step after the offline steps (never to
  a step already applied).
- **The server killed and restarted** (nothing changed meanwhile): the local values equal the server's plan, so
  the history is as if nothing happened.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from lrserve.client.http import RunHandle
from lrserve.schemas.errors import (
    Cancelled,
    LrserveError,
    MetricConflict,
    StaleIncarnation,
)
from lrserve.schemas.plan import Plan, plan_from_wire
from lrserve.schemas.wire import MAX_APPLIED_STEPS, MAX_METRICS_PER_BATCH, LrWindow, PlateauChange, RunPlan

log = logging.getLogger("lrserve.client")

FloatArray = npt.NDArray[np.float64]


# ---- windows ----------------------------------------------------------------------------------------------------


def _floats(values: list[Any]) -> FloatArray:
    try:
        return np.asarray(values, dtype=np.float64)
    except TypeError:  # nulls (NaN written by an encoder without NaN)
        return np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True)
class Window:
    """The values of steps ``start .. start+count-1``: ``lr`` and ``momentum`` have shape ``(G, count)``
    (momentum None when no group cycles it, NaN for a group that does not). ``local``: evaluated by the client
    during an outage (``last_seq`` is then the plan it used)."""

    start: int
    lr: FloatArray
    momentum: FloatArray | None
    incarnation: int
    last_seq: int
    revision: int
    local: bool = False
    done: bool = False

    @property
    def count(self) -> int:
        return int(self.lr.shape[1])

    @property
    def stop(self) -> int:
        """Last step of the window (inclusive)."""
        return self.start + self.count - 1

    @classmethod
    def from_wire(cls, w: LrWindow) -> Window:
        lr = np.array([g.lr for g in w.groups], dtype=np.float64).reshape(len(w.groups), w.count)
        moms = [g.momentum for g in w.groups]
        momentum = None
        if any(m is not None for m in moms):
            momentum = np.full(lr.shape, np.nan)
            for i, m in enumerate(moms):
                if m is not None:
                    momentum[i] = m
        return cls(w.start, lr, momentum, w.incarnation, w.last_seq, w.revision, local=False, done=w.done)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        """From the JSON of an ``LrWindow`` (unvalidated: the server's encoder is trusted; nulls read as NaN)."""
        groups = data["groups"]
        count = int(data["count"])
        lr = np.empty((len(groups), count))
        momentum = None
        for i, g in enumerate(groups):
            lr[i] = _floats(g["lr"])
            if g.get("momentum") is not None:
                if momentum is None:
                    momentum = np.full(lr.shape, np.nan)
                momentum[i] = _floats(g["momentum"])
        return cls(
            int(data["start"]),
            lr,
            momentum,
            int(data["incarnation"]),
            int(data.get("last_seq", 0)),
            int(data["revision"]),
            local=False,
            done=bool(data.get("done", False)),
        )

    @cached_property
    def rows(self) -> tuple[list[list[float]], list[list[float | None]] | None]:
        """Per step: the G lrs, and the G momenta (None where a group does not cycle it) — for the hot path.
        Computed once (by the background thread for leased windows)."""
        lr_rows: list[list[float]] = self.lr.T.tolist()
        if self.momentum is None:
            return lr_rows, None
        nan = np.isnan(self.momentum)
        if nan.all():
            return lr_rows, None
        if not nan.any():
            return lr_rows, self.momentum.T.tolist()
        mom_rows = [[None if math.isnan(m) else m for m in row] for row in self.momentum.T.tolist()]
        return lr_rows, mom_rows


# ---- the plan, evaluated locally --------------------------------------------------------------------------------


@dataclass
class LocalPlan:
    """A ``RunPlan`` from the server, ready to evaluate (``lrserve.schemas.plan.Plan``)."""

    wire: RunPlan
    plan: Plan

    @classmethod
    def from_wire(cls, wire: RunPlan) -> LocalPlan:
        return cls(wire, plan_from_wire(wire))

    @property
    def last_seq(self) -> int:
        return self.wire.last_seq

    def plateau_metric(self) -> str | None:
        """The metric the plateau rules in force watch (None: no plateau rules)."""
        plateau = self.wire.spec.effective_plateau()
        for c in sorted(self.wire.changes, key=lambda c: c.seq):
            if isinstance(c.change, PlateauChange):
                plateau = c.change.plateau
        return None if plateau is None else plateau.metric

    def window(self, start: int, count: int, incarnation: int) -> Window:
        steps = np.arange(start, start + count, dtype=np.int64)
        lr, momentum = self.plan.values(steps)
        return Window(start, lr, momentum, incarnation, self.wire.last_seq, self.wire.revision, local=True)


# ---- the background thread --------------------------------------------------------------------------------------


class _Worker:
    """One daemon thread running submitted calls in order; ``idle()`` runs after ``idle_every`` s without work."""

    def __init__(self, idle: Callable[[], None], idle_every: float) -> None:
        self._queue: queue.SimpleQueue[tuple[cf.Future[Any], Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._idle = idle
        self._idle_every = idle_every
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future[Any]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="lrserve-lease", daemon=True)
                self._thread.start()
        future: cf.Future[Any] = cf.Future()
        self._queue.put((future, fn, args))
        return future

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_every)
            except queue.Empty:
                try:
                    self._idle()
                except Exception:  # pragma: no cover - the idle flush logs its own failures
                    log.debug("idle flush failed", exc_info=True)
                continue
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as e:
                future.set_exception(e)

    def stop(self, timeout: float) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


# ---- the manager ------------------------------------------------------------------------------------------------


class _Probed(Exception):
    """A refill during an outage reached the server (and delivered what was queued) but leased nothing."""


@dataclass
class _Refill:
    start: int
    future: cf.Future[Window]
    cancel: threading.Event


def is_fatal(exc: BaseException) -> bool:
    """Errors that training must not ride through: the request itself is wrong (4xx) — a stale incarnation (a
    zombie worker), a deleted run, a token without the scope, an invalid argument. Anything else (unreachable,
    5xx, a timeout) is an outage."""
    if not isinstance(exc, LrserveError) or isinstance(exc, Cancelled):
        return False
    status = exc.extra.get("status")
    if not isinstance(status, int):
        status = exc.status
    return 400 <= status < 500


def _route_missing(exc: LrserveError) -> bool:
    """A 404 for the route itself (an older server), not for the run."""
    return exc.problem_type == "not-found" or exc.extra.get("status") == 405


@dataclass
class Incident:
    """One outage as the training thread saw it."""

    first_step: int
    reason: str
    started: float = field(default_factory=time.monotonic)
    local_steps: int = 0


@dataclass
class Stats:
    windows_served: int = 0
    windows_local: int = 0
    incidents: int = 0
    metrics_sent: int = 0
    metrics_duplicates: int = 0
    metrics_dropped: int = 0
    applied_reports: int = 0
    plan_fetches: int = 0
    stale_windows: int = 0


class LeaseManager:
    """Leases of ``lease_steps`` steps for one run, refilled ahead; see the module's docstring.

    Parameters: ``lease_steps`` (W, the smallest lease); ``lease_seconds``: leases grow (in multiples of W, up to
    ``max_lease_steps``) so that one lease lasts at least this long at the measured step rate — a loop of 1 ms
    steps leases 256 steps, one of 100 ms steps W; None: always W; ``refill_at``: the index in a window at which
    the next refill starts (default: half the window; 0 or >= the window: at its end, synchronously, after
    flushing metrics — with W=1 and slow steps, e.g. per epoch, that is torch's exact plateau timing);
    ``refill_budget``: the most seconds the training thread waits for a refill before evaluating locally;
    ``retry_for``: retry budget of each background call; ``start_timeout``: retry budget of the first lease
    and of a resume (they need the server); ``flush_every``: seconds after which queued metrics are sent even
    when no refill is due; ``metric_name``: the name plateau metrics are reported under (default: the run's
    plateau metric).
    """

    def __init__(
        self,
        run: RunHandle,
        *,
        lease_steps: int = 128,
        lease_seconds: float | None = 0.25,
        max_lease_steps: int = 4096,
        refill_at: int | None = None,
        refill_budget: float = 2.0,
        retry_for: float = 10.0,
        start_timeout: float = 60.0,
        flush_every: float = 10.0,
        metric_name: str | None = None,
    ) -> None:
        if lease_steps < 1:
            raise ValueError("lease_steps must be >= 1")
        self.run = run
        self.lease_steps = lease_steps
        self.lease_seconds = lease_seconds
        self.max_lease_steps = max(lease_steps, max_lease_steps) if lease_seconds else lease_steps
        self._refill_at = refill_at
        self._step_time: float | None = None  # seconds per training step, smoothed
        self._mark: tuple[float, int] | None = None
        self._current: tuple[int, int] = (0, lease_steps)  # the training thread's window (start, count)
        self.refill_budget = refill_budget
        self.retry_for = retry_for
        self.start_timeout = start_timeout
        self.flush_every = flush_every
        self._metric_name = metric_name
        self.incarnation: int | None = None
        self.group_names: list[str] = []
        self.stats = Stats()
        self.incident: Incident | None = None
        self.incidents: list[Incident] = []
        self._plan: LocalPlan | None = None
        self._plan_dirty = True
        self._plan_unsupported = False
        self._applied_unsupported = False
        self._last_metric_name: str | None = None
        self._server_ok = True
        self._lock = threading.Lock()
        self._metrics: deque[tuple[int | None, int, str, float]] = deque()
        self._applied: list[list[int]] = []  # [start, stop, last_seq, incarnation]
        self._inflight: _Refill | None = None
        self._last_flush = time.monotonic()
        self._worker = _Worker(self._idle, max(0.05, flush_every))
        self._closed = False
        atexit.register(self.close)

    # ---- the training thread's calls ----------------------------------------------------------------------------

    def start(self, step: int = 0) -> Window:
        """The first window (synchronous: it needs the server, retried for ``start_timeout`` s)."""
        info = self.run.ensure(retry_for=self.start_timeout)  # fresh: the incarnation may have moved on
        self.incarnation = info.incarnation
        self.group_names = list(info.group_names)
        plateau = info.spec.effective_plateau()
        self._last_metric_name = None if plateau is None else plateau.metric
        window = Window.from_json(
            self.run.lease_json(step, self.lease_steps, self.incarnation, retry_for=self.start_timeout)
        )
        self.incarnation = window.incarnation
        self._refresh_plan(window.last_seq, self.start_timeout)
        self.stats.windows_served += 1
        return self._taken(window)

    def refill_index(self, count: int) -> int:
        """Index in a window of ``count`` steps at which the next window's refill is queued."""
        return count // 2 if self._refill_at is None else self._refill_at

    @property
    def refill_at(self) -> int:
        return self.refill_index(self.lease_steps)

    def next_count(self) -> int:
        """Size of the next lease: W, grown so that it lasts ``lease_seconds`` at the measured step rate."""
        if not self.lease_seconds or self._step_time is None or self._step_time <= 0:
            return self.lease_steps
        want = self.lease_seconds / self._step_time
        w = self.lease_steps
        return int(min(self.max_lease_steps, max(w, math.ceil(want / w) * w)))

    def _observe(self, step: int) -> None:
        now = time.monotonic()
        if self._mark is not None and step > self._mark[1]:
            sample = (now - self._mark[0]) / (step - self._mark[1])
            self._step_time = sample if self._step_time is None else 0.5 * (self._step_time + sample)
        self._mark = (now, step)

    def _taken(self, window: Window) -> Window:
        self._current = (window.start, window.count)
        return window

    @property
    def plan(self) -> LocalPlan | None:
        return self._plan

    @property
    def offline(self) -> bool:
        return self.incident is not None

    def prefetch(self, start: int) -> None:
        """Queue the refill of the window starting at ``start`` (unless a refill is in flight)."""
        if self._inflight is not None and not self._inflight.future.done():
            return
        cur_start, cur_count = self._current
        self._observe(cur_start + self.refill_index(cur_count))
        self._consume_stale()
        self._inflight = self._submit(start)

    def next(self, start: int) -> Window:
        """The window starting at ``start``: the server's (waiting at most ``refill_budget`` s), else local."""
        reason = "a refill for an earlier window is still in flight"
        self._observe(start)
        for _ in range(2):
            refill = self._inflight
            if refill is None or (refill.start != start and refill.future.done()):
                self._consume_stale()
                refill = self._inflight = self._submit(start)
            elif refill.start != start:
                break  # an older refill still runs (an outage): don't queue more behind it
            budget = self.refill_budget if self._server_ok else 0.0
            try:
                window: Window = refill.future.result(timeout=budget)
            except cf.TimeoutError:
                refill.cancel.set()  # its retries stop; the window is evaluated here instead
                reason = f"no answer within the refill budget ({budget:g} s)"
                self._server_ok = False
                break
            except _Probed:
                self._inflight = None
                continue  # the server answered a probe: lease this window from it now
            except Exception as e:
                self._inflight = None
                if is_fatal(e):
                    raise
                reason = f"{type(e).__name__}: {e}"
                break
            self._inflight = None
            self._end_incident(start)
            return self._taken(window)
        return self._taken(self._local(start, reason))

    def report(self, step: int, value: float, name: str | None = None) -> None:
        """Queue a metric (sent at the next refill, after ``flush_every`` s, or at ``flush``/``close``)."""
        if name is None:
            name = self.metric_name()
            if name is None:
                raise ValueError(
                    f"run {self.run.run_id!r} has no plateau rules, so step(metric) has no metric name to report "
                    "under: give the scheduler metric_name=..., or add a plateau block to the run's spec"
                )
        with self._lock:
            self._metrics.append((self.incarnation, step, name, float(value)))

    def metric_name(self) -> str | None:
        if self._metric_name is not None:
            return self._metric_name
        plan = self._plan
        if plan is not None:
            name = plan.plateau_metric()
            if name is not None:
                self._last_metric_name = name
        return self._last_metric_name

    def pending_metrics(self) -> int:
        return len(self._metrics)

    def flush(self, timeout: float | None = None) -> bool:
        """Send queued metrics and offline-applied steps now; True when nothing is left queued."""
        future = self._worker.submit(self._flush_all, self.retry_for)
        try:
            future.result(timeout=timeout)
        except cf.TimeoutError:
            return False
        except Exception as e:
            if is_fatal(e):
                raise
            log.debug("flush failed: %r", e)
        return not self._metrics and not self._applied

    def resume(self, step: int, key: str | None) -> Window:
        """A restart from a checkpoint at ``step``: a new incarnation; returns the one-step window at ``step``."""
        self._settle(self.start_timeout)
        self.flush(timeout=self.start_timeout)
        result = self.run.resume(step, key=key, incarnation=self.incarnation)
        old = self.incarnation
        self.incarnation = result.incarnation
        with self._lock:
            stale = [m for m in self._metrics if m[0] is not None and m[0] != result.incarnation]
            if stale:
                log.warning(
                    "dropping %d metric(s) of incarnation %s that could not be sent before the resume", len(stale), old
                )
                self.stats.metrics_dropped += len(stale)
            self._metrics = deque(m for m in self._metrics if m[0] is None or m[0] == result.incarnation)
            self._applied = [a for a in self._applied if a[0] < step]
            for a in self._applied:
                a[1] = min(a[1], step - 1)
        self._plan_dirty = True
        self._end_incident(step)
        lr = np.array([g.lr for g in result.groups], dtype=np.float64).reshape(len(result.groups), -1)[:, :1]
        momentum = None
        if any(g.momentum is not None for g in result.groups):
            momentum = np.full(lr.shape, np.nan)
            for i, g in enumerate(result.groups):
                if g.momentum is not None:
                    momentum[i, 0] = g.momentum[0]
        last_seq = self._plan.last_seq if self._plan is not None else 0
        window = self._taken(Window(step, lr, momentum, result.incarnation, last_seq, 0, local=False))
        self._mark = None
        self._inflight = self._submit(step + 1)
        return window

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (at most ``timeout`` s), stop the background thread."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._metrics or self._applied:
            ok = self.flush(timeout=timeout)
            if not ok:
                log.warning(
                    "closing with %d metric(s) and %d offline range(s) not delivered to %s",
                    len(self._metrics),
                    len(self._applied),
                    self.run.client.base_url,
                )
        self._worker.stop(timeout=1.0)

    # ---- internals (training thread) ----------------------------------------------------------------------------

    def _submit(self, start: int) -> _Refill:
        cancel = threading.Event()
        count = self.next_count()
        return _Refill(start, self._worker.submit(self._refill, start, count, self.incarnation, cancel), cancel)

    def _consume_stale(self) -> None:
        """A finished refill nobody took (its window was evaluated locally meanwhile)."""
        if self._inflight is None or not self._inflight.future.done():
            return
        refill, self._inflight = self._inflight, None
        exc = refill.future.exception()
        if exc is None:
            self.stats.stale_windows += 1
            window: Window = refill.future.result()
            local = self._plan.window(window.start, window.count, window.incarnation) if self._plan else None
            if local is not None and not np.array_equal(local.lr, window.lr):
                log.warning(
                    "lrserve: the server answered the lease of steps %d..%d after the refill budget, with values "
                    "that differ from those applied locally (the run changed meanwhile); the run's history shows "
                    "the server's values for those steps",
                    window.start,
                    window.stop,
                )
        elif is_fatal(exc):
            raise exc

    def _settle(self, timeout: float) -> None:
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                self._inflight.future.result(timeout=timeout)
            self._inflight = None

    def _local(self, start: int, reason: str) -> Window:
        assert self.incarnation is not None
        plan = self._plan
        if plan is None:
            raise RuntimeError(
                f"lrserve server {self.run.client.base_url} is unreachable ({reason}) and no plan of run "
                f"{self.run.run_id!r} is cached to evaluate step {start} locally (does the server have GET /plan?)"
            )
        window = plan.window(start, self.next_count(), self.incarnation)
        with self._lock:
            last = self._applied[-1] if self._applied else None
            if last is not None and last[1] + 1 == start and last[2] == plan.last_seq and last[3] == self.incarnation:
                last[1] = window.stop
            else:
                self._applied.append([start, window.stop, plan.last_seq, self.incarnation])
        self.stats.windows_local += 1
        if self.incident is None:
            self.incident = Incident(first_step=start, reason=reason)
            self.stats.incidents += 1
            log.warning(
                "lrserve: server %s unreachable for run %r (%s): training goes on from step %d with LRs evaluated "
                "locally from the run's plan (revision %d, event %d); metrics are queued and replayed on reconnect",
                self.run.client.base_url,
                self.run.run_id,
                reason,
                start,
                plan.wire.revision,
                plan.last_seq,
            )
        self.incident.local_steps += window.count
        return window

    def _end_incident(self, step: int) -> None:
        incident, self.incident = self.incident, None
        self._server_ok = True
        if incident is not None:
            self.incidents.append(incident)
            log.warning(
                "lrserve: server %s reachable again for run %r at step %d, after %d locally evaluated steps "
                "(%.1f s); offline steps and queued metrics were delivered",
                self.run.client.base_url,
                self.run.run_id,
                step,
                incident.local_steps,
                time.monotonic() - incident.started,
            )

    # ---- internals (background thread) --------------------------------------------------------------------------

    def _refill(self, start: int, count: int, incarnation: int | None, cancel: threading.Event) -> Window:
        """Deliver what is queued, then lease the window. During an outage it only probes: it delivers what is
        queued (the steps applied offline first) and refreshes the plan, then raises ``_Probed``; the training
        thread then leases the window itself, waiting for the answer — so a lease answered late can never cover
        steps that were meanwhile evaluated locally."""
        online = self._server_ok
        budget = self.retry_for if online else 0.0
        try:
            self._flush_all(budget)
            if not online:
                self._refresh_plan(0, budget, force=True)
                self._server_ok = True
                raise _Probed
            window = Window.from_json(self.run.lease_json(start, count, incarnation, retry_for=budget, cancel=cancel))
            self._refresh_plan(window.last_seq, budget)
            window.rows  # noqa: B018 - computed here, off the training thread
        except _Probed:
            raise
        except Exception as e:
            if not is_fatal(e):
                self._server_ok = False
            raise
        self._server_ok = True
        self.stats.windows_served += 1
        return window

    def _refresh_plan(self, last_seq: int, budget: float, force: bool = False) -> None:
        if self._plan_unsupported:
            return
        plan = self._plan
        fresh = plan is not None and not self._plan_dirty and last_seq != 0 and last_seq == plan.last_seq
        if fresh and not force:
            return
        try:
            wire = self.run.plan(retry_for=budget)
        except LrserveError as e:
            if _route_missing(e):
                self._plan_unsupported = True
                log.warning(
                    "lrserve: server %s has no GET .../plan: no local evaluation during outages",
                    self.run.client.base_url,
                )
                return
            raise
        self._plan = LocalPlan.from_wire(wire)
        self._plan_dirty = False
        self.stats.plan_fetches += 1

    def _flush_all(self, budget: float) -> None:
        self._report_applied(budget)
        self._flush_metrics(budget)
        self._last_flush = time.monotonic()

    def _report_applied(self, budget: float) -> None:
        while True:
            with self._lock:
                if not self._applied:
                    return
                start, stop, last_seq, incarnation = self._applied[0]
            # the server prices one report by its steps (max_applied_steps): a long outage goes in pieces
            stop = min(stop, start + MAX_APPLIED_STEPS - 1)
            if self._applied_unsupported:
                with self._lock:
                    self._applied.clear()
                return
            try:
                self.run.applied(start, stop, last_seq, incarnation, retry_for=budget)
            except LrserveError as e:
                if _route_missing(e):
                    self._applied_unsupported = True
                    log.warning(
                        "lrserve: server %s has no POST .../applied: steps applied offline are not recorded",
                        self.run.client.base_url,
                    )
                    continue
                if isinstance(e, StaleIncarnation):
                    with self._lock:
                        self._applied.pop(0)
                    continue
                raise
            self.stats.applied_reports += 1
            with self._lock:
                if self._applied and self._applied[0][0] == start:
                    if self._applied[0][1] == stop:
                        self._applied.pop(0)
                    else:  # the training thread extended the range meanwhile: report the rest next time
                        self._applied[0][0] = stop + 1

    def _flush_metrics(self, budget: float) -> None:
        left = len(self._metrics)  # what is queued now; later metrics wait for the next flush
        while left > 0:
            with self._lock:
                if not self._metrics:
                    return
                incarnation = self._metrics[0][0]
                batch: list[tuple[int | None, int, str, float]] = []
                for m in self._metrics:
                    if m[0] != incarnation or len(batch) >= min(left, MAX_METRICS_PER_BATCH):
                        break
                    batch.append(m)
            left -= len(batch)
            try:
                # metrics reported before start() carry no incarnation: they belong to the one started since
                # (the server refuses a write without one once the run has resumed)
                fenced = incarnation if incarnation is not None else self.incarnation
                result = self.run.report_many([(s, n, v) for _, s, n, v in batch], fenced, retry_for=budget)
            except MetricConflict as e:
                bad = {int(err.loc[1]) for err in e.errors if len(err.loc) >= 2 and isinstance(err.loc[1], int)}
                for i in sorted(bad):
                    _, s, n, v = batch[i]
                    log.warning(
                        "lrserve: metric %s=%r at step %d conflicts with the value recorded (%s); dropped",
                        n,
                        v,
                        s,
                        e.errors[0].msg if e.errors else e.detail,
                    )
                if not bad:
                    raise
                self._drop(batch, bad)
                self.stats.metrics_dropped += len(bad)
                continue
            except StaleIncarnation:
                log.warning("lrserve: %d metric(s) of stale incarnation %s dropped", len(batch), incarnation)
                self._drop(batch, set(range(len(batch))))
                self.stats.metrics_dropped += len(batch)
                continue
            self.stats.metrics_sent += len(result.accepted)
            self.stats.metrics_duplicates += len(result.duplicates)
            self._drop(batch, set(range(len(batch))))

    def _drop(self, batch: Sequence[tuple[int | None, int, str, float]], indices: set[int]) -> None:
        """Remove ``batch[i]`` for i in ``indices`` from the queue (the batch is its head, in order)."""
        with self._lock:
            head = [self._metrics.popleft() for _ in range(len(batch))]
            keep = [m for i, m in enumerate(head) if i not in indices]
            self._metrics.extendleft(reversed(keep))

    def _idle(self) -> None:
        if (self._metrics or self._applied) and time.monotonic() - self._last_flush >= self.flush_every:
            try:
                self._flush_all(self.retry_for if self._server_ok else 0.0)
            except Exception as e:
                log.debug("periodic flush failed: %r", e)
