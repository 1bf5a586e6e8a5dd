"""What the request log and the Prometheus counters cost the hottest call, the frozen-step lease.

    python bench/requestlog.py [--rounds 5] [--duration 2] [--connections 32]

Variants of the app, all as ``lrserve serve`` sets them up (``logs.lean_records``, ``logs.log_config("info",
"json")``, uvicorn's access log off unless said, one worker), log lines to a file as a container's log driver
would take them:

- ``plain``: ``metrics: false, request_log: false`` (no RequestLog middleware at all);
- ``metrics``: request ids and the Prometheus counters, no log line;
- ``defaults``: counters, and the request log at ``log_level: info``, where a frozen lease answered from memory
  writes no line (its line is DEBUG);
- ``log every request``: the same at ``log_level: debug``: one JSON line per request, frozen leases included;
- ``+uvicorn access``: that plus uvicorn's own access log (what the issue measured at -24 %; HTTP only).

Two measurements, because a shared machine makes requests/s swing by more than the effects measured:

1. in-process: the ASGI app called directly (no sockets, no HTTP parsing) with the frozen-lease request, rounds
   interleaving the variants, timed by this thread's CPU clock: the microseconds each feature adds, to +-1 us;
2. HTTP: real servers and ``bench/http_throughput.py``'s load generator (a separate process, raw keep-alive HTTP/1.1) on
   ``GET /v1/runs/{id}/lr?step=i``: requests/s, p50/p99, and each server's own CPU time per request
   (``/proc/PID/stat``), the denominator for (1).

The cost of a feature is printed as (1)'s added microseconds over (2)'s CPU per request of ``plain``, next to the
raw HTTP ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import logging.config
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

HOST = "127.0.0.1"
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"metrics": False, "request_log": False},
    "metrics": {"metrics": True, "request_log": False},
    "defaults": {"metrics": True, "request_log": True},
    "log every request": {"metrics": True, "request_log": True, "log_level": "debug"},
    "+uvicorn access": {"metrics": True, "request_log": True, "log_level": "debug", "access_log": True},
}
IN_PROCESS = ["plain", "metrics", "defaults", "log every request"]
PATH = "/v1/runs/bench/lr"


def _bench_http() -> ModuleType:
    """bench/http_throughput.py, loaded by path (its load generator and the run spec)."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("lrserve_bench_http", os.path.join(here, "http_throughput.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logging(level: str, stream: Any = None, access_log: bool = False) -> dict[str, Any]:
    from lrserve.service.logs import lean_records, log_config

    lean_records()  # as lrserve serve does
    config = log_config(level, "json")
    if access_log:
        config["loggers"]["uvicorn.access"] = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    if stream is not None:
        config["handlers"]["stderr"]["stream"] = stream
    return config


# ---- 1. in-process ------------------------------------------------------------------------------------------------


def in_process(
    rounds: int, per_round: int, spec: dict[str, Any], frozen: int, log_file: Path
) -> dict[str, list[float]]:
    """CPU microseconds per frozen-lease request of each variant, one figure per round."""
    from lrserve.schemas.wire import RunCreate
    from lrserve.service.app import create_app
    from lrserve.service.settings import Settings

    with log_file.open("w") as stream:
        logging.config.dictConfig(_logging("info", stream))
        ours = logging.getLogger("lrserve")

        async def run() -> dict[str, list[float]]:
            async with AsyncExitStack() as stack:
                apps = {}
                for name in IN_PROCESS:
                    db = log_file.with_name(f"inproc-{name}.db")
                    options = {k: v for k, v in VARIANTS[name].items() if k != "log_level"}
                    app = create_app(Settings(store=f"sqlite:///{db}", **options))
                    await stack.enter_async_context(app.router.lifespan_context(app))
                    service = app.state.service
                    service.ensure_run("bench", RunCreate.model_validate({"spec": spec}), None)
                    service.lease("bench", 0, frozen, None)
                    apps[name] = app

                async def receive() -> dict[str, Any]:
                    return {"type": "http.request", "body": b"", "more_body": False}

                async def send(message: Any) -> None:
                    pass

                def scope(i: int) -> dict[str, Any]:
                    return {
                        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                        "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "root_path": "",
                        "query_string": b"step=%d" % (i % frozen), "headers": [(b"host", b"127.0.0.1:8000")],
                        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
                    }  # fmt: skip

                cpu: dict[str, list[float]] = {name: [] for name in apps}
                for r in range(rounds + 1):  # round 0 warms up
                    for name, app in apps.items():
                        ours.setLevel(VARIANTS[name].get("log_level", "info").upper())
                        began = time.thread_time()
                        for i in range(per_round):
                            await app(scope(i), receive, send)
                        if r:
                            cpu[name].append(1e6 * (time.thread_time() - began) / per_round)
                return cpu

        return asyncio.run(run())


# ---- 2. HTTP ------------------------------------------------------------------------------------------------------


