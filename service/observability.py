"""What the server counts (Prometheus, ``GET /metrics``) and the info lines it writes about runs.

One ``Telemetry`` per application, on a ``CollectorRegistry`` of its own (never prometheus-client's global one), so
tests that build many apps in one process do not collide. Each server process exposes its own counters: with
replicas, Prometheus scrapes every replica (README, Operations) and sums.

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

The HTTP pair is counted on every request, ahead of the hottest call (a frozen lease, ~0.1 ms in all), so it is
not prometheus-client's ``Counter``/``Histogram`` (a lock per increment and a Python loop over the buckets, ~10 %
of that call) but ``_HttpCollector``: plain dicts and lists updated from the event loop, turned into the same
families at each scrape. The run-model counters are prometheus-client's (a few hundred nanoseconds each).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
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


class _HttpCollector(Collector):
    """Requests by (method, route, status) and a latency histogram by (method, route).

    ``observe`` runs on the event loop only (``RequestLog`` is ASGI middleware), so its updates need no lock; a
    scrape, in a worker thread, copies each dict and list in one step (atomic under the GIL) and derives every
    cumulative bucket and the count from one copy, so a family is always self-consistent.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = sorted(buckets)
        self.labels = [repr(float(b)) for b in self.bounds] + ["+Inf"]  # as prometheus-client writes them
        self.requests: dict[tuple[str, str, int], int] = {}
        #: per (method, route): a count per bucket (the last one above every bound), then the sum of seconds
        self.latency: dict[tuple[str, str], list[float]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get((method, route))
        if histogram is None:
            histogram = self.latency[(method, route)] = [0.0] * (len(self.bounds) + 2)
        histogram[bisect_left(self.bounds, seconds)] += 1  # le: the first bound >= seconds
        histogram[-1] += seconds

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "lrserve_http_requests", "HTTP requests by route template and status.", labels=["method", "route", "status"]
        )
        for (method, route, status), n in list(self.requests.items()):
            requests.add_metric([method, route, str(status)], n)
        latency = HistogramMetricFamily(
            "lrserve_http_request_duration_seconds", "HTTP request duration by route template.",
            labels=["method", "route"],
        )  # fmt: skip
        for (method, route), histogram in list(self.latency.items()):
            counts = list(histogram)
            cumulative, buckets = 0.0, []
            for label, in_bucket in zip(self.labels, counts[:-1], strict=True):
                cumulative += in_bucket
                buckets.append((label, cumulative))
            latency.add_metric([method, route], buckets, sum_value=counts[-1])
        return [requests, latency]


class Telemetry:
    """The application's metrics; ``render()`` is the body of ``GET /metrics``."""

    def __init__(self, version: str = "0") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        Gauge("lrserve_build_info", "The lrserve version (value 1).", ["version"], registry=r).labels(version).set(1)
        self._http = _HttpCollector(LATENCY_BUCKETS)
        r.register(self._http)
        #: ``observe_request(method, route, status, seconds)``: from the event loop (ASGI middleware) only
        self.observe_request = self._http.observe
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

    def count_runs_with(self, count: Callable[[], int] | None) -> None:
        """Where ``lrserve_runs`` comes from (the store's ``count_runs``), or None to leave it out."""
        self._runs.count = count

    def render(self) -> bytes:
        return generate_latest(self.registry)

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
