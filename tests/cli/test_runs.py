"""``lrserve runs ...`` against a real server: tables for people, JSON for scripts, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.cli.conftest import ADMIN_TOKEN, Run
from tests.web.live import LiveServer

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "StepLR", "step_size": 100, "gamma": 0.5},
    "plateau": {"metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 0},
}

Write = Callable[[str, str], str]


def new_id() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def make_run(server: LiveServer, served: int = 0, token: str | None = None, **labels: str) -> str:
    run_id = new_id()
    with server.client(token) as http:
        assert http.put(f"/v1/runs/{run_id}", json={"spec": SPEC, "labels": labels}).status_code == 201
        if served:
            assert http.get(f"/v1/runs/{run_id}/lr", params={"step": 0, "count": served}).status_code == 200
    return run_id


def test_create_list_and_show(lrserve: Run, cli_server: LiveServer, write: Write) -> None:
    url = cli_server.url
    run_id = new_id()
    team = uuid.uuid4().hex[:6]
    spec_file = write("spec.yaml", json.dumps(SPEC))
    created = lrserve("runs", "create", run_id, spec_file, "--url", url, "-l", f"team={team}", "-l", "model:resnet")
    assert created.exit_code == 0, created.stderr
    assert f"run {run_id}: StepLR, revision 0, horizon -1" in created.stdout
    again = lrserve("runs", "create", run_id, spec_file, "--url", url, "-l", f"team={team}", "-l", "model:resnet")
    assert again.exit_code == 0  # idempotent
    with cli_server.client() as http:
        http.get(f"/v1/runs/{run_id}/lr", params={"step": 0, "count": 150})
        http.post(f"/v1/runs/{run_id}/metrics", json={"step": 149, "name": "val_loss", "value": 0.25})

    listed = lrserve("runs", "list", "--label", f"team:{team}", env={"LRSERVE_URL": url})
    assert listed.exit_code == 0, listed.stderr
    assert run_id in listed.stdout
    assert "StepLR" in listed.stdout
    assert "149" in listed.stdout  # horizon
    assert "backbone 0.05" in listed.stdout  # current LR per group (step 150)
    assert "val_loss = 0.25 @149" in listed.stdout
    as_json = json.loads(lrserve("runs", "list", "--url", url, "-l", f"team:{team}", "--json").stdout)
    assert [r["run_id"] for r in as_json["runs"]] == [run_id]
    nothing = lrserve("runs", "list", "--url", url, "-l", "team:nobody")
    assert "no runs with these labels" in nothing.stdout

    shown = lrserve("runs", "show", run_id, "--url", url)
    assert shown.exit_code == 0
    for text in ("horizon      149", "revision     0", "val_loss: best 0.25", "step_size: 100", f"team:{team}"):
        assert text in shown.stdout
    assert json.loads(lrserve("runs", "show", run_id, "--url", url, "--json").stdout)["horizon"] == 149


def test_curve_table_plot_markers_and_csv(lrserve: Run, cli_server: LiveServer, tmp_path: Path) -> None:
    url = cli_server.url
    run_id = make_run(cli_server, served=50)
    with cli_server.client() as http:
        http.post(f"/v1/runs/{run_id}/changes", json={"op": "scale", "factor": 0.1, "from_step": 250, "reason": "hot"})
    result = lrserve("runs", "curve", run_id, "--url", url, "--stop", "400")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"{run_id}: steps 0..399 every 1, horizon 49, revision 1" in out
    key_rows = out.split("markers")[0].splitlines()
    rows = {line.split("│")[1].strip(): line for line in key_rows if line.startswith("│")}
    assert "jump ×0.5" in rows["100"]  # StepLR
    assert "jump ×0.1" in rows["250"]  # the scale change
    assert "markers" in out
    assert "scale x0.1" in out
    assert "hot" in out
    data = json.loads(
        lrserve("runs", "curve", run_id, "--url", url, "--stop", "400", "--stride", "100", "--json").stdout
    )
    assert data["steps"] == [0, 100, 200, 300]
    assert data["groups"][0]["lr"] == [0.1, 0.05, 0.025 * 1, 0.0125 * 0.1]
    csv_path = tmp_path / "c.csv"
    saved = lrserve("runs", "curve", run_id, "--url", url, "--stop", "400", "--stride", "1", "--csv", str(csv_path))
    assert saved.exit_code == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,backbone.lr,head.lr"
    assert len(lines) == 401
    default = lrserve("runs", "curve", run_id, "--url", url, "--json")  # no --stop: horizon + 1001 (unbounded)
    assert json.loads(default.stdout)["stop"] == 1050


def test_events_with_kinds(lrserve: Run, cli_server: LiveServer) -> None:
    url = cli_server.url
    run_id = make_run(cli_server, served=20)
    with cli_server.client() as http:
        body = {
            "metrics": [{"step": 5, "name": "val_loss", "value": 1.0}, {"step": 10, "name": "val_loss", "value": 2.0}]
        }
        http.post(f"/v1/runs/{run_id}/metrics", json=body)
    everything = lrserve("runs", "events", run_id, "--url", url)
    assert everything.exit_code == 0
    assert "created" in everything.stdout
    assert "val_loss = 2 at step 10" in everything.stdout
    assert "plateau ×[0.5, 0.5] from step 20" in everything.stdout
    only = json.loads(lrserve("runs", "events", run_id, "--url", url, "-k", "reduction", "--json").stdout)
    assert [e["kind"] for e in only["events"]] == ["reduction"]


def test_change_dry_run_then_apply(lrserve: Run, cli_server: LiveServer) -> None:
    url = cli_server.url
    run_id = make_run(cli_server, served=120)
    dry = lrserve("runs", "change", run_id, "--url", url, "--scale", "0.5", "--dry-run", "--preview-steps", "200")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run (nothing recorded): takes effect from step 120; applying makes revision 1" in dry.stdout
    assert "backbone proposed" in dry.stdout
    assert "--expected-revision 0" in dry.stdout
    as_json = json.loads(
        lrserve("runs", "change", run_id, "--url", url, "--set", "0.01,0.1", "--dry-run", "--json").stdout
    )
    assert as_json["applied"] is False
    assert as_json["proposed"]["groups"][1]["lr"][0] == 0.1

    applied = lrserve(
        "runs", "change", run_id, "--url", url, "--scale", "0.5", "-r", "from the terminal", "--expected-revision", "0"
    )
    assert applied.exit_code == 0, applied.stderr
    assert "applied: revision 1, from step 120" in applied.stdout
    stale = lrserve("runs", "change", run_id, "--url", url, "--scale", "0.5", "--expected-revision", "0")
    assert stale.exit_code == 1
    assert "409" in stale.stderr
    assert "revision 1" in stale.stderr

    replaced = lrserve("runs", "change", run_id, "--url", url, "--replace", "{type: ExponentialLR, gamma: 0.99}")
    assert replaced.exit_code == 0, replaced.stderr
    plateau_off = lrserve("runs", "change", run_id, "--url", url, "--no-plateau")
    assert plateau_off.exit_code == 0
    events = json.loads(lrserve("runs", "events", run_id, "--url", url, "-k", "change", "--json").stdout)["events"]
    assert [e["payload"]["change"]["op"] for e in events] == ["scale", "replace", "plateau"]
    assert events[0]["reason"] == "from the terminal"


def test_change_errors_are_messages_not_tracebacks(lrserve: Run, cli_server: LiveServer, write: Write) -> None:
    url = cli_server.url
    run_id = make_run(cli_server, served=30)
    horizon = lrserve("runs", "change", run_id, "--url", url, "--scale", "0.5", "--from-step", "3")
    assert horizon.exit_code == 1
    assert "409 Step already served" in horizon.stderr or "409" in horizon.stderr
    assert "served steps up to 29" in horizon.stderr
    invalid = lrserve(
        "runs", "change", run_id, "--url", url, "--replace", write("s.yaml", "type: StepLR\nstep_size: 0\n")
    )
    assert invalid.exit_code == 1
    assert "schedule.step_size" in invalid.stderr
    groups = lrserve("runs", "change", run_id, "--url", url, "--set", "0.1 0.2 0.3")
    assert groups.exit_code == 1
    assert "2 param groups" in groups.stderr
    for args in (["--scale", "0.5", "--no-plateau"], [], ["--until", "5", "--scale", "2"], ["--set", "x"]):
        usage = lrserve("runs", "change", run_id, "--url", url, *args)
        assert usage.exit_code == 2, args
    missing = lrserve("runs", "show", "no-such-run", "--url", url)
    assert missing.exit_code == 1
    assert "404 Run not found: no run 'no-such-run'" in missing.stderr


def test_delete_asks_first(lrserve: Run, cli_server: LiveServer) -> None:
    url = cli_server.url
    run_id = make_run(cli_server)
    kept = lrserve("runs", "delete", run_id, "--url", url, input="n\n")
    assert kept.exit_code == 1
    assert "not deleted" in kept.stderr
    gone = lrserve("runs", "delete", run_id, "--url", url, input="y\n")
    assert gone.exit_code == 0
    assert f"deleted {run_id}" in gone.stdout
    assert lrserve("runs", "delete", run_id, "--url", url, "--yes").exit_code == 1  # 404 now


def test_tokens_from_the_option_or_the_environment(lrserve: Run, cli_token_server: LiveServer) -> None:
    url = cli_token_server.url
    run_id = make_run(cli_token_server, token=ADMIN_TOKEN)
    refused = lrserve("runs", "show", run_id, "--url", url)
    assert refused.exit_code == 1
    assert "401" in refused.stderr
    assert "LRSERVE_TOKEN" in refused.stderr
    assert lrserve("runs", "show", run_id, "--url", url, "--token", ADMIN_TOKEN).exit_code == 0
    applied = lrserve("runs", "change", run_id, "--scale", "2", env={"LRSERVE_URL": url, "LRSERVE_TOKEN": ADMIN_TOKEN})
    assert applied.exit_code == 0, applied.stderr
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        (event,) = http.get(f"/v1/runs/{run_id}/events", params={"after": 1}).json()["events"]
    assert event["actor"] == "ops"


def test_unreachable_server_exits_3_with_a_hint(lrserve: Run, closed_url: str) -> None:
    for args in (["list"], ["show", "x"], ["curve", "x"], ["events", "x"], ["change", "x", "--scale", "2"]):
        result = lrserve("runs", *args, "--url", closed_url)
        assert result.exit_code == 3, args
        assert f"cannot reach the lrserve server at {closed_url}" in result.stderr
        assert "lrserve serve" in result.stderr
    bad_url = lrserve("runs", "list", "--url", "localhost:8000")
    assert bad_url.exit_code == 3
    assert "bad server URL" in bad_url.stderr


def test_the_real_command_against_nothing_has_no_traceback(closed_url: str) -> None:
    command = [sys.executable, "-m", "lrserve.cli.main", "runs", "list", "--url", closed_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert "cannot reach the lrserve server" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
