"""RemoteScheduler in real CPU training loops against the real server (uvicorn thread, SQLite file)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")

from lrserve.client import LRClient, RemoteScheduler, StaleIncarnation  # noqa: E402
from tests.client.conftest import ONECYCLE_SPEC, ThreadServer  # noqa: E402


def make_model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def two_groups(model: Any) -> list[dict[str, Any]]:
    return [{"params": model[0].parameters()}, {"params": model[2].parameters()}]


def train(opt: Any, sched: Any, model: Any, steps: int, *, metric: Any = None) -> list[tuple[list[float], list[Any]]]:
    """Train ``steps`` steps; record each group's (lr, momentum or beta1) as the optimizer used them."""
    torch.manual_seed(1)
    seen = []
    for i in range(steps):
        seen.append(
            (
                [g["lr"] for g in opt.param_groups],
                [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups],
            )
        )
        x = torch.randn(16, 8)
        loss = ((model(x) - x.sum(dim=1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if metric is None:
            sched.step()
        else:
            sched.step(metric(i, loss.item()))
    return seen


def lrs_of(curve: Any, group: int) -> list[float]:
    return list(curve.groups[group].lr)


@pytest.fixture
def client(server: ThreadServer) -> Any:
    with LRClient(server.url) as c:
        yield c


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_applied_values_equal_the_curve_and_torch(client: LRClient, run_id: str, optimizer: str) -> None:
    run = client.run(run_id, spec=ONECYCLE_SPEC)
    model = make_model()
    if optimizer == "sgd":
        opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
    else:
        opt = torch.optim.Adam(two_groups(model), lr=0.05)
    sched = RemoteScheduler(opt, run, lease_steps=32)
    seen = train(opt, sched, model, 150)
    sched.close()
    curve = run.curve(0, 150)
    for g in range(2):
        assert [s[0][g] for s in seen] == lrs_of(curve, g)
        assert [s[1][g] for s in seen] == list(curve.groups[g].momentum)  # type: ignore[arg-type]
    assert sched.get_last_lr() == [curve.groups[0].lr[-1], curve.groups[1].lr[-1]] or sched.last_epoch == 150

    # torch's own OneCycleLR on the same optimizer kind gives the same numbers.
    ref_model = make_model()
    groups = two_groups(ref_model)
    groups[0]["lr"], groups[1]["lr"] = 0.01, 0.1
    ref_opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam(groups)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=[0.1, 1.0], total_steps=400)
    ref_seen = train(ref_opt, ref, ref_model, 150)
    assert [s[0] for s in seen] == [s[0] for s in ref_seen]
    assert [s[1] for s in seen] == [s[1] for s in ref_seen]


def test_leases_amortize_http(server: ThreadServer, run_id: str) -> None:
    requests: list[str] = []
    spec = {**ONECYCLE_SPEC, "plateau": {"metric": "loss", "mode": "min", "patience": 1000}}
    with LRClient(server.url) as client:
        client._http.event_hooks["request"].append(lambda r: requests.append(f"{r.method} {r.url.path}"))
        run = client.run(run_id, spec=spec)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
        sched = RemoteScheduler(opt, run, lease_steps=64, lease_seconds=None, flush_every=60)
        train(opt, sched, model, 256, metric=lambda i, loss: loss)  # a metric at every step
        assert sched.flush(timeout=10)
        sched.close()
        leases = [r for r in requests if r.endswith("/lr")]
        posts = [r for r in requests if r.endswith("/metrics")]
        assert len(leases) == 256 // 64 + 1
        assert 1 <= len(posts) <= len(leases) + 1  # batched: never one request per step
        recorded = [e for e in run.events(limit=1000).events if e.kind == "metric"]
        assert sorted(e.payload["step"] for e in recorded) == list(range(256))


def test_plateau_with_one_step_leases_matches_reduce_lr_on_plateau(client: LRClient, run_id: str) -> None:
    spec = {
        "param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.01}],
        "schedule": {"type": "ReduceLROnPlateau", "metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 1},
    }
    run = client.run(run_id, spec=spec)
    values = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.86, 0.87, 0.9, 0.7, 0.75, 0.76, 0.77, 0.78, 0.79]

    def epochs(opt: Any, sched: Any, model: Any) -> list[list[float]]:
        seen = []
        for v in values:
            train(opt, _NoStep(), model, 3)  # three batches per epoch; the scheduler steps once per epoch
            sched.step(v)
            seen.append([g["lr"] for g in opt.param_groups])
        return seen

    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1)
    sched = RemoteScheduler(opt, run, lease_steps=1, lease_seconds=None)
    got = epochs(opt, sched, model)
    sched.close()

    ref_model = make_model()
    groups = two_groups(ref_model)
    groups[1]["lr"] = 0.01
    ref_opt = torch.optim.SGD(groups, lr=0.1)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(ref_opt, mode="min", factor=0.5, patience=1)
    want = epochs(ref_opt, ref, ref_model)
    assert [x for row in got for x in row] == pytest.approx([x for row in want for x in row], rel=1e-12)
    assert got[-1][0] < 0.1  # it did reduce


def test_plateau_with_leases_applies_from_the_first_unserved_step(client: LRClient, run_id: str) -> None:
    spec = {
        "param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.01}],
        "schedule": {"type": "ConstantLR", "factor": 1.0, "total_iters": 1},
        "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 0},
    }
    run = client.run(run_id, spec=spec)
    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1)
    sched = RemoteScheduler(opt, run, lease_steps=16, lease_seconds=None)
    seen = train(opt, sched, model, 100, metric=lambda i, loss: 1.0 - i / 100 if i < 20 else 2.0)  # worse from step 20
    sched.close()
    curve = run.curve(0, 100)
    assert [s[0][0] for s in seen] == lrs_of(curve, 0)
    first_reduced = next(i for i, s in enumerate(seen) if s[0][0] < 0.1)
    assert 21 <= first_reduced <= 21 + 16 + 8  # within a lease plus the refill margin


