"""``GET /metrics``: what each counter counts, bounded route labels, the scope it needs, a registry per app."""

from __future__ import annotations

import httpx
import pytest

from lrserve.service.observability import Telemetry
from tests.ops.conftest import Serve, scrape, value
from tests.service.api.conftest import SPEC, bearer, create_run, token_configs

LR = "/v1/runs/{run_id}/lr"


def lease(client: httpx.Client, run_id: str, step: int, count: int = 1) -> None:
    response = client.get(f"/v1/runs/{run_id}/lr", params={"step": step, "count": count})
    assert response.status_code == 200, response.text


def test_leases_by_source_and_horizon_extensions(serve: Serve) -> None:
    client = serve()
    create_run(client, "job")
    lease(client, "job", 0, 10)  # past the horizon: a write
    lease(client, "job", 10, 5)  # again
    for step in range(12):  # frozen: the fast path, from memory
        lease(client, "job", step)
    lease(client, "job", 14, 2)  # straddles the horizon (14): the store
    m = scrape(client)
    assert value(m, "lrserve_leases_total", source="cache") == 12
    assert value(m, "lrserve_leases_total", source="store") == 3
    assert value(m, "lrserve_horizon_extensions_total") == 3
    # Each lease is one request, whichever path answered it.
    assert value(m, "lrserve_http_requests_total", method="GET", route=LR, status="200") == 15
    assert value(m, "lrserve_http_request_duration_seconds_count", method="GET", route=LR) == 15


