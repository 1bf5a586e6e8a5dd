"""HTTP throughput and latency of lrserve against a bare FastAPI route, on the same uvicorn set-up, in one run.

    python bench/http_throughput.py [--duration 5] [--connections 32] [--store URL]

Servers and the load generator are separate processes (pinned to separate cores where there are several): the
lrserve app (``create_app``) and a bare FastAPI app, each run by ``uvicorn.run`` with the same arguments as
``lrserve serve`` (one worker, uvloop/httptools when installed, access log off). The load generator is a raw
HTTP/1.1 keep-alive client on asyncio (no httpx: it would be the bottleneck), bounded in time; it reports its
own CPU use, so a saturated generator shows.

Measured (requests/s, p50 and p99 latency):

- ``bare``: ``GET /bare`` of the bare app, returning a small JSON dict;
- ``lr frozen``: ``GET /v1/runs/{id}/lr?step=s`` of steps already served (answered from memory), many
  connections on one run, as the ranks of a job;
- ``lr new``: each request a step past the horizon (a write transaction: SQLite commits with fsync), one run per
  connection, as many jobs;
- ``curve 1M json`` / ``curve 1M npy``: a 1,000,000-point curve, one request at a time, against a bare route
  returning a pre-built body of the same size (what moving the bytes costs).

Printed as ratios to the bare figures. Goals: frozen-step reads >= 0.8x the bare route; a 1M-point JSON curve in
<= 0.3 s end to end.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the standard `http`
# package (which httpx and uvicorn import): drop the folder.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

HOST = "127.0.0.1"
SPEC = {
    "param_groups": [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "OneCycleLR", "max_lr": [0.1, 1.0], "total_steps": 10_000_000},
    "plateau": {"metric": "val_loss", "patience": 10},
}
# The curve scenario: one group, no cycled momentum (1M steps and 1M LRs, as the reference figures).
CURVE_SPEC = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "CosineAnnealingLR", "T_max": 1_000_000}}
FROZEN = 100_000  # steps leased before the frozen-read scenario
CURVE_POINTS = 1_000_000


# ---- servers ------------------------------------------------------------------------------------------------------


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {cpu % os.cpu_count()})  # type: ignore[operator]


def bare_app() -> Any:
    from fastapi import FastAPI, Response

    app = FastAPI()
    blobs: dict[int, bytes] = {}

    @app.get("/bare")
    async def bare() -> dict[str, Any]:
        return {"ok": True, "step": 1}

    @app.get("/blob")
    async def blob(size: int) -> Response:
        body = blobs.setdefault(size, b"0" * size)
        return Response(body, media_type="application/octet-stream")

    return app


def serve(kind: str, port: int, store: str) -> None:
    """Run one server in this process, as ``lrserve serve`` runs it."""
    import uvicorn

    _pin(0)
    if kind == "bare":
        app = bare_app()
    else:
        from lrserve.service.app import create_app
        from lrserve.service.settings import Settings

        app = create_app(Settings(store=store, log_level="warning"))
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False, server_header=False)


def start_server(kind: str, port: int, store: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port), "--store", store])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{HOST}:{port}/{'bare' if kind == 'bare' else 'readyz'}", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# ---- load generator (a separate process) ------------------------------------------------------------------------


async def _connection(
    port: int, path_of: Callable[[int], str], deadline: float, warmup_until: float, latencies: list[float]
) -> list[str]:
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 26)
    errors: list[str] = []
    i = 0
    try:
        while (now := time.perf_counter()) < deadline:
            request = f"GET {path_of(i)} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
            i += 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            if head[9:12] != b"200":
                errors.append(head[9:12].decode() + " " + body[:300].decode(errors="replace"))
            if now >= warmup_until:
                latencies.append(time.perf_counter() - now)
    finally:
        writer.close()
    return errors


async def _load(
    port: int, paths: list[str], connections: int, duration: float, warmup: float, offset: int
) -> dict[str, Any]:
    latencies: list[float] = []
    start = time.perf_counter()
    warmup_until, deadline = start + warmup, start + warmup + duration
    cpu0 = time.process_time()

    def path_of(conn: int) -> Callable[[int], str]:
        template = paths[conn % len(paths)]
        return lambda i: template.replace("{i}", str(i + offset)).replace("{conn}", str(conn))

    per_connection = await asyncio.gather(
        *(_connection(port, path_of(c), deadline, warmup_until, latencies) for c in range(connections))
    )
    errors = [e for errs in per_connection for e in errs]
    elapsed = time.perf_counter() - warmup_until
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "rps": n / elapsed,
        "p50_ms": 1000 * latencies[n // 2] if n else float("nan"),
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "client_cpu": (time.process_time() - cpu0) / (time.perf_counter() - start),
    }


def load(
    port: int, paths: list[str], connections: int, duration: float, warmup: float, offset: int = 0
) -> dict[str, Any]:
    """Run the load generator in its own process (pinned away from the server) and return its figures.

    In ``paths``, ``{conn}`` is the connection's number and ``{i}`` its request counter plus ``offset``."""
    spec = {"port": port, "paths": paths, "connections": connections, "duration": duration, "warmup": warmup}
    spec = json.dumps({**spec, "offset": offset})
    out = subprocess.run([sys.executable, __file__, "--load", spec], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _load_main(spec: dict[str, Any]) -> None:
    _pin(1)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    print(json.dumps(asyncio.run(_load(**spec))))


# ---- the run ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are printed")
    parser.add_argument("--store", help="database URL for lrserve (default: a temporary SQLite file)")
    parser.add_argument("--serve", choices=["bare", "lrserve"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.store)
        return
    if args.load:
        _load_main(json.loads(args.load))
        return

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{Path(tmp) / 'bench.db'}"
        bare_port, our_port = free_port(), free_port()
        servers = [start_server("bare", bare_port, store), start_server("lrserve", our_port, store)]
        try:
            run_bench(args, bare_port, our_port)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(30)


def run_bench(args: argparse.Namespace, bare_port: int, our_port: int) -> None:
    conns, dur, warm = args.connections, args.duration, args.warmup
    with httpx.Client(base_url=f"http://{HOST}:{our_port}", timeout=60) as http:
        http.put("/v1/runs/bench", json={"spec": SPEC}).raise_for_status()
        http.get("/v1/runs/bench/lr", params={"step": 0, "count": FROZEN}).raise_for_status()
        for c in range(conns):
            http.put(f"/v1/runs/bench-new-{c}", json={"spec": SPEC}).raise_for_status()
        http.put("/v1/runs/bench-curve", json={"spec": CURVE_SPEC}).raise_for_status()
        curve = f"/v1/runs/bench-curve/curve?stop={CURVE_POINTS}"
        json_size = len(http.get(curve).content)
        npy_size = len(http.get(curve + "&format=npy").content)

    # {i} counts each connection's requests: frozen reads walk through served steps (a connection makes far fewer
    # than FROZEN requests); "new" reads walk forward on the connection's own run, each one past its horizon.
    # Rounds interleave the scenarios, so a change in the machine's load hits all of them alike.
    scenarios: list[tuple[str, int, str, int]] = [
        ("bare", bare_port, "/bare", conns),
        ("lr frozen", our_port, "/v1/runs/bench/lr?step={i}", conns),
        ("lr new", our_port, "/v1/runs/bench-new-{conn}/lr?step={i}", conns),
        ("bare 1M json-sized", bare_port, f"/blob?size={json_size}", 1),
        ("curve 1M json", our_port, curve, 1),
        ("bare 1M npy-sized", bare_port, f"/blob?size={npy_size}", 1),
        ("curve 1M npy", our_port, curve + "&format=npy", 1),
    ]
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        offset = r * 10_000_000  # the "new" steps of a round start past those of earlier rounds
        rounds.append(
            {
                name: load(port, [path], n, dur, warm, offset if name == "lr new" else 0)
                for name, port, path, n in scenarios
            }
        )
    report(rounds, conns, json_size, npy_size)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(rounds: list[dict[str, dict[str, Any]]], conns: int, json_size: int, npy_size: int) -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"uvicorn, 1 worker, access log off; load: {conns} keep-alive connections (curves: 1); {cpus} CPUs; "
        f"median of {len(rounds)} interleaved rounds"
    )
    print(f"{'scenario':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'client cpu':>12}")
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        print(
            f"{name:<22}{_median([x['rps'] for x in runs]):>10.0f}{_median([x['p50_ms'] for x in runs]):>10.2f}"
            f"{_median([x['p99_ms'] for x in runs]):>10.2f}{sum(x['errors'] for x in runs):>8}"
            f"{_median([x['client_cpu'] for x in runs]):>11.0%}"
        )

    def ratio(a: str, b: str, key: str = "rps") -> float:
        return _median([r[a][key] / r[b][key] for r in rounds])

    print()
    print(f"lr frozen / bare route    {ratio('lr frozen', 'bare'):6.2f}x   (goal >= 0.80x)")
    print(f"lr new    / bare route    {ratio('lr new', 'bare'):6.2f}x   (each one a committed write)")
    for fmt, size in (("json", json_size), ("npy", npy_size)):
        ours = _median([r[f"curve 1M {fmt}"]["p50_ms"] for r in rounds]) / 1000
        slower = ratio(f"curve 1M {fmt}", f"bare 1M {fmt}-sized", "p50_ms")
        goal = "   (goal <= 0.3 s)" if fmt == "json" else ""
        same = f"a bare route sending the same {size / 1e6:.0f} MB"
        print(f"curve 1M {fmt:<4} p50 {ours:6.3f} s = {slower:4.1f}x {same}{goal}")
    for name in rounds[0]:
        first = next((r[name]["first_error"] for r in rounds if r[name]["first_error"]), None)
        if first:
            print(f"first error of {name}: {first}")


if __name__ == "__main__":
    main()
