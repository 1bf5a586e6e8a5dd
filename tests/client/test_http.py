"""LRClient against the real app under uvicorn: typed answers, problem+json raised as the error classes, retries."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import httpx
import pytest

from lrserve.client import LRClient, ServerUnreachable
from lrserve.client.http import error_from_response
from lrserve.schemas.errors import (
    HorizonConflict,
    InvalidInput,
    LrserveError,
    MetricConflict,
    RunExists,
    RunNotFound,
    SpecInvalid,
    StaleIncarnation,
    Unavailable,
)
from lrserve.schemas.wire import ChangeResult, LrWindow, RunPublic
from tests.client.conftest import ONECYCLE_SPEC, ThreadServer

PLATEAU_SPEC = {
    "param_groups": [{"name": "default", "lr": 0.1}],
    "schedule": {"type": "StepLR", "step_size": 1000, "gamma": 0.5},
    "plateau": {"metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 0},
}


def test_run_values_report_change_curve_are_typed(server: ThreadServer, run_id: str) -> None:
    with LRClient(server.url) as client:
        run = client.run(run_id, spec=PLATEAU_SPEC, labels={"team": "a"})
        assert isinstance(run.info, RunPublic) and run.info.horizon == -1
        window = run.values(0, 5)
        assert isinstance(window, LrWindow)
        assert window.groups[0].lr == [0.1] * 5 and window.groups[0].momentum is None
        assert window.last_seq >= 1 and window.incarnation == 1
        first = run.report(3, "val_loss", 1.0)
        assert [m.step for m in first.accepted] == [3]
        again = run.report(3, "val_loss", 1.0)  # a replay: a no-op that says so
        assert again.accepted == [] and [m.step for m in again.duplicates] == [3]
        worse = run.report(4, "val_loss", 2.0)
        assert worse.reduction_from_step == 5  # first unserved step
        change = run.scale(0.1, reason="test")
        assert isinstance(change, ChangeResult) and change.applied and change.from_step == 5
        curve = run.curve(0, 8)
        assert curve.steps == list(range(8))
        assert curve.groups[0].lr[:5] == [0.1] * 5
        assert math.isclose(curve.groups[0].lr[5], 0.1 * 0.5 * 0.1)
        assert {m.kind for m in curve.markers} == {"change", "reduction"}
        plan = run.plan()
        assert plan.last_seq == run.values(0, 1).last_seq and len(plan.changes) == 1 and len(plan.reductions) == 1
        # Same id, same spec: the same run (every rank may call it); another spec: RunExists.
        assert client.run(run_id, spec=PLATEAU_SPEC).info.revision == 1  # type: ignore[union-attr]
        with pytest.raises(RunExists):
            client.run(run_id, spec=ONECYCLE_SPEC)


def test_nan_metric_round_trips(server: ThreadServer, run_id: str) -> None:
    with LRClient(server.url) as client:
        run = client.run(run_id, spec=PLATEAU_SPEC)
        run.values(0, 3)
        result = run.report(1, "val_loss", float("nan"))
        assert len(result.accepted) == 1 and math.isnan(result.accepted[0].value)
        assert len(run.report(1, "val_loss", float("nan")).duplicates) == 1


def test_problem_responses_raise_the_matching_class(server: ThreadServer, run_id: str) -> None:
    with LRClient(server.url) as client:
        bad = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 0}}
        with pytest.raises(SpecInvalid) as spec_error:
            client.run(run_id, spec=bad)
        assert any(e.loc[:2] == ("spec", "schedule") for e in spec_error.value.errors)
        assert "step_size" in str(spec_error.value)  # the field errors are shown to the user
        with pytest.raises(RunNotFound):
            client.run("no-such-run-" + run_id)
        run = client.run(run_id, spec=PLATEAU_SPEC)
        run.values(0, 10)
        with pytest.raises(HorizonConflict) as horizon:
            run.change("scale", factor=2.0, from_step=3)
        assert horizon.value.extra["horizon"] == 9
        run.report(2, "val_loss", 1.0)
        with pytest.raises(MetricConflict) as conflict:
            run.report(2, "val_loss", 3.0)
        assert conflict.value.errors and conflict.value.errors[0].loc[:2] == ("metrics", 0)
        resumed = run.resume(5, key="k1")
        assert resumed.incarnation == 2 and resumed.groups[0].lr == [0.1]
        assert run.resume(5, key="k1").incarnation == 2  # same key: the same resume
        with pytest.raises(StaleIncarnation):
            run.values(20, 1, incarnation=1)
        with pytest.raises(InvalidInput):
            run.values(0, 0)


def test_error_mapping_without_a_problem_body() -> None:
    request = httpx.Request("GET", "http://x/v1/runs/a")
    assert isinstance(error_from_response(httpx.Response(503, text="busy", request=request)), Unavailable)
    err = error_from_response(
        httpx.Response(418, json={"type": "teapot", "title": "t", "detail": "d"}, request=request)
    )
    assert type(err) is LrserveError and err.extra["status"] == 418


def test_transient_failures_are_retried_with_backoff() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return httpx.Response(503, json={"type": "unavailable", "title": "u", "status": 503, "detail": "later"})
        return httpx.Response(200, json={"status": "ok"})

    client = LRClient("http://lrserve.test", transport=httpx.MockTransport(handler), retry_for=5)
    assert client.request("GET", "/healthz").json() == {"status": "ok"}
    assert len(calls) == 3


def test_a_change_is_not_retried_once_it_may_have_reached_the_server() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise httpx.ReadTimeout("slow", request=request)

    client = LRClient("http://lrserve.test", transport=httpx.MockTransport(handler), retry_for=0.5)
    run = client.run("r", lazy=True)
    with pytest.raises(ServerUnreachable):
        run.scale(0.5)
    assert len(calls) == 1  # a scale applied twice would be wrong
    calls.clear()
    with pytest.raises(ServerUnreachable):
        run.values(0, 1)  # idempotent: retried until the budget ran out
    assert len(calls) > 1


def test_retry_budget_bounds_the_call() -> None:
    port_without_server = 9  # discard: nothing listens on it here
    client = LRClient(f"http://127.0.0.1:{port_without_server}", retry_for=0.5)
    t0 = __import__("time").monotonic()
    with pytest.raises(ServerUnreachable):
        client.run("r", lazy=True).values(0, 1)
    assert __import__("time").monotonic() - t0 < 3


def test_importing_the_client_does_not_import_torch() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any import of torch now fails
        import lrserve.client
        from lrserve.client import LRClient, LeaseManager
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        try:
            lrserve.client.RemoteScheduler
        except ImportError:
            print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
