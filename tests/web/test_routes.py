"""The page's routes over real HTTP: the page and its assets, and the /ui/api answers it draws from."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.web.conftest import (
    ONECYCLE,
    SPEC,
    TOKEN_NAMES,
    TOKENS,
    create_run,
    new_id,
    post_metrics,
    serve_steps,
)
from tests.web.live import LiveServer


def test_the_page_and_its_assets(live_server: LiveServer) -> None:
    with live_server.client() as http:
        page = http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="ui/app.js"' in page.text
        for name, kind in [("app.js", "javascript"), ("app.css", "text/css")]:
            asset = http.get(f"/ui/{name}")
            assert asset.status_code == 200
            assert kind in asset.headers["content-type"]
            again = http.get(f"/ui/{name}", headers={"If-None-Match": asset.headers["etag"]})
            assert again.status_code == 304
        assert http.get("/ui/secrets.py").status_code == 404
        assert http.get("/ui/..%2Froutes.py").status_code == 404
        paths = http.get("/openapi.json").json()["paths"]
        assert not [p for p in paths if p == "/" or p.startswith("/ui")]  # the page's routes are not the API


def test_the_page_needs_no_token_but_its_data_does(token_server: LiveServer) -> None:
    with token_server.client() as anonymous:
        assert anonymous.get("/").status_code == 200
        assert anonymous.get("/ui/app.js").status_code == 200
        assert anonymous.get("/ui/api/whoami").json() == {"open": False, "name": None, "scopes": []}
        assert anonymous.get("/ui/api/runs").status_code == 401
    with token_server.client("nope") as wrong:
        assert wrong.get("/ui/api/whoami").status_code == 401
    run_id = new_id("auth")
    with token_server.client(TOKENS["train"]) as trainer:
        create_run(trainer, run_id)
    with token_server.client(TOKENS["read"]) as reader:
        assert reader.get("/ui/api/whoami").json() == {"open": False, "name": TOKEN_NAMES["read"], "scopes": ["read"]}
        assert reader.get("/ui/api/runs").status_code == 200
        assert reader.get(f"/ui/api/runs/{run_id}/plot").status_code == 200
        assert reader.post(
            "/ui/api/playground",
            json={"text": "schedule: {type: ExponentialLR, gamma: 0.9}\nparam_groups: [{name: g, lr: 1}]"},
        ).is_success
        refused = reader.post(f"/ui/api/runs/{run_id}/preview", json={"op": "scale", "factor": 0.5})
        assert refused.status_code == 403  # a dry run needs admin, as POST /v1/.../changes does
    with token_server.client(TOKENS["admin"]) as admin:
        assert admin.post(f"/ui/api/runs/{run_id}/preview", json={"op": "scale", "factor": 0.5}).status_code == 200


def test_runs_rows_carry_current_lr_and_last_metric(live_server: LiveServer) -> None:
    team = new_id("team")
    run_id = new_id("rows")
    with live_server.client() as http:
        create_run(http, run_id, team=team)
        create_run(http, new_id("other"), team="else")
        serve_steps(http, run_id, 10)
        post_metrics(http, run_id, [(9, 0.5)])
        rows = http.get("/ui/api/runs", params={"label": f"team:{team}"}).json()["runs"]
        bad = http.get("/ui/api/runs", params={"label": "nocolon"})
    assert [r["run_id"] for r in rows] == [run_id]
    (row,) = rows
    assert row["horizon"] == 9
    assert row["group_names"] == ["backbone", "head"]
    assert row["current_lr"][1] == pytest.approx(1.0 * (1 + np.cos(np.pi * 10 / 400)) / 2)
    assert row["last_metric"] == {"step": 9, "name": "val_loss", "value": 0.5}
    assert bad.status_code == 422


def test_plot_has_curve_markers_metrics_and_events(live_server: LiveServer) -> None:
    run_id = new_id("plot")
    with live_server.client() as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 50)
        post_metrics(http, run_id, [(10, 1.0), (20, 1.5), (30, 2.0)])
        http.post(f"/v1/runs/{run_id}/changes", json={"op": "scale", "factor": 0.5, "reason": "why not"})
        plot = http.get(f"/ui/api/runs/{run_id}/plot", params={"width": 100}).json()
        full = http.get(f"/v1/runs/{run_id}/curve", params={"stop": plot["stop"]}).json()
    assert plot["start"] == 0
    assert plot["stop"] == 401  # CosineAnnealingLR T_max=400: the schedule's end
    assert plot["horizon"] == 49
    curve = plot["curve"]
    assert len(curve["x"]) <= 2 * (100 + len(plot["markers"]) + 1)
    for g, group in enumerate(curve["groups"]):
        full_lr = np.asarray(full["groups"][g]["lr"])
        assert max(group["lr"]) == pytest.approx(full_lr.max())
        assert min(group["lr"]) == pytest.approx(full_lr.min())
        assert group["momentum"] is None
    kinds = sorted({m["kind"] for m in plot["markers"]})
    assert kinds == ["change", "reduction"]
    assert plot["plateau_metric"] == "val_loss"
    assert plot["metrics"]["val_loss"] == {"x": [10, 20, 30], "y": [1.0, 1.5, 2.0], "count": 3}
    assert [e["kind"] for e in plot["events"]] == ["created", "reduction", "change"]
    assert plot["events"][-1]["reason"] == "why not"
    assert plot["events_total"] == {"metric": 3, "other": 3}
    assert plot["range_test"] is None


def test_plot_metrics_follow_resumes(live_server: LiveServer) -> None:
    run_id = new_id("resume")
    with live_server.client() as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 40)
        post_metrics(http, run_id, [(10, 1.0), (20, 0.9), (30, 0.8)])
        assert http.get(f"/ui/api/runs/{run_id}/plot").json()["metrics"]["val_loss"]["x"] == [10, 20, 30]
        assert http.post(f"/v1/runs/{run_id}/resume", json={"step": 15}).status_code == 200
        post_metrics(http, run_id, [(20, 0.95)], incarnation=2)  # the new incarnation's value for step 20
        plot = http.get(f"/ui/api/runs/{run_id}/plot").json()
    assert plot["metrics"]["val_loss"] == {"x": [10, 20], "y": [1.0, 0.95], "count": 2}
    assert [m["kind"] for m in plot["markers"]].count("resume") == 1


def test_a_million_step_plot_is_fast_and_small(live_server: LiveServer) -> None:
    run_id = new_id("million")
    spec = {**ONECYCLE, "schedule": {**ONECYCLE["schedule"], "total_steps": 1_000_000}}
    with live_server.client() as http:
        create_run(http, run_id, spec)
        serve_steps(http, run_id, 1000)
        http.get(f"/ui/api/runs/{run_id}/plot", params={"width": 1200})  # warm the run's cache
        began = time.perf_counter()
        response = http.get(f"/ui/api/runs/{run_id}/plot", params={"width": 1200})
        elapsed = time.perf_counter() - began
    plot = response.json()
    assert plot["stop"] == 1_000_000
    assert plot["curve"]["stride"] == 4
    assert len(plot["curve"]["x"]) <= 2 * 1202
    assert len(response.content) < 200_000
    assert plot["curve"]["groups"][0]["momentum"] is not None
    assert max(plot["curve"]["groups"][0]["lr"]) == pytest.approx(0.1, rel=1e-6)  # OneCycle's peak is kept
    assert elapsed < 2.0, elapsed  # ~0.15 s here


def test_plot_range_and_bad_ranges(live_server: LiveServer) -> None:
    run_id = new_id("range")
    with live_server.client() as http:
        create_run(http, run_id)
        zoom = http.get(f"/ui/api/runs/{run_id}/plot", params={"start": 100, "stop": 200}).json()
        assert zoom["curve"]["x"][0] == 100
        assert zoom["curve"]["x"][-1] == 199
        bad = http.get(f"/ui/api/runs/{run_id}/plot", params={"start": 10, "stop": 5})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["path"] == "query.stop"
        assert http.get(f"/ui/api/runs/{run_id}/plot", params={"width": 5}).status_code == 422
        missing = http.get("/ui/api/runs/no-such-run/plot")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


def test_preview_is_a_dry_run_drawn_small(live_server: LiveServer) -> None:
    run_id = new_id("preview")
    with live_server.client() as http:
        create_run(http, run_id)
        serve_steps(http, run_id, 100)
        answer = http.post(f"/ui/api/runs/{run_id}/preview", params={"width": 50}, json={"op": "scale", "factor": 0.5})
        assert answer.status_code == 200, answer.text
        pv = answer.json()
        assert pv["from_step"] == 100
        assert pv["revision"] == 0
        assert pv["x"][0] == 100
        assert pv["x"][-1] == 400
        assert len(pv["x"]) <= 100
        np.testing.assert_allclose(pv["proposed"][0], np.asarray(pv["current"][0]) * 0.5)
        assert http.get(f"/v1/runs/{run_id}").json()["revision"] == 0  # nothing recorded
        horizon = http.post(f"/ui/api/runs/{run_id}/preview", json={"op": "scale", "factor": 0.5, "from_step": 3})
        assert horizon.status_code == 409
        assert horizon.json()["errors"][0]["path"] == "from_step"
        invalid = http.post(f"/ui/api/runs/{run_id}/preview", json={"op": "scale", "factor": -1})
        assert invalid.status_code == 422
        assert invalid.json()["errors"][0]["path"] == "factor"


def test_playground_curve_and_errors(live_server: LiveServer) -> None:
    yaml_text = "param_groups: [{name: a, lr: 0.1}]\nschedule: {type: StepLR, step_size: 10, gamma: 0.5}\n"
    with live_server.client() as http:
        ok = http.post("/ui/api/playground", json={"text": yaml_text, "stop": 40}).json()
        assert ok["curve"]["x"] == list(range(40))
        assert ok["curve"]["groups"][0]["lr"][::10] == [0.1, 0.05, 0.025, 0.0125]
        body = {"spec": {"param_groups": [{"name": "a", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 5}}}
        wrapped = http.post("/ui/api/playground", json={"text": json.dumps(body)})  # a PUT body holding a spec
        assert wrapped.status_code == 200, wrapped.text
        plateau = dict(SPEC, schedule={"type": "ExponentialLR", "gamma": 1.0})
        metrics = [{"step": s, "name": "val_loss", "value": 1.0} for s in range(0, 50, 5)]
        sim = http.post("/ui/api/playground", json={"text": json.dumps(plateau), "stop": 50, "metrics": metrics}).json()
        assert [m["kind"] for m in sim["markers"]] == ["reduction"] * len(sim["markers"])
        assert sim["markers"]
        invalid = http.post("/ui/api/playground", json={"text": "schedule: {type: StepLR, step_size: -1}"})
        assert invalid.status_code == 422
        assert invalid.json()["type"] == "spec-invalid"
        assert invalid.json()["errors"][0]["path"] == "schedule.step_size"
        syntax = http.post("/ui/api/playground", json={"text": "schedule: {type: StepLR\n"})
        assert syntax.status_code == 422
        assert "line 2" in syntax.json()["detail"]
        empty = http.post("/ui/api/playground", json={"text": ""})
        assert empty.status_code == 422
        parsed = http.post("/ui/api/parse", json={"text": "{type: StepLR, step_size: 3}"}).json()
        assert parsed == {"data": {"type": "StepLR", "step_size": 3}}
