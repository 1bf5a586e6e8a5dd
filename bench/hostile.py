"""Worst-case single requests against a real server: time, the server's peak RSS, and /healthz p99 meanwhile.

Each case is one request an open (or read/train-token) caller can send, found by an adversarial probe. For each,
the script starts a fresh server (so peak RSS is the case's own), sends the request while a second client polls
``/healthz`` every 10 ms, and prints the answer's status, its wall time, the server's peak RSS above its idle
RSS (sampled from /proc every 5 ms) and the /healthz p99. ``--tree DIR`` runs the server from another checkout
(e.g. ``git worktree add /tmp/before <commit>``) through its ``tools/typeshim`` links, so before and after are
measured side by side by the same script on the same machine::

    python bench/hostile.py                      # this tree
    python bench/hostile.py --tree /tmp/before   # an older commit

Goal (issue 10): with default settings no single request uses more than 2 s of server CPU or 256 MB, and
/healthz p99 stays under 100 ms while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

EXPR = " + ".join(f"0.001 * cos(step / {k + 1})" for k in range(24))


def _groups(n: int) -> list[dict[str, Any]]:
    return [{"name": f"g{i}", "lr": 0.1} for i in range(n)]


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


Case = tuple[str, Callable[[httpx.Client], None], Callable[[httpx.Client], httpx.Response]]


def _nothing(_: httpx.Client) -> None:
    return None


def _run(spec: dict[str, Any]) -> Callable[[httpx.Client], None]:
    def setup(http: httpx.Client) -> None:
        http.put("/v1/runs/hostile", json={"spec": spec}).raise_for_status()

    return setup


CASES: list[Case] = [
    ("YAML alias bomb, 8 levels (/ui/api/parse)", _nothing, lambda h: h.post("/ui/api/parse", json={"text": _bomb(8)})),
    (
        "curve 64 groups x 1M points",
        _nothing,
        lambda h: h.post(
            "/v1/curves",
            json={
                "spec": {"param_groups": _groups(64), "schedule": {"type": "CosineAnnealingLR", "T_max": 1000}},
                "start": 0,
                "stop": 1_000_000,
                "stride": 1,
            },
        ),
    ),
    (
        "MultiplicativeLR ~200 nodes, 1 point at step 1e7",
        _nothing,
        lambda h: h.post(
            "/v1/curves",
            json={
                "spec": {
                    "param_groups": _groups(1),
                    "schedule": {"type": "MultiplicativeLR", "lr_lambda": f"0.99+{EXPR}"},
                },
                "start": 10_000_000,
                "stop": 10_000_001,
                "stride": 1,
            },
        ),
    ),
    (
        "preview with 4,000 simulated plateau metrics",
        _nothing,
        lambda h: h.post(
            "/v1/curves",
            json={
                "spec": {
                    "param_groups": _groups(1),
                    "schedule": {"type": "StepLR", "step_size": 100},
                    "plateau": {"metric": "loss", "patience": 0, "factor": 0.99},
                },
                "start": 0,
                "stop": 4000,
                "stride": 1,
                "metrics": [{"step": i, "name": "loss", "value": float(i)} for i in range(4000)],
            },
        ),
    ),
    (
        "lease 100k steps x 256 groups",
        _run({"param_groups": _groups(256), "schedule": {"type": "StepLR", "step_size": 10}}),
        lambda h: h.get("/v1/runs/hostile/lr", params={"step": 0, "count": 100_000}),
    ),
    (
        "/applied 0..10M on 8 groups",
        _run({"param_groups": _groups(8), "schedule": {"type": "StepLR", "step_size": 10}}),
        lambda h: h.post("/v1/runs/hostile/applied", json={"start": 0, "stop": 10_000_000, "last_seq": 1}),
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(case: Case, tree: Path | None, timeout: float) -> str:
    name, setup, send = case
    port = _free_port()
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "tools" / "typeshim")
    with tempfile.TemporaryDirectory() as tmp:
        env["LRSERVE_STORE"] = f"sqlite:///{tmp}/h.db"
        env["LRSERVE_REQUEST_LOG"] = "false"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "lrserve.service.app:app_from_env", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=timeout) as http:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if http.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        return f"{name}: server did not start"
                    time.sleep(0.05)
                setup(http)
                idle = _rss_kb(proc.pid)
                peak, health, done = [idle], [], threading.Event()

                def sample() -> None:
                    while not done.is_set():
                        peak.append(_rss_kb(proc.pid))
                        time.sleep(0.005)

                def poll() -> None:
                    with httpx.Client(base_url=base, timeout=timeout) as h:
                        while not done.is_set():
                            t = time.perf_counter()
                            with contextlib.suppress(httpx.HTTPError):
                                h.get("/healthz")
                            health.append(time.perf_counter() - t)
                            time.sleep(0.01)

                threads = [threading.Thread(target=sample), threading.Thread(target=poll)]
                for t in threads:
                    t.start()
                t0 = time.perf_counter()
                try:
                    status = str(send(http).status_code)
                except httpx.HTTPError as e:
                    status = type(e).__name__
                wall = time.perf_counter() - t0
                done.set()
                for t in threads:
                    t.join()
            if len(health) >= 2:
                p99_text = f"{statistics.quantiles(health, n=100)[98] * 1000:7.1f} ms"
            else:  # answered before a poll could finish
                p99_text = f"{health[0] * 1000:7.1f} ms" if health else "    n/a"
            return (
                f"{name:48s} status {status:>14s}  {wall:7.2f} s  peak RSS +{(max(peak) - idle) / 1024:8.1f} MB"
                f"  /healthz p99 {p99_text}"
            )
        finally:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=None, help="run the server from this checkout")
    parser.add_argument("--timeout", type=float, default=90, help="seconds to wait for each answer")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    args = parser.parse_args()
    print(f"server from {args.tree or 'this tree'}")
    for case in CASES:
        if args.only in case[0]:
            print(measure(case, args.tree, args.timeout), flush=True)


if __name__ == "__main__":
    main()