def test_store_reads_of_frozen_steps_after_a_restart(serve: Serve, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A process that has not cached the run reads it from the store once, then answers from memory."""
    db = tmp_path_factory.mktemp("restart") / "lrserve.db"
    first = serve(store=f"sqlite:///{db}")
    create_run(first, "job")
    lease(first, "job", 0, 100)
    second = serve(store=f"sqlite:///{db}")  # another app on the same file: an empty cache
    lease(second, "job", 50)
    lease(second, "job", 51)
    m = scrape(second)
    assert value(m, "lrserve_leases_total", source="store") == 1
    assert value(m, "lrserve_leases_total", source="cache") == 1
    assert value(m, "lrserve_horizon_extensions_total") == 0


def test_metrics_reductions_changes_and_resumes(serve: Serve) -> None:
    client = serve()
    create_run(client, "job")  # plateau on val_loss, patience 1, factor 0.5
    lease(client, "job", 0, 10)
    for step, loss in ((1, 1.0), (2, 2.0), (3, 3.0)):  # two bad epochs after the best: one reduction
        client.post("/v1/runs/job/metrics", json={"step": step, "name": "val_loss", "value": loss}).raise_for_status()
    retry = client.post("/v1/runs/job/metrics", json={"step": 3, "name": "val_loss", "value": 3.0}).json()
    assert retry["duplicates"] and not retry["accepted"]
    batch = {"metrics": [{"step": 4, "name": "val_loss", "value": 0.5}, {"step": 4, "name": "acc", "value": 0.9}]}
    client.post("/v1/runs/job/metrics", json=batch).raise_for_status()
    client.post("/v1/runs/job/changes", json={"op": "scale", "factor": 0.5}).raise_for_status()
    client.post("/v1/runs/job/changes", json={"op": "scale", "factor": 2, "dry_run": True}).raise_for_status()
    client.post("/v1/runs/job/changes", json={"op": "set", "lr": 0.01}).raise_for_status()
    client.post("/v1/runs/job/changes", json={"op": "set", "lr": 0.01, "expected_revision": 0})  # 409: not counted
    client.post("/v1/runs/job/resume", json={"step": 5, "key": "ckpt-5"}).raise_for_status()
    client.post("/v1/runs/job/resume", json={"step": 5, "key": "ckpt-5"}).raise_for_status()  # a retry
    m = scrape(client)
    assert value(m, "lrserve_metrics_posted_total", outcome="accepted") == 5
    assert value(m, "lrserve_metrics_posted_total", outcome="duplicate") == 1
    assert value(m, "lrserve_plateau_reductions_total") == 1
    assert value(m, "lrserve_changes_total", op="scale") == 1
    assert value(m, "lrserve_changes_total", op="set") == 1
    assert value(m, "lrserve_resumes_total") == 1
    assert value(m, "lrserve_http_requests_total", method="POST", route="/v1/runs/{run_id}/changes", status="409") == 1


def test_runs_gauge_counts_the_store(serve: Serve) -> None:
    client = serve()
    for i in range(3):
        create_run(client, f"run-{i}")
    assert value(scrape(client), "lrserve_runs") == 3
    assert client.delete("/v1/runs/run-1").status_code == 204
    assert value(scrape(client), "lrserve_runs") == 2


def test_route_labels_are_templates_never_raw_paths(serve: Serve) -> None:
    client = serve(limits={"max_body_bytes": 1024})
    create_run(client, "secret-job-name")
    lease(client, "secret-job-name", 0, 3)
    lease(client, "secret-job-name", 1)  # the fast path
    assert client.get("/v1/runs/secret-job-name").status_code == 200
    assert client.get("/no/such/page-123").status_code == 404
    too_big = client.post("/v1/runs/secret-job-name/metrics", content=b"{" + b" " * 2000 + b"}")
    assert too_big.status_code == 413  # refused by BodyLimit, before routing
    assert client.delete("/v1/runs/secret-job-name/lr").status_code == 405
    m = scrape(client)
    routes = {dict(labels).get("route") for name, labels in m if name == "lrserve_http_requests_total"}
    assert routes == {"/v1/runs/{run_id}", LR, "/v1/runs/{run_id}/metrics", "unmatched"}
    assert value(m, "lrserve_http_requests_total", method="POST", route="/v1/runs/{run_id}/metrics", status="413") == 1
    assert value(m, "lrserve_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(m, "lrserve_http_requests_total", method="DELETE", route=LR, status="405") == 1
    assert value(m, "lrserve_http_requests_total", method="GET", route=LR, status="200") == 2
    assert not any("secret-job-name" in v for _, labels in m for _, v in labels)


def test_latency_histogram_buckets(serve: Serve) -> None:
    client = serve()
    create_run(client, "job")
    for _ in range(4):
        assert client.get("/healthz").status_code == 200
    m = scrape(client)
    buckets = {
        dict(labels)["le"]: v
        for (name, labels), v in m.items()
        if name == "lrserve_http_request_duration_seconds_bucket" and dict(labels)["route"] == "/healthz"
    }
    assert buckets["+Inf"] == 4
    assert buckets["0.0001"] <= buckets["0.001"] <= buckets["0.1"] <= buckets["+Inf"]
    assert 0 < value(m, "lrserve_http_request_duration_seconds_sum", method="GET", route="/healthz") < 4 * 1.0
    assert value(m, "lrserve_build_info", version=client.get("/openapi.json").json()["info"]["version"]) == 1
    assert value(m, "process_resident_memory_bytes") > 1e6


@pytest.mark.parametrize(
    ("credential", "status"), [("none", 401), ("unknown", 401), ("read", 200), ("train", 200), ("admin", 200)]
)
def test_metrics_needs_the_read_scope(serve: Serve, credential: str, status: int) -> None:
    client = serve(tokens=token_configs())
    special: dict[str, dict[str, str]] = {"none": {}, "unknown": {"Authorization": "Bearer nope"}}
    headers = special[credential] if credential in special else bearer(credential)
    response = client.get("/metrics", headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["content-type"] == "application/problem+json"


def test_metrics_off(serve: Serve) -> None:
    client = serve(metrics=False)
    assert client.get("/metrics").status_code == 404
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_each_app_has_its_own_registry(serve: Serve) -> None:
    one, two = serve(), serve()
    create_run(one, "a", spec=SPEC)
    lease(one, "a", 0)
    assert value(scrape(one), "lrserve_horizon_extensions_total") == 1
    assert value(scrape(two), "lrserve_horizon_extensions_total") == 0
    assert Telemetry().registry is not Telemetry().registry