def serve(variant: str, port: int, store: str) -> None:
    import uvicorn

    from lrserve.service.app import create_app
    from lrserve.service.settings import Settings

    _bench_http()._pin(0)
    options = dict(VARIANTS[variant])
    access_log = bool(options.pop("access_log", False))
    level = options.pop("log_level", "info")
    app = create_app(Settings(store=store, **options))
    config = _logging(level, access_log=access_log)
    uvicorn.run(
        app, host=HOST, port=port, log_config=config, log_level=level, access_log=access_log, server_header=False
    )


def start(variant: str, port: int, store: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", variant, "--port", str(port), "--store", store], stderr=err
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{variant} server did not start:\n{log.read_text()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(bench: ModuleType, proc: subprocess.Popen[bytes], port: int, args: argparse.Namespace) -> dict[str, Any]:
    """One load run; with no warm-up excluded, every request the server handled is counted against its CPU time."""
    before = cpu_seconds(proc.pid)
    result: dict[str, Any] = bench.load(port, [PATH + "?step={i}"], args.connections, args.duration, 0.0)
    result["cpu_us"] = 1e6 * (cpu_seconds(proc.pid) - before) / max(result["requests"], 1)
    return result


def over_http(bench: ModuleType, args: argparse.Namespace, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    ports = {name: bench.free_port() for name in VARIANTS}
    procs = {}
    try:
        for i, name in enumerate(VARIANTS):
            procs[name] = start(name, ports[name], f"sqlite:///{tmp / f'{i}.db'}", tmp / f"{i}.log")
            with httpx.Client(base_url=f"http://{HOST}:{ports[name]}", timeout=60) as http:
                http.put("/v1/runs/bench", json={"spec": bench.SPEC}).raise_for_status()
                http.get(PATH, params={"step": 0, "count": bench.FROZEN}).raise_for_status()
        for name in VARIANTS:  # warm-up
            bench.load(ports[name], [PATH + "?step={i}"], args.connections, 0.5, 0.0)
        rounds = [{n: measure(bench, procs[n], ports[n], args) for n in VARIANTS} for _ in range(args.rounds)]
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    return rounds, {name: (tmp / f"{i}.log").stat().st_size for i, name in enumerate(VARIANTS)}


# ---- the run ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each measurement")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per HTTP load run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="requests per in-process round and variant")
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.store)
        return
    bench = _bench_http()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        http_rounds, log_bytes = over_http(bench, args, tmp)
        cpu = in_process(args.rounds * 4, args.requests, bench.SPEC, bench.FROZEN, tmp / "inproc.log")
    report(http_rounds, log_bytes, cpu, args)


def report(
    http: list[dict[str, dict[str, Any]]], log_bytes: dict[str, int], cpu: dict[str, list[float]], args: Any
) -> None:
    def med(name: str, key: str, over: str | None = None) -> float:
        if over is None:
            return statistics.median(r[name][key] for r in http)
        return statistics.median(r[name][key] / r[over][key] for r in http)

    print(f"HTTP: {args.connections} keep-alive connections, {len(http)} interleaved rounds of {args.duration:g} s")
    print(
        f"{'server':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'rps/plain':>11}"
        f"{'cpu us/req':>12}{'cpu/plain':>11}{'log MB':>8}"
    )
    for name in VARIANTS:
        print(
            f"{name:<18}{med(name, 'rps'):>9.0f}{med(name, 'p50_ms'):>9.3f}{med(name, 'p99_ms'):>9.3f}"
            f"{sum(r[name]['errors'] for r in http):>8}{med(name, 'rps', 'plain'):>10.3f}x"
            f"{med(name, 'cpu_us'):>12.1f}{med(name, 'cpu_us', 'plain'):>10.3f}x{log_bytes[name] / 1e6:>8.1f}"
        )

    def added(name: str, base: str) -> float:
        return statistics.median(a - b for a, b in zip(cpu[name], cpu[base], strict=True))

    per_request = med("plain", "cpu_us")
    print(f"\nin-process: the app alone, {len(cpu['plain'])} interleaved rounds of {args.requests} requests")
    for name in IN_PROCESS:
        print(f"  {name:<14}{statistics.median(cpu[name]):7.1f} us CPU per request")
    rows = [
        ("request ids + counters", added("metrics", "plain")),
        ("request log, log_level info (default)", added("defaults", "metrics")),
        ("request log, log_level debug (a line each)", added("log every request", "metrics")),
        ("defaults in all", added("defaults", "plain")),
    ]
    print(f"\nadded to a frozen lease served over HTTP ({per_request:.0f} us of server CPU with neither):")
    for label, us in rows:
        print(f"  {label:<44}{us:+6.1f} us = {us / per_request:+6.1%}")
    access = med("+uvicorn access", "cpu_us") - med("log every request", "cpu_us")
    print(f"  {'uvicorn access log on top (HTTP, noisier)':<44}{access:+6.1f} us = {access / per_request:+6.1%}")


if __name__ == "__main__":
    main()
