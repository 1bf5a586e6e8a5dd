"""Every endpoint and its error paths, through the real app on a real SQLite file."""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import httpx
import numpy as np
import pytest

from lrserve.schemas.errors import Unavailable
from lrserve.schemas.wire import (
    AppliedResult,
    ChangeResult,
    Curve,
    EventPage,
    LrWindow,
    MetricsResult,
    ResumeResult,
    RunPage,
    RunPlan,
    RunPublic,
)
from lrserve.service.runs import RunService
from tests.service.api.conftest import OTHER_SPEC, SPEC, Serve, create_run
from tests.service.api.test_problems import assert_problem

CYCLIC = {
    "param_groups": [{"name": "g", "lr": 0.1}],
    "schedule": {"type": "OneCycleLR", "max_lr": 1.0, "total_steps": 100},
}


def lease(client: httpx.Client, step: int, count: int = 1, run_id: str = "run-1", **params: Any) -> LrWindow:
    response = client.get(f"/v1/runs/{run_id}/lr", params={"step": step, "count": count, **params})
    assert response.status_code == 200, response.text
    return LrWindow.model_validate_json(response.content)


# ---- runs -------------------------------------------------------------------------------------------------------


def test_put_creates_then_is_idempotent_then_conflicts(client: httpx.Client) -> None:
    first = client.put("/v1/runs/job-7", json={"spec": SPEC, "labels": {"team": "vision"}})
    assert first.status_code == 201
    assert first.headers["location"] == "/v1/runs/job-7"
    run = RunPublic.model_validate_json(first.content)
    assert (run.run_id, run.horizon, run.revision, run.incarnation) == ("job-7", -1, 0, 1)
    assert run.labels == {"team": "vision"}
    assert run.group_names == ["backbone", "head"]
    assert run.current_lr == [0.1, 1.0]

    again = client.put("/v1/runs/job-7", json={"spec": SPEC, "labels": {"team": "vision"}})
    assert again.status_code == 200
    assert RunPublic.model_validate_json(again.content).created_at == run.created_at

    other = client.put("/v1/runs/job-7", json={"spec": OTHER_SPEC})
    assert_problem(other, 409, "run-exists")


