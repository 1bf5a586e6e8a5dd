"""What RemoteScheduler costs a training loop, next to torch's own scheduler, in one run.

    python bench/client_overhead.py [--steps 20000] [--loop-steps 3000] [--lease 128] [--device cpu|cuda]

1. Per-step cost of ``RemoteScheduler.step()`` vs ``torch.optim.lr_scheduler.OneCycleLR.step()`` on the same
   kind of optimizer (SGD with momentum, two param groups, momentum cycled): the mean over ``--steps`` calls,
   leases and their background refills included (goal: <= 1x).
2. A small training loop (an MLP on CPU; ``--model resnet`` for a ResNet-18-sized conv net, meant for a GPU)
   stepped with each scheduler, alternating rounds; steps/s and the overhead in percent (goal: < 1 %).

The server is a real ``lrserve serve`` child process on a temporary SQLite file (so its work does not share this
process's interpreter), reached over loopback HTTP.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a script named http.py: as this script's folder (sys.path[0]) it would shadow the standard library.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import torch

from lrserve.client import LRClient, RemoteScheduler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def lrserve_server() -> Iterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="lrserve-bench-"))
    port = free_port()
    script = Path(sys.executable).with_name("lrserve")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lrserve.cli.main"]
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            *command,
            "serve",
            "--port",
            str(port),
            "--store",
            f"sqlite:///{folder / 'bench.db'}",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "server.log").read_text())
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def spec(total_steps: int) -> dict[str, Any]:
    return {
        "param_groups": [{"name": "body", "lr": 0.01}, {"name": "head", "lr": 0.1}],
        "schedule": {"type": "OneCycleLR", "max_lr": [0.1, 1.0], "total_steps": total_steps, "cycle_momentum": True},
    }


def make_model(kind: str, device: str) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    torch.manual_seed(0)
    if kind == "resnet":

        def block(c_in: int, c_out: int, stride: int) -> torch.nn.Module:
            return torch.nn.Sequential(
                torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
                torch.nn.BatchNorm2d(c_out),
                torch.nn.ReLU(),
                torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                torch.nn.BatchNorm2d(c_out),
                torch.nn.ReLU(),
            )

        body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            torch.nn.BatchNorm2d(64),
            torch.nn.ReLU(),
            block(64, 64, 1),
            block(64, 64, 1),
            block(64, 128, 2),
            block(128, 128, 1),
            block(128, 256, 2),
            block(256, 256, 1),
            block(256, 512, 2),
            block(512, 512, 1),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        model = torch.nn.Sequential(body, torch.nn.Linear(512, 1000)).to(device)
        x = torch.randn(64, 3, 224, 224, device=device)
        y = torch.randint(0, 1000, (64,), device=device)

        def loss() -> torch.Tensor:
            return torch.nn.functional.cross_entropy(model(x), y)

        return model, loss
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1)).to(device)
    x = torch.randn(32, 64, device=device)
    y = x.sum(dim=1, keepdim=True)

    def mlp_loss() -> torch.Tensor:
        return ((model(x) - y) ** 2).mean()

    return model, mlp_loss


def groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    children = list(model.children())
    return [
        {"params": [p for c in children[:-1] for p in c.parameters()]},
        {"params": list(children[-1].parameters())},
    ]


def per_step(client: LRClient, steps: int, lease: int) -> tuple[float, float, float]:
    """Mean seconds per step() of torch's OneCycleLR; of RemoteScheduler's hot path (inside a window); and of
    RemoteScheduler in a tight loop of nothing but step() calls, lease refills included."""
    model, _ = make_model("mlp", "cpu")
    total = 3 * steps + 10
    opt = torch.optim.SGD(groups(model), lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "step() before optimizer.step()": we time the scheduler alone
        ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 1.0], total_steps=total)
        t0 = time.perf_counter()
        for _ in range(steps):
            ref.step()
        torch_s = (time.perf_counter() - t0) / steps
    run = client.run(f"bench-step-{os.getpid()}-{time.time_ns()}", spec=spec(total))
    opt = torch.optim.SGD(groups(model), lr=0.1, momentum=0.9)
    # One window holding every step: the per-step path alone (index, a few dict writes).
    sched = RemoteScheduler(opt, run, lease_steps=steps + 1, lease_seconds=None, refill_at=steps + 2)
    t0 = time.perf_counter()
    for _ in range(steps):
        sched.step()
    hot_s = (time.perf_counter() - t0) / steps
    sched.close()
    sched = RemoteScheduler(opt, run, lease_steps=lease)
    sched.resume(steps + 1)
    t0 = time.perf_counter()
    for _ in range(steps):
        sched.step()
    tight_s = (time.perf_counter() - t0) / steps
    sched.close()
    return torch_s, hot_s, tight_s


def training_loop(client: LRClient, steps: int, lease: int, kind: str, device: str, rounds: int) -> tuple[float, float]:
    """Steps/s of the same loop with torch's scheduler and with RemoteScheduler (best of ``rounds`` each)."""
    model, loss_fn = make_model(kind, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rates: dict[str, list[float]] = {"torch": [], "remote": []}
    total = steps * rounds + 10
    run = client.run(f"bench-loop-{os.getpid()}-{time.time_ns()}", spec=spec(total))
    for r in range(rounds):
        for which in ("torch", "remote") if r % 2 == 0 else ("remote", "torch"):
            opt = torch.optim.SGD(groups(model), lr=0.1, momentum=0.9)
            if which == "torch":
                sched: Any = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 1.0], total_steps=total)
            else:
                sched = RemoteScheduler(opt, run, lease_steps=lease)
                if r:
                    sched.resume(r * steps)  # a fresh window of the same run; not timed
            for _ in range(20):  # warm-up, not timed
                opt.zero_grad(set_to_none=True)
                loss_fn().backward()
                opt.step()
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss_fn().backward()
                opt.step()
                sched.step()
            sync()
            rates[which].append(steps / (time.perf_counter() - t0))
            if which == "remote":
                sched.close()
    return max(rates["torch"]), max(rates["remote"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="scheduler steps timed in part 1")
    parser.add_argument("--loop-steps", type=int, default=2_000, help="training steps per round in part 2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=int, default=128)
    parser.add_argument("--model", choices=["mlp", "resnet"], default="mlp")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--url", help="an lrserve server to use instead of starting one")
    args = parser.parse_args()
    torch.set_num_threads(1)

    def body(url: str) -> None:
        with LRClient(url) as client:
            per_step(client, 2000, args.lease)  # warm-up of both paths
            torch_s, hot_s, tight_s = per_step(client, args.steps, args.lease)
            print(
                f"scheduler.step()  torch OneCycleLR {torch_s * 1e6:6.2f} us | RemoteScheduler per step "
                f"{hot_s * 1e6:6.2f} us, ratio {hot_s / torch_s:4.2f}x (goal <= 1x) | tight loop of step() alone, "
                f"lease refills included: {tight_s * 1e6:6.2f} us, ratio {tight_s / torch_s:4.2f}x"
            )
            t_rate, r_rate = training_loop(client, args.loop_steps, args.lease, args.model, args.device, args.rounds)
            overhead = (t_rate / r_rate - 1) * 100
            print(
                f"training loop ({args.model}, {args.device})  torch {t_rate:8.1f} steps/s   RemoteScheduler "
                f"{r_rate:8.1f} steps/s   ratio {r_rate / t_rate:5.3f}   overhead {overhead:+.2f} %"
            )

    if args.url:
        body(args.url)
    else:
        with lrserve_server() as url:
            body(url)


if __name__ == "__main__":
    main()
