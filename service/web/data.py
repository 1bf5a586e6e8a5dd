"""What the web page draws, computed on the server: downsampled curves, metric series, run rows.

Everything here goes through ``RunService``'s public methods (``get_run``, ``list_runs``, ``curve``, ``events``,
``change`` with ``dry_run``, ``preview_curve``), so the page shows exactly what the API serves.
"""

from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from lrserve.schemas.evaluate import build
from lrserve.schemas.specs.base import schedule_type
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.wire import MAX_CURVE_POINTS, ChangeIn, CurveRequest, MetricIn, RunPublic
from lrserve.service.domain.views import CurveData
from lrserve.service.runs import RunService
from lrserve.service.web.downsample import minmax, sampling_stride

#: Steps evaluated for one drawing at most (then min/max per pixel column). A 1M-step run is evaluated at
#: every 4th step: ~0.1 s; a schedule that oscillates faster than that cannot be told apart on a screen anyway.
EVAL_BUDGET = 250_000
#: Steps a change preview evaluates at most (the service's dry run evaluates every step from ``from_step``).
PREVIEW_BUDGET = MAX_CURVE_POINTS
METRIC_PAGE = 10_000
#: Non-metric events sent with a plot at most (the latest).
MAX_EVENTS = 500
RANGE_TEST = "LRRangeTest"


def default_stop(run: RunPublic) -> int:
    """The end of the range drawn when the page asks for none: the schedule's end, or a quarter past the horizon."""
    next_step = run.horizon + 1
    if run.total_steps is not None:
        return max(run.total_steps, next_step + 1)
    return max(1000, next_step + max(100, next_step // 4))


def _rows(values: np.ndarray[Any, np.dtype[np.float64]]) -> list[np.ndarray[Any, np.dtype[np.float64]]]:
    return [np.ascontiguousarray(row) for row in values]


def drawn_curve(data: CurveData, width: int, cuts: list[int]) -> dict[str, Any]:
    """A curve reduced to two points per pixel column; momentum rows follow the LR rows."""
    groups = len(data.group_names)
    rows = data.lr if data.momentum is None else np.vstack([data.lr, data.momentum])
    small = minmax(data.steps, rows, width, cuts)
    lr = _rows(small.y[:groups])
    mom = _rows(small.y[groups:]) if data.momentum is not None else [None] * groups
    return {
        "x": small.x,
        "groups": [{"name": n, "lr": lr[g], "momentum": mom[g]} for g, n in enumerate(data.group_names)],
        "evaluated": int(data.steps.shape[0]),
        "stride": data.stride,
    }


# ---- metric series ----------------------------------------------------------------------------------------------


@dataclass
class _Series:
    steps: array[int] = field(default_factory=lambda: array("q"))
    values: array[float] = field(default_factory=lambda: array("d"))


@dataclass
class _RunMetrics:
    created_at: datetime
    last_seq: int = 0
    series: dict[str, _Series] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


Series = dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]


class MetricSeries:
    """Per run: for each metric name the values that count now (a resume to step k drops those at steps >= k),
    and every other event (created, change, reduction, resume, applied; few) for the events table. Read
    incrementally from the run's events and kept per process (events are append-only)."""

    def __init__(self) -> None:
        self._runs: dict[str, _RunMetrics] = {}
        self._lock = threading.Lock()

    def get(self, service: RunService, run: RunPublic) -> tuple[Series, list[dict[str, Any]]]:
        with self._lock:
            known = self._runs.get(run.run_id)
            if known is None or known.created_at != run.created_at:
                known = self._runs[run.run_id] = _RunMetrics(created_at=run.created_at)
        with known.lock:  # one reader per run catches up with the store; other runs are not held up
            self._catch_up(service, run.run_id, known)
            out = {}
            for name, s in known.series.items():
                steps = np.frombuffer(s.steps, dtype=np.int64).copy()
                values = np.frombuffer(s.values, dtype=np.float64).copy()
                order = np.argsort(steps, kind="stable")
                steps, values = steps[order], values[order]
                # A step posted again (after a resume) keeps its latest value.
                keep = np.append(steps[1:] != steps[:-1], True) if steps.size else np.zeros(0, dtype=bool)
                out[name] = (steps[keep], values[keep])
            return out, list(known.others)

    def _catch_up(self, service: RunService, run_id: str, known: _RunMetrics) -> None:
        while True:
            page = service.events(run_id, known.last_seq, METRIC_PAGE)
            for event in page.events:
                p = event.payload
                if event.kind == "metric":
                    s = known.series.setdefault(str(p["name"]), _Series())
                    s.steps.append(int(p["step"]))
                    s.values.append(float(p["value"]))
                elif event.kind == "resume":
                    k = int(p["step"])
                    for name, s in list(known.series.items()):
                        kept = [(st, v) for st, v in zip(s.steps, s.values, strict=True) if st < k]
                        known.series[name] = _Series(
                            array("q", [st for st, _ in kept]), array("d", [v for _, v in kept])
                        )
                if event.kind != "metric":
                    known.others.append(event.model_dump(mode="json"))
                known.last_seq = event.seq
            if page.next_after is None:
                return

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)