def test_put_from_preset_with_overrides(serve: Serve) -> None:
    client = serve(presets={"steps": {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": SPEC["schedule"]}})
    body = {"preset": "steps", "overrides": {"schedule": {"gamma": 0.1}}}
    response = client.put("/v1/runs/p", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["schedule"]["gamma"] == 0.1
    unknown = assert_problem(client.put("/v1/runs/q", json={"preset": "nope"}), 422, "invalid-input")
    assert unknown["errors"][0]["path"] == "preset"


def test_put_needs_a_spec_or_a_preset(client: httpx.Client) -> None:
    assert_problem(client.put("/v1/runs/x", json={}), 422, "invalid-input")
    assert_problem(client.put("/v1/runs/x", json={"spec": SPEC, "extra": 1}), 422, "invalid-input")


def test_get_run(client: httpx.Client) -> None:
    create_run(client)
    lease(client, 0, 5)
    run = RunPublic.model_validate_json(client.get("/v1/runs/run-1").content)
    assert run.horizon == 4
    assert run.plateau is not None
    assert run.plateau.metric == "val_loss"
    assert_problem(client.get("/v1/runs/missing"), 404, "run-not-found")


def test_list_runs_by_label_with_pages(client: httpx.Client) -> None:
    for i in range(5):
        create_run(client, f"r{i}", labels={"team": "a" if i % 2 else "b", "n": str(i)})
    page = RunPage.model_validate_json(client.get("/v1/runs", params={"limit": 2}).content)
    assert [r.run_id for r in page.runs] == ["r0", "r1"]
    assert page.next_cursor == "r1"
    rest = RunPage.model_validate_json(client.get("/v1/runs", params={"cursor": page.next_cursor}).content)
    assert [r.run_id for r in rest.runs] == ["r2", "r3", "r4"]
    assert rest.next_cursor is None
    team_a = client.get("/v1/runs", params=[("label", "team:a")]).json()["runs"]
    assert [r["run_id"] for r in team_a] == ["r1", "r3"]
    both = client.get("/v1/runs", params=[("label", "team:a"), ("label", "n:3")]).json()["runs"]
    assert [r["run_id"] for r in both] == ["r3"]
    bad = assert_problem(client.get("/v1/runs", params={"label": "novalue"}), 422, "invalid-input")
    assert bad["errors"][0]["loc"] == ["query", "label", 0]
    assert_problem(client.get("/v1/runs", params={"limit": 0}), 422, "invalid-input")


def test_delete_run(client: httpx.Client) -> None:
    create_run(client)
    response = client.delete("/v1/runs/run-1")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get("/v1/runs/run-1"), 404, "run-not-found")
    assert_problem(client.delete("/v1/runs/run-1"), 404, "run-not-found")
    create_run(client, spec=OTHER_SPEC)  # the id is free again, for another spec


# ---- leases -----------------------------------------------------------------------------------------------------


def test_lease_window_extends_horizon_and_repeats_exactly(client: httpx.Client) -> None:
    create_run(client)
    window = lease(client, 8, 4)
    assert (window.start, window.count, window.horizon, window.done) == (8, 4, 11, False)
    assert [g.name for g in window.groups] == ["backbone", "head"]
    assert window.groups[0].lr == pytest.approx([0.1, 0.1, 0.05, 0.05])
    assert window.groups[0].momentum is None
    assert lease(client, 8, 4) == window
    assert lease(client, 9).groups[1].lr == [window.groups[1].lr[1]]
    assert lease(client, 0).horizon == 11  # an earlier step does not lower the horizon


def test_lease_count_defaults_to_one(client: httpx.Client) -> None:
    create_run(client)
    response = client.get("/v1/runs/run-1/lr", params={"step": 3})
    assert LrWindow.model_validate_json(response.content).count == 1


def test_lease_cycled_momentum_and_done(client: httpx.Client) -> None:
    create_run(client, spec=CYCLIC)
    window = lease(client, 96, 8)
    assert window.done
    assert window.total_steps == 100
    momentum = window.groups[0].momentum
    assert momentum is not None
    assert len(momentum) == 8


def test_lease_of_unknown_run(client: httpx.Client) -> None:
    assert_problem(client.get("/v1/runs/nope/lr", params={"step": 0}), 404, "run-not-found")


def test_lease_from_a_stale_incarnation_is_refused(client: httpx.Client) -> None:
    create_run(client)
    lease(client, 0, 20)
    resumed = ResumeResult.model_validate_json(client.post("/v1/runs/run-1/resume", json={"step": 10}).content)
    assert resumed.incarnation == 2
    body = assert_problem(
        client.get("/v1/runs/run-1/lr", params={"step": 10, "incarnation": 1}), 409, "stale-incarnation"
    )
    assert body["incarnation"] == 2
    assert lease(client, 10, incarnation=2).incarnation == 2


def test_plan_and_applied(client: httpx.Client) -> None:
    create_run(client)
    window = lease(client, 0, 10)
    plan = RunPlan.model_validate_json(client.get("/v1/runs/run-1/plan").content)
    assert plan.last_seq == window.last_seq
    assert plan.horizon == 9
    response = client.post("/v1/runs/run-1/applied", json={"start": 10, "stop": 19, "last_seq": plan.last_seq})
    result = AppliedResult.model_validate_json(response.content)
    assert (result.horizon, result.pinned) == (19, False)
    bad = client.post("/v1/runs/run-1/applied", json={"start": 5, "stop": 4, "last_seq": 1})
    assert_problem(bad, 422, "invalid-input")
    assert_problem(client.get("/v1/runs/nope/plan"), 404, "run-not-found")


# ---- metrics ----------------------------------------------------------------------------------------------------


def test_metrics_single_and_batch_shapes(client: httpx.Client) -> None:
    create_run(client)
    one = MetricsResult.model_validate_json(
        client.post("/v1/runs/run-1/metrics", json={"step": 0, "name": "val_loss", "value": 1.0}).content
    )
    assert [m.step for m in one.accepted] == [0]
    batch = {"metrics": [{"step": 1, "name": "val_loss", "value": 0.9}, {"step": 0, "name": "val_loss", "value": 1.0}]}
    two = MetricsResult.model_validate_json(client.post("/v1/runs/run-1/metrics", json=batch).content)
    assert [m.step for m in two.accepted] == [1]
    assert [m.step for m in two.duplicates] == [0]
    assert two.plateau is not None
    assert two.plateau.best == 0.9


def test_metric_conflict_names_the_entry(client: httpx.Client) -> None:
    create_run(client)
    client.post("/v1/runs/run-1/metrics", json={"step": 0, "name": "val_loss", "value": 1.0})
    body = {"metrics": [{"step": 5, "name": "val_loss", "value": 1.0}, {"step": 0, "name": "val_loss", "value": 2.0}]}
    problem = assert_problem(client.post("/v1/runs/run-1/metrics", json=body), 409, "metric-conflict")
    assert problem["errors"][0]["loc"] == ["metrics", 1, "value"]
    events = client.get("/v1/runs/run-1/events").json()["events"]
    assert [e["kind"] for e in events] == ["created", "metric"]  # nothing of the refused batch was recorded


def test_plateau_reduction_applies_after_the_horizon(client: httpx.Client) -> None:
    create_run(client)
    lease(client, 0, 30)
    results = [
        MetricsResult.model_validate_json(
            client.post("/v1/runs/run-1/metrics", json={"step": s, "name": "val_loss", "value": 1.0}).content
        )
        for s in (0, 1, 2)
    ]
    fired = [r for r in results if r.reductions]
    assert fired, "patience 1: the third equal value reduces"
    assert fired[0].reduction_from_step == 30
    assert lease(client, 29).groups[0].lr == [pytest.approx(0.025)]  # frozen: unchanged
    assert lease(client, 30).groups[0].lr == [pytest.approx(0.0125 * 0.5)]  # StepLR x factor 0.5


def test_nan_metric_is_accepted(client: httpx.Client) -> None:
    create_run(client)
    response = client.post(
        "/v1/runs/run-1/metrics", content=b'{"step": 0, "name": "val_loss", "value": "NaN"}', headers=JSON_TYPE
    )
    assert response.status_code == 200, response.text
    assert response.json()["plateau"]["num_bad"] == 1


def test_metrics_validation(client: httpx.Client) -> None:
    create_run(client)
    missing = assert_problem(client.post("/v1/runs/run-1/metrics", json={"step": 0}), 422, "invalid-input")
    assert {e["path"] for e in missing["errors"]} == {"name", "value"}
    negative = client.post("/v1/runs/run-1/metrics", json={"metrics": [{"step": -1, "name": "x", "value": 1}]})
    assert assert_problem(negative, 422, "invalid-input")["errors"][0]["loc"] == ["metrics", 0, "step"]
    assert_problem(client.post("/v1/runs/run-1/metrics", json={"metrics": []}), 422, "invalid-input")
    unknown = client.post("/v1/runs/nope/metrics", json={"step": 0, "name": "x", "value": 1})
    assert_problem(unknown, 404, "run-not-found")


JSON_TYPE = {"content-type": "application/json"}


# ---- changes and resume -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"op": "scale", "factor": 0.5},
        {"op": "set", "lr": [0.3, 0.4], "until_step": 40},
        {"op": "replace", "schedule": {"type": "ConstantLR", "factor": 0.5, "total_iters": 5}, "origin": "restart"},
        {"op": "plateau", "plateau": None},
    ],
    ids=lambda c: c["op"],
)
def test_each_change_op(client: httpx.Client, change: dict[str, Any]) -> None:
    create_run(client)
    before = lease(client, 0, 10)
    result = ChangeResult.model_validate_json(client.post("/v1/runs/run-1/changes", json=change).content)
    assert (result.applied, result.revision, result.from_step) == (True, 1, 10)
    assert lease(client, 0, 10).groups == before.groups  # served steps are frozen
    assert RunPublic.model_validate_json(client.get("/v1/runs/run-1").content).revision == 1


def test_dry_run_records_nothing(client: httpx.Client) -> None:
    create_run(client)
    body = {"op": "scale", "factor": 2.0, "dry_run": True, "preview_steps": 5}
    result = ChangeResult.model_validate_json(client.post("/v1/runs/run-1/changes", json=body).content)
    assert not result.applied
    assert result.current is not None
    assert result.proposed is not None
    assert result.proposed.groups[0].lr == pytest.approx([2 * x for x in result.current.groups[0].lr])
    assert client.get("/v1/runs/run-1").json()["revision"] == 0


def test_change_preconditions(client: httpx.Client) -> None:
    create_run(client)
    scale = {"op": "scale", "factor": 0.5}
    assert client.post("/v1/runs/run-1/changes", json=scale, headers={"If-Match": '"0"'}).status_code == 200
    stale = assert_problem(
        client.post("/v1/runs/run-1/changes", json=scale, headers={"If-Match": "0"}), 412, "precondition-failed"
    )
    assert stale["revision"] == 1
    conflict = client.post("/v1/runs/run-1/changes", json={**scale, "expected_revision": 0})
    assert_problem(conflict, 409, "revision-conflict")
    garbage = client.post("/v1/runs/run-1/changes", json=scale, headers={"If-Match": "abc"})
    assert assert_problem(garbage, 422, "invalid-input")["errors"][0]["loc"] == ["header", "if-match"]


def test_change_below_horizon_is_a_conflict(client: httpx.Client) -> None:
    create_run(client)
    lease(client, 0, 10)
    body = assert_problem(
        client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 2, "from_step": 5}),
        409,
        "horizon-conflict",
    )
    assert body["horizon"] == 9


