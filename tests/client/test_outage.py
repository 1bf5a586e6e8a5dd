"""Outages: training never raises, the history afterwards equals what was applied, no metric lost or doubled."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

torch = pytest.importorskip("torch")

from lrserve.client import LRClient, RemoteScheduler  # noqa: E402
from tests.client.conftest import ThreadServer  # noqa: E402
from tests.client.test_scheduler import make_model, two_groups  # noqa: E402
from tests.e2e.server import ServerProcess  # noqa: E402

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.05}, {"name": "head", "lr": 0.5}],
    "schedule": {"type": "CosineAnnealingLR", "T_max": 300, "eta_min": 0.001},
    "plateau": {"metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 2},
}


def val_loss(step: int) -> float:
    """Improves, then stalls (plateau reductions fire), at one value per 10 steps."""
    return max(1.0 - step / 200, 0.6) + (step % 30) / 1000


def train_step(model: Any, opt: Any) -> None:
    x = torch.randn(32, 8)
    loss = ((model(x) - x.sum(dim=1, keepdim=True)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lrserve.client" and "unreachable" in r.getMessage()]


def test_server_killed_and_restarted_mid_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="lrserve.client")
    server = ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path / 'lrserve.db'}", "--log-level", "warning")
    server.start()
    client = LRClient(server.url, retry_for=0.5, timeout=1.0)
    try:
        run = client.run("outage", spec=SPEC)
        torch.manual_seed(0)
        model = make_model()
        opt = torch.optim.SGD(two_groups(model), lr=0.1, momentum=0.9)
        sched = RemoteScheduler(opt, run, lease_steps=16, refill_budget=0.2, retry_for=0.5, flush_every=0.2)
        applied: list[list[float]] = []
        reported: list[tuple[int, float]] = []
        restarter: threading.Thread | None = None
        step = 0
        while True:
            applied.append([g["lr"] for g in opt.param_groups])
            train_step(model, opt)
            time.sleep(0.002)
            metric = None
            if step % 10 == 9:
                metric = val_loss(step)
                reported.append((step, metric))
            sched.step(metric)
            step += 1
            if step == 100:
                server.kill()  # SIGKILL: no shutdown at all
            if step == 160:
                restarter = threading.Thread(target=server.start)  # training goes on while it starts
                restarter.start()
            if step >= 300 and restarter is not None and not restarter.is_alive():
                manager = sched.manager
                assert manager is not None
                if not manager.offline and step >= 400:
                    break
            assert step < 5000, "the client never reconnected"
        assert sched.flush(timeout=30)
        sched.close()
        manager = sched.manager
        assert manager is not None
        assert manager.stats.incidents == 1 and manager.stats.windows_local >= 2
        assert len(outage_warnings(caplog)) == 1  # one warning per incident, not per step

        n = len(applied)
        curve = run.curve(0, n)
        for g in range(2):
            assert [a[g] for a in applied] == list(curve.groups[g].lr)  # the history tells what was applied
        recorded = []
        page = run.events(limit=1000)
        recorded = [e.payload for e in page.events if e.kind == "metric"]
        counts = Counter((m["step"], m["name"]) for m in recorded)
        assert all(c == 1 for c in counts.values())  # none doubled
        assert sorted((m["step"], float(m["value"])) for m in recorded) == reported  # none lost
        assert any(e.kind == "reduction" for e in page.events)  # the plateau worked through it all
    finally:
        client.close()
        server.stop()


class SwitchTransport(httpx.HTTPTransport):
    """A network that can be cut: while ``down`` is set, every request fails to connect."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.down.is_set():
            raise httpx.ConnectError("network cut", request=request)
        return super().handle_request(request)


def test_change_made_while_the_worker_is_cut_off(server: ThreadServer) -> None:
    """The server stays up and an operator changes the run while the worker cannot reach it: the worker goes on
    with its plan; on reconnect the server pins the offline steps to that plan and the change follows them."""
    transport = SwitchTransport()
    with LRClient(server.url, transport=transport, retry_for=0.3) as worker, LRClient(server.url) as operator:
        cut_off(server, worker, operator, transport)


def cut_off(server: ThreadServer, worker: LRClient, operator: LRClient, transport: SwitchTransport) -> None:
    spec = {**SPEC, "plateau": None}
    run = worker.run("partition", spec=spec)
    model = make_model()
    opt = torch.optim.SGD(two_groups(model), lr=0.1, momentum=0.9)
    sched = RemoteScheduler(opt, run, lease_steps=16, lease_seconds=None, refill_budget=0.1, retry_for=0.3)
    applied = []
    change = None
    manager = sched.manager
    assert manager is not None
    back = None
    for step in range(5000):
        applied.append([g["lr"] for g in opt.param_groups])
        train_step(model, opt)
        sched.step()
        if step == 40:
            transport.down.set()
        if step == 80:
            change = operator.run("partition").scale(0.1, reason="during the partition")
        if step == 140:
            transport.down.clear()
        if step > 140 and back is None and not manager.offline:
            back = step
        if back is not None and step >= max(back + 40, 200):
            break
    sched.close()
    assert back is not None, "the worker never reconnected"
    total = len(applied)
    assert manager is not None and manager.stats.incidents == 1 and manager.stats.applied_reports >= 1
    assert change is not None
    curve = operator.run("partition").curve(0, total)
    events = operator.run("partition").events(limit=1000).events
    for g in range(2):
        assert [a[g] for a in applied] == list(curve.groups[g].lr), [(e.seq, e.kind, e.payload) for e in events[1:]]
    # The offline steps kept the old plan although the change was recorded from an earlier step...
    events = operator.run("partition").events(limit=1000).events
    pins = [e.payload for e in events if e.kind == "applied"]
    assert pins and pins[0]["start"] <= change.from_step + 1
    last_offline = max(p["stop"] for p in pins)
    # ... and the change shows right after them.
    assert operator.run("partition").plan().revision == 1
    first_after = last_offline + 1
    assert applied[first_after - 1][1] > applied[first_after][1] * 5  # scaled by 0.1 from here on