def test_resume_via_load_state_dict_writes_the_steps_values(server: ThreadServer, run_id: str) -> None:
    with LRClient(server.url) as client:
        run = client.run(run_id, spec=ONECYCLE_SPEC)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
        sched = RemoteScheduler(opt, run, lease_steps=16)
        train(opt, sched, model, 40)
        checkpoint = {"opt": opt.state_dict(), "sched": sched.state_dict()}
        train(opt, sched, model, 30)  # progress past the checkpoint, then "crash"
        sched.close()
    assert checkpoint["sched"]["last_epoch"] == 40

    with LRClient(server.url) as client:  # the restarted job
        run = client.run(run_id, spec=ONECYCLE_SPEC)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
        sched = RemoteScheduler(opt, run, lease_steps=16)
        opt.load_state_dict(checkpoint["opt"])
        for g in opt.param_groups:  # as if the optimizer's state had other values: the scheduler must win
            g["lr"], g["momentum"] = 123.0, 0.0
        sched.load_state_dict(checkpoint["sched"])
        assert sched.manager is not None and sched.manager.incarnation == 2
        curve = run.curve(0, 200)
        assert [g["lr"] for g in opt.param_groups] == [curve.groups[0].lr[40], curve.groups[1].lr[40]]
        assert [g["momentum"] for g in opt.param_groups] == [
            curve.groups[0].momentum[40],  # type: ignore[index]
            curve.groups[1].momentum[40],  # type: ignore[index]
        ]
        assert sched.last_epoch == 40
        run.scale(0.5, reason="after the restart")
        seen = train(opt, sched, model, 60)
        sched.close()
        curve = run.curve(40, 100)
        assert [s[0][1] for s in seen] == lrs_of(curve, 1)
        assert any(s[0][1] != v for s, v in zip(seen, run.curve(40, 100).groups[1].lr, strict=True)) is False
        assert run.get().incarnation == 2