def test_change_validation(client: httpx.Client) -> None:
    create_run(client)
    bad_op = assert_problem(client.post("/v1/runs/run-1/changes", json={"op": "warp"}), 422, "invalid-input")
    assert bad_op["errors"][0]["type"] == "union_tag_invalid"
    bad_schedule = client.post("/v1/runs/run-1/changes", json={"op": "replace", "schedule": {"type": "StepLR"}})
    errors = assert_problem(bad_schedule, 422, "invalid-input")["errors"]
    assert [e["loc"] for e in errors] == [["schedule", "step_size"]]
    wrong_groups = client.post("/v1/runs/run-1/changes", json={"op": "set", "lr": [1, 2, 3]})
    assert assert_problem(wrong_groups, 422, "invalid-input")["errors"][0]["path"] == "lr"
    assert_problem(client.post("/v1/runs/nope/changes", json={"op": "scale", "factor": 2}), 404, "run-not-found")


def test_resume_is_idempotent_by_key(client: httpx.Client) -> None:
    create_run(client)
    lease(client, 0, 50)
    first = ResumeResult.model_validate_json(
        client.post("/v1/runs/run-1/resume", json={"step": 20, "key": "launch-2"}).content
    )
    again = ResumeResult.model_validate_json(
        client.post("/v1/runs/run-1/resume", json={"step": 20, "key": "launch-2"}).content
    )
    assert first == again
    assert (first.incarnation, first.step, first.horizon) == (2, 20, 20)
    assert_problem(client.post("/v1/runs/run-1/resume", json={"step": -3}), 422, "invalid-input")


