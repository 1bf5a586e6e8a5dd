"""What the server counts (Prometheus, ``GET /metrics``) and the info lines it writes about runs.

One ``Telemetry`` per application, on a ``CollectorRegistry`` of its own (never prometheus-client's global one), so
tests that build many apps in one process do not collide. Each server process exposes its own counters: with
replicas, Prometheus scrapes every replica (``deploy/README_OPS.md``) and sums.

============================================  =======  ======================================================
metric                                        type     meaning
============================================  =======  ======================================================
lrserve_http_requests_total                   counter  requests by ``method``, ``route`` (the template, e.g.
                                                       ``/v1/runs/{run_id}/lr``; ``unmatched`` for unknown
                                                       paths) and ``status``
lrserve_http_request_duration_seconds         hist.    time from the request's arrival to its last byte, by
                                                       ``method`` and ``route``
lrserve_runs                                  gauge    runs in the store (counted at each scrape)
lrserve_leases_total                          counter  leases (``GET .../lr``) served, by ``source``: ``cache``
                                                       (every step frozen, answered from memory, no store I/O)
                                                       or ``store`` (the store was read, or written)
lrserve_horizon_extensions_total              counter  leases that extended a run's horizon (a write)
lrserve_metrics_posted_total                  counter  metrics posted, by ``outcome``: ``accepted`` or
                                                       ``duplicate`` (a retry, recorded before)
lrserve_plateau_reductions_total              counter  plateau reductions recorded
lrserve_changes_total                         counter  mid-run changes recorded, by ``op`` (dry runs excluded)
lrserve_resumes_total                         counter  resumes (new incarnations) recorded
lrserve_build_info                            gauge    1, with the server's ``version``
process_*                                     various  CPU, memory, file descriptors of this process
============================================  =======  ======================================================

Counting costs a few hundred nanoseconds a call: label children are looked up once and kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lrserve.schemas.errors import LrserveError
from lrserve.service.logs import fields

if TYPE_CHECKING:
    from lrserve.schemas.wire import ChangeIn, ChangeResult, MetricsResult, ResumeResult

log = logging.getLogger("lrserve.runs")
# No ``*_created`` series (a timestamp per label set, doubling the page): process-wide, as prometheus-client has it.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Seconds. The frozen lease takes ~0.1 ms in the server, a 1M-point curve ~0.2 s: both ends matter.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNMATCHED = "unmatched"


class _RunsCollector(Collector):
    """``lrserve_runs``: asks the store at each scrape; no sample when the store does not answer."""

    def __init__(self) -> None:
        self.count: Callable[[], int] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.count is None:
            return []
        try:
            n = self.count()
        except LrserveError:
            return []  # /readyz reports the store; a scrape still gets everything else
        family = GaugeMetricFamily("lrserve_runs", "Runs in the store (counted at each scrape).")
        family.add_metric([], n)
        return [family]


class Telemetry:
    """The application's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, version: str = "0") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        Gauge("lrserve_build_info", "The lrserve version (value 1).", ["version"], registry=r).labels(version).set(1)
        self._requests = Counter(
            "lrserve_http_requests", "HTTP requests by route template and status.", ["method", "route", "status"],
            registry=r,
        )  # fmt: skip
        self._latency = Histogram(
            "lrserve_http_request_duration_seconds", "HTTP request duration by route template.", ["method", "route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        leases = Counter(
            "lrserve_leases", "Leases served, by source: cache (no store I/O) or store.", ["source"], registry=r
        )
        self.lease_from_cache = leases.labels("cache")
        self.lease_from_store = leases.labels("store")
        self.horizon_extension = Counter(
            "lrserve_horizon_extensions", "Leases that extended a run's horizon (a write).", registry=r
        )
        posted = Counter("lrserve_metrics_posted", "Metrics posted, by outcome.", ["outcome"], registry=r)
        self._accepted, self._duplicate = posted.labels("accepted"), posted.labels("duplicate")
        self._reductions = Counter("lrserve_plateau_reductions", "Plateau reductions recorded.", registry=r)
        self._changes = Counter("lrserve_changes", "Mid-run changes recorded, by op.", ["op"], registry=r)
        self._resumes = Counter("lrserve_resumes", "Resumes (new incarnations) recorded.", registry=r)
        self._runs = _RunsCollector()
        r.register(self._runs)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._children_lock = threading.Lock()

    def count_runs_with(self, count: Callable[[], int] | None) -> None:
        """Where ``lrserve_runs`` comes from (the store's ``count_runs``), or None to leave it out."""
        self._runs.count = count

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- HTTP ---------------------------------------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            with self._children_lock:
                children = self._children.setdefault(
                    key, (self._requests.labels(method, route, str(status)), self._latency.labels(method, route))
                )
        children[0].inc()
        children[1].observe(seconds)

    # ---- the run model (called by RunService after its transaction committed) ----------------------------------

    def metrics_posted(self, run_id: str, result: MetricsResult, actor: str | None) -> None:
        if result.accepted:
            self._accepted.inc(len(result.accepted))
        if result.duplicates:
            self._duplicate.inc(len(result.duplicates))
        for red in result.reductions:
            self._reductions.inc()
            log.info(
                "run %s: plateau reduction x%s from step %d (metric at step %d)",
                run_id, _factors(red.multipliers), red.from_step, red.metric_step,
                extra=fields(
                    event="reduction", run_id=run_id, metric_step=red.metric_step, from_step=red.from_step,
                    multipliers=red.multipliers, actor=actor,
                ),
            )  # fmt: skip

    def changed(self, run_id: str, change: ChangeIn, result: ChangeResult, actor: str | None) -> None:
        self._changes.labels(change.op).inc()
        log.info(
            "run %s: change %s (revision %d) from step %d by %s",
            run_id, change.op, result.revision, result.from_step, actor or "-",
            extra=fields(
                event="change", run_id=run_id, op=change.op, revision=result.revision, from_step=result.from_step,
                event_seq=result.event_seq, actor=actor, reason=change.reason,
            ),
        )  # fmt: skip

    def resumed(self, run_id: str, result: ResumeResult, actor: str | None, new: bool) -> None:
        if not new:
            return  # a retried resume (same key): nothing recorded
        self._resumes.inc()
        log.info(
            "run %s: resumed from step %d as incarnation %d by %s",
            run_id, result.step, result.incarnation, actor or "-",
            extra=fields(event="resume", run_id=run_id, step=result.step, incarnation=result.incarnation, actor=actor),
        )  # fmt: skip


def _factors(multipliers: Sequence[float]) -> str:
    return "[" + ", ".join(f"{m:g}" for m in multipliers) + "]"


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "UNMATCHED", "Telemetry"]