def test_mid_run_change_takes_effect_after_the_leased_steps(server: ThreadServer, run_id: str) -> None:
    with LRClient(server.url) as client:
        run = client.run(run_id, spec=ONECYCLE_SPEC)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.05, momentum=0.9)
        sched = RemoteScheduler(opt, run, lease_steps=16, lease_seconds=None)
        seen = train(opt, sched, model, 30)
        change = run.replace({"type": "ConstantLR", "factor": 1.0, "total_iters": 1})
        seen += train(opt, sched, model, 50)
        sched.close()
        curve = run.curve(0, 80)
        assert [s[0][0] for s in seen] == lrs_of(curve, 0)
        assert 30 < change.from_step <= 30 + 16 + 8
        assert seen[change.from_step][0] == [0.01, 0.1]  # the replacement's values: the groups' base LRs
        # Momentum no longer cycled: it keeps the last value written (as after swapping torch schedulers).
        assert seen[change.from_step][1] == seen[change.from_step - 1][1] == seen[-1][1]


def test_param_group_count_mismatch_is_a_clear_error(client: LRClient, run_id: str) -> None:
    run = client.run(run_id, spec=ONECYCLE_SPEC)
    opt = torch.optim.SGD(make_model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"1 param group.*defines 2 \(backbone, head\)"):
        RemoteScheduler(opt, run)


def test_step_metric_needs_a_metric_name(client: LRClient, run_id: str) -> None:
    run = client.run(run_id, spec=ONECYCLE_SPEC)
    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1)
    sched = RemoteScheduler(opt, run, lease_steps=8)
    with pytest.raises(ValueError, match="metric_name"):
        sched.step(0.5)
    sched.close()
    named = RemoteScheduler(opt, run, lease_steps=8, metric_name="train_loss")
    named.step(torch.tensor(0.25))
    named.close()
    metrics = [e.payload for e in run.events().events if e.kind == "metric"]
    assert [(m["step"], m["name"], m["value"]) for m in metrics] == [(0, "train_loss", 0.25)]


def test_stale_incarnation_stops_a_zombie(server: ThreadServer, run_id: str, caplog: pytest.LogCaptureFixture) -> None:
    with LRClient(server.url) as client:
        run = client.run(run_id, spec=ONECYCLE_SPEC)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.1)
        zombie = RemoteScheduler(opt, run, lease_steps=4, refill_at=0)
        run.resume(2, key="the-new-job")  # another job resumed the run

        def run_on() -> None:
            for _ in range(8):
                zombie.step()

        with pytest.raises(StaleIncarnation):
            run_on()
        zombie.close()


class _NoStep:
    def step(self, *_: Any) -> None:
        pass


def test_client_logs_nothing_in_normal_operation(
    client: LRClient, run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lrserve.client")
    run = client.run(run_id, spec=ONECYCLE_SPEC)
    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1, momentum=0.9)
    sched = RemoteScheduler(opt, run, lease_steps=8)
    train(opt, sched, model, 40)
    sched.close()
    assert [r for r in caplog.records if r.name == "lrserve.client"] == []
    assert isinstance(client._http, httpx.Client)


def test_leases_grow_for_fast_loops(client: LRClient, run_id: str) -> None:
    run = client.run(run_id, spec=ONECYCLE_SPEC)
    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1, momentum=0.9)
    sched = RemoteScheduler(opt, run, lease_steps=16, lease_seconds=0.5, max_lease_steps=256)
    seen = []
    for _ in range(399):
        seen.append(opt.param_groups[1]["lr"])
        sched.step()  # microseconds a step: a lease of 16 would last no time
    sched.close()
    assert sched.window.count == 256
    assert seen == lrs_of(run.curve(0, 399), 1)


def test_local_plan_evaluates_exactly_what_the_server_serves(client: LRClient, run_id: str) -> None:
    from lrserve.client import LocalPlan

    spec = {
        "param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.02}],
        "schedule": {"type": "OneCycleLR", "max_lr": [0.1, 0.5], "total_steps": 500},
        "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 0},
    }
    run = client.run(run_id, spec=spec)
    run.values(0, 50)
    run.report_many([(10, "loss", 1.0), (20, "loss", 2.0)])
    run.scale(0.5)
    run.values(50, 50)
    run.set_lr([0.01, 0.001], until_step=150)
    run.values(100, 100)
    run.replace({"type": "CosineAnnealingLR", "T_max": 100}, origin="restart")
    run.report(220, "loss", 3.0)
    local = LocalPlan.from_wire(run.plan()).window(0, 450, incarnation=1)
    curve = run.curve(0, 450)
    for g in range(2):
        assert local.lr[g].tolist() == list(curve.groups[g].lr)