# ---- curves and events ------------------------------------------------------------------------------------------


def test_curve_json_shape_and_no_horizon_change(client: httpx.Client) -> None:
    create_run(client)
    client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5, "reason": "too hot"})
    curve = Curve.model_validate_json(client.get("/v1/runs/run-1/curve", params={"stop": 30, "stride": 3}).content)
    assert curve.steps == list(range(0, 30, 3))
    assert curve.groups[1].lr[0] == 0.5  # nothing served yet: the change applies from step 0
    assert curve.horizon == -1  # a curve never leases
    assert [(m.step, m.kind, m.reason) for m in curve.markers] == [(0, "change", "too hot")]
    assert client.get("/v1/runs/run-1").json()["horizon"] == -1


def test_curve_equals_leased_values(client: httpx.Client) -> None:
    create_run(client, spec=CYCLIC)
    window = lease(client, 0, 100)
    curve = Curve.model_validate_json(client.get("/v1/runs/run-1/curve", params={"stop": 100}).content)
    assert curve.groups == window.groups


def test_curve_csv(client: httpx.Client) -> None:
    create_run(client, spec=CYCLIC)
    response = client.get("/v1/runs/run-1/curve", params={"stop": 100, "format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["step", "g.lr", "g.momentum"]
    assert len(rows) == 101
    curve = Curve.model_validate_json(client.get("/v1/runs/run-1/curve", params={"stop": 100}).content)
    assert [float(r[1]) for r in rows[1:]] == curve.groups[0].lr  # shortest round-trip text: exact
    assert [float(r[2]) for r in rows[1:]] == curve.groups[0].momentum


def test_curve_npy(client: httpx.Client) -> None:
    create_run(client)
    client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.5})
    response = client.get("/v1/runs/run-1/curve", params={"start": 5, "stop": 50, "stride": 5, "format": "npy"})
    assert response.headers["content-type"] == "application/x-npz"
    assert response.headers["x-lrserve-revision"] == "1"
    archive = np.load(io.BytesIO(response.content))  # allow_pickle stays False
    curve = Curve.model_validate_json(
        client.get("/v1/runs/run-1/curve", params={"start": 5, "stop": 50, "stride": 5}).content
    )
    assert archive["steps"].tolist() == curve.steps
    assert archive["lr"].shape == (2, 9)
    assert archive["lr"].tolist() == [g.lr for g in curve.groups]
    assert archive["group_names"].tolist() == ["backbone", "head"]
    assert "momentum" not in archive.files
    assert (int(archive["start"]), int(archive["stride"]), int(archive["revision"])) == (5, 5, 1)
    assert len(__import__("json").loads(str(archive["markers"]))) == 1