def _metric_points(steps: np.ndarray[Any, Any], values: np.ndarray[Any, Any], width: int) -> dict[str, Any]:
    small = minmax(steps, values[None, :], width)
    return {"x": small.x, "y": np.ascontiguousarray(small.y[0]), "count": int(steps.shape[0])}


# ---- the run page -----------------------------------------------------------------------------------------------


def run_row(run: RunPublic) -> dict[str, Any]:
    """One line of the runs list."""
    return {
        "run_id": run.run_id,
        "labels": run.labels,
        "schedule_type": run.schedule_type,
        "horizon": run.horizon,
        "total_steps": run.total_steps,
        "revision": run.revision,
        "incarnation": run.incarnation,
        "group_names": run.group_names,
        "current_lr": run.current_lr,
        "last_metric": None if run.last_metric is None else run.last_metric.model_dump(mode="json"),
        "plateau": None if run.plateau is None else run.plateau.model_dump(mode="json"),
        "updated_at": run.updated_at,
        "created_at": run.created_at,
    }


def run_plot(
    service: RunService,
    metrics: MetricSeries,
    run_id: str,
    *,
    start: int,
    stop: int | None,
    width: int,
    max_points: int,
) -> dict[str, Any]:
    run = service.get_run(run_id)
    stop = default_stop(run) if stop is None else stop
    stop = max(stop, start + 1)
    stride = sampling_stride(stop - start, min(EVAL_BUDGET, max_points))
    data = service.curve(run_id, start, stop, stride)
    cuts = [run.horizon + 1, *(m.step for m in data.markers)]
    series, events = metrics.get(service, run)
    plateau_metric = run.plateau.metric if run.plateau is not None else None
    out: dict[str, Any] = {
        "run": run_row(run),
        "spec": run.spec.model_dump(mode="json"),
        "start": start,
        "stop": stop,
        "horizon": run.horizon,
        "revision": run.revision,
        "curve": drawn_curve(data, width, cuts),
        "markers": [m.model_dump(mode="json") for m in data.markers],
        "plateau_metric": plateau_metric,
        "metrics": {name: _metric_points(s, v, width) for name, (s, v) in series.items()},
        "range_test": None,
        "events": events[-MAX_EVENTS:],
        "events_total": run_events_total(series, events),
    }
    if schedule_type(run.spec.schedule) == RANGE_TEST:
        out["range_test"] = _range_test(service, run_id, series, str(getattr(run.spec.schedule, "metric", "loss")))
    return out


def run_events_total(series: Series, events: list[dict[str, Any]]) -> dict[str, int]:
    return {"metric": sum(int(s.shape[0]) for s, _ in series.values()), "other": len(events)}


def _range_test(service: RunService, run_id: str, series: Series, metric: str) -> dict[str, Any] | None:
    """Loss (the test's ``metric``) against the LR it was measured at (first group), for the loss-vs-LR plot."""
    if metric not in series or series[metric][0].size == 0:
        return {"lr": [], "loss": [], "metric": metric}
    steps, losses = series[metric]
    lo, hi = int(steps[0]), int(steps[-1])
    if hi - lo + 1 > MAX_CURVE_POINTS:
        return None
    data = service.curve(run_id, lo, hi + 1, 1)
    return {"lr": np.ascontiguousarray(data.lr[0][steps - lo]), "loss": losses, "metric": metric}


def change_preview(
    service: RunService, run_id: str, change: ChangeIn, actor: str | None, *, stop: int | None, width: int
) -> dict[str, Any]:
    """A dry run of ``change`` over ``from_step .. stop``, both curves reduced for drawing."""
    run = service.get_run(run_id)
    from_step = run.horizon + 1 if change.from_step is None else change.from_step
    stop = default_stop(run) if stop is None else stop
    steps = min(max(1, stop - from_step), PREVIEW_BUDGET)
    dry = change.model_copy(update={"dry_run": True, "preview_steps": steps})
    result = service.change(run_id, dry, actor)
    assert result.current is not None
    assert result.proposed is not None
    names = [g.name for g in result.current.groups]
    rows = np.array([g.lr for g in result.current.groups] + [g.lr for g in result.proposed.groups], dtype=np.float64)
    small = minmax(np.asarray(result.current.steps, dtype=np.int64), rows, width)
    g = len(names)
    return {
        "from_step": result.from_step,
        "revision": result.revision,
        "x": small.x,
        "group_names": names,
        "current": _rows(small.y[:g]),
        "proposed": _rows(small.y[g:]),
    }


# ---- the spec playground ----------------------------------------------------------------------------------------


def spec_curve(
    service: RunService,
    spec: RunSpec,
    *,
    start: int,
    stop: int | None,
    width: int,
    max_points: int,
    metrics: list[MetricIn],
) -> dict[str, Any]:
    if stop is None:
        total = build(spec).total_steps
        stop = total if total is not None else 1000
    stop = max(stop, start + 1)
    stride = sampling_stride(stop - start, min(EVAL_BUDGET, max_points))
    req = CurveRequest(spec=spec, start=start, stop=stop, stride=stride, metrics=metrics)
    data = service.preview_curve(req)
    return {
        "spec": spec.model_dump(mode="json"),
        "start": start,
        "stop": stop,
        "curve": drawn_curve(data, width, [m.step for m in data.markers]),
        "markers": [m.model_dump(mode="json") for m in data.markers],
    }