def test_curve_range_errors(client: httpx.Client) -> None:
    create_run(client)
    assert_problem(client.get("/v1/runs/run-1/curve", params={"start": 10, "stop": 5}), 422, "invalid-input")
    assert_problem(client.get("/v1/runs/run-1/curve", params={"format": "xml"}), 422, "invalid-input")
    assert_problem(client.get("/v1/runs/nope/curve"), 404, "run-not-found")


def test_preview_curve_with_simulated_metrics(client: httpx.Client) -> None:
    metrics = [{"step": s, "name": "val_loss", "value": 1.0} for s in range(4)]
    response = client.post("/v1/curves", json={"spec": SPEC, "stop": 10, "metrics": metrics})
    curve = Curve.model_validate_json(response.content)
    assert curve.run_id is None
    assert any(m.kind == "reduction" for m in curve.markers)
    assert curve.groups[0].lr[-1] < 0.1
    csv_text = client.post("/v1/curves", params={"format": "csv"}, json={"spec": SPEC, "stop": 10}).text
    assert csv_text.splitlines()[0] == "step,backbone.lr,head.lr"
    assert_problem(client.post("/v1/curves", json={"spec": {"schedule": {"type": "Nope"}}}), 422, "spec-invalid")


def test_events_paginate(client: httpx.Client) -> None:
    create_run(client)
    for i in range(4):
        client.post("/v1/runs/run-1/changes", json={"op": "scale", "factor": 0.9, "reason": f"r{i}"})
    first = EventPage.model_validate_json(client.get("/v1/runs/run-1/events", params={"limit": 3}).content)
    assert [e.seq for e in first.events] == [1, 2, 3]
    assert first.next_after == 3
    rest = EventPage.model_validate_json(client.get("/v1/runs/run-1/events", params={"after": 3}).content)
    assert [e.reason for e in rest.events] == ["r2", "r3"]
    assert rest.next_after is None
    assert_problem(client.get("/v1/runs/nope/events"), 404, "run-not-found")


# ---- health -----------------------------------------------------------------------------------------------------


def test_health_and_readiness(client: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}

    def down(_self: RunService) -> None:
        raise Unavailable(detail="database unreachable")

    monkeypatch.setattr(RunService, "ready", down)
    response = client.get("/readyz")
    assert_problem(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readiness_with_the_database_gone(serve: Serve, tmp_path: Any) -> None:
    """A store that really cannot answer (its SQLite file is now a directory) makes /readyz a 503."""
    import os
    import shutil

    db = tmp_path / "gone" / "lrserve.db"
    db.parent.mkdir()
    client = serve(store=f"sqlite:///{db}")
    assert client.get("/readyz").status_code == 200
    client.app.state.service._store.engine.dispose()  # type: ignore[attr-defined]
    shutil.rmtree(db.parent)
    os.makedirs(db)  # the path is now a directory: SQLite cannot open it
    assert_problem(client.get("/readyz"), 503, "unavailable")


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/runs/{run_id}/lr" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_momentum_column_is_finite(client: httpx.Client) -> None:
    create_run(client, spec=CYCLIC)
    window = lease(client, 0, 100)
    assert window.groups[0].momentum is not None
    assert all(math.isfinite(x) for x in window.groups[0].momentum)


def test_frozen_reads_do_not_write(serve: Serve, tmp_path: Any) -> None:
    """Serving steps at or below the horizon leaves the database alone, from a warm cache and from a cold one."""
    import hashlib

    db = tmp_path / "frozen.db"
    client = serve(store=f"sqlite:///{db}")
    create_run(client)
    lease(client, 0, 50)
    before = client.get("/v1/runs/run-1").json()

    def digest() -> str:
        client.app.state.service._store.engine.dispose()  # type: ignore[attr-defined]  # checkpoint the WAL
        return hashlib.sha256(db.read_bytes()).hexdigest()

    on_disk = digest()
    for step in (0, 17, 49):
        lease(client, step)
    lease(client, 10, 40)
    cold = serve(store=f"sqlite:///{db}")  # a second app: nothing cached
    assert LrWindow.model_validate_json(cold.get("/v1/runs/run-1/lr", params={"step": 20, "count": 30}).content)
    assert cold.get("/v1/runs/run-1").json()["updated_at"] == before["updated_at"]
    cold.app.state.service._store.engine.dispose()  # type: ignore[attr-defined]
    assert digest() == on_disk
