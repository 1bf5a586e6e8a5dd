"""What the request log and the Prometheus counters cost the hottest call, the frozen-step lease.

    python bench/requestlog.py [--rounds 5] [--duration 2] [--connections 32] [--instructions 1500]

Variants of the app, all as ``lrserve serve`` sets them up (``logs.lean_records``, ``logs.log_config("info",
"json")``, uvicorn's access log off unless said, one worker), log lines to a file as a container's log driver
would take them:

- ``plain``: ``metrics: false, request_log: false`` (no RequestLog middleware at all);
- ``metrics``: request ids and the Prometheus counters, no log line;
- ``defaults``: counters, and the request log at ``log_level: info``, where a frozen lease answered from memory
  writes no line (its line is DEBUG);
- ``log every request``: the same at ``log_level: debug``: one JSON line per request, frozen leases included;
- ``+uvicorn access``: that plus uvicorn's own access log (what the issue measured at -24 %).

Two measurements of ``GET /v1/runs/{id}/lr?step=i`` of served steps:

1. HTTP: real servers under ``bench/http_throughput.py``'s load generator (a separate process, raw keep-alive
   HTTP/1.1), rounds interleaving the servers: requests/s, p50/p99 and each server's own CPU time per request
   (``/proc/PID/stat``). On a machine shared with other work these swing by more than the effects measured.
2. ``--instructions N``: instruction counts under valgrind (cachegrind, counting only, one hash seed), each
   process run once answering N frozen leases and once answering none; the difference over N is per lease, and
   start-up cancels. The app alone (the ASGI app called directly, no sockets) for each variant but the last, and
   one whole HTTP request (a server of ``plain``) as the denominator. Blind to the machine's load, repeatable to
   about 1 % of a lease; not counted: time in the kernel (the request log writes once per 50 ms) and cache misses.
   ``--instructions 3000`` takes about 10 minutes on two cores.

Measured here (2 cores shared with other work, ``--instructions 3000``): a whole frozen lease over HTTP 739k
instructions; request ids + counters +32k (+4.4 %); the request log at ``log_level: info`` +-7k (no line for
these leases); a line for every lease (``debug``) +45k (+6.1 %), where the same line through ``Logger.info``
costs +77k (+10.4 %) and a write system call. The HTTP CPU-time ratios of the same run swung by 10-20 %.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
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
PATH = "/v1/runs/bench/lr"
IN_PROCESS = ["plain", "metrics", "defaults", "log every request"]


def _bench_http() -> ModuleType:
    """bench/http_throughput.py, loaded by path (its load generator and the run spec)."""
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("lrserve_bench_http", os.path.join(here, "http_throughput.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logging(level: str, access_log: bool = False) -> dict[str, Any]:
    from lrserve.service.logs import lean_records, log_config

    lean_records()  # as lrserve serve does
    config = log_config(level, "json")
    if access_log:
        config["loggers"]["uvicorn.access"] = {"handlers": ["stderr"], "level": "INFO", "propagate": False}
    return config


# ---- instructions (valgrind) -------------------------------------------------------------------------------------


def _valgrind(command: list[str], out: Path, stderr: Path) -> subprocess.Popen[bytes]:
    """``command`` under cachegrind (instruction counts only), its report to ``out``; one hash seed for every run,
    as string hashing changes how much work dicts and sets do."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    prefix = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", f"--log-file={out}"]
    with stderr.open("wb") as err:
        return subprocess.Popen([*prefix, *command], stderr=err, env=env)


def _counted(out: Path) -> int:
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.read_text())
    if found is None:
        raise RuntimeError(f"no instruction count in {out.read_text()[-2000:]}")
    return int(found.group(1).replace(",", ""))


def http_instructions(variant: str, requests: int, tmp: Path, spec: dict[str, Any], frozen: int) -> int:
    """Instructions a server process executes from start to exit, having answered ``requests`` frozen leases one
    after the other (and the same set-up calls whatever ``requests`` is)."""
    tag = f"http-{variant.replace(' ', '-')}-{requests}"
    port, out = _bench_http().free_port(), tmp / f"{tag}.valgrind"
    store = f"sqlite:///{tmp / tag}.db"
    command = [sys.executable, __file__, "--serve", variant, "--port", str(port), "--store", store]
    proc = _valgrind(command, out, tmp / f"{tag}.log")
    try:
        deadline = time.monotonic() + 600
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=120) as http:
            while True:
                try:
                    http.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        log = (tmp / f"{tag}.log").read_text()[-3000:]
                        raise RuntimeError(f"{variant} did not start under valgrind:\n{log}") from None
                    time.sleep(0.5)
            http.put("/v1/runs/bench", json={"spec": spec}).raise_for_status()
            http.get(PATH, params={"step": 0, "count": frozen}).raise_for_status()
            for i in range(300):  # warm-up, in both runs
                http.get(PATH, params={"step": i}).raise_for_status()
            for i in range(requests):
                http.get(PATH, params={"step": 300 + i}).raise_for_status()
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return _counted(out)


def app_instructions(variant: str, requests: int, tmp: Path) -> int:
    """Instructions of a process that builds the app and hands it ``requests`` frozen leases directly (ASGI, no
    sockets, no HTTP parsing: what differs between the variants, without what does not)."""
    tag = f"app-{variant.replace(' ', '-')}-{requests}"
    command = [sys.executable, __file__, "--in-process", variant, "--requests", str(requests), "--store"]
    proc = _valgrind([*command, f"sqlite:///{tmp / tag}.db"], tmp / f"{tag}.valgrind", tmp / f"{tag}.log")
    if proc.wait(1800) != 0:
        raise RuntimeError(f"{variant} failed under valgrind:\n{(tmp / f'{tag}.log').read_text()[-3000:]}")
    return _counted(tmp / f"{tag}.valgrind")


def in_process_main(variant: str, requests: int, store: str) -> None:
    import asyncio
    import logging.config

    from lrserve.schemas.wire import RunCreate
    from lrserve.service.app import create_app
    from lrserve.service.settings import Settings

    bench = _bench_http()
    options = dict(VARIANTS[variant])
    level = options.pop("log_level", "info")
    logging.config.dictConfig(_logging(level))

    async def run() -> None:
        app = create_app(Settings(store=store, **options))
        async with app.router.lifespan_context(app):
            app.state.service.ensure_run("bench", RunCreate.model_validate({"spec": bench.SPEC}), None)
            app.state.service.lease("bench", 0, bench.FROZEN, None)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: Any) -> None:
                pass

            headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
            for i in range(300 + requests):  # 300 to warm up, in every run
                scope = {
                    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                    "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "root_path": "",
                    "query_string": b"step=%d" % i, "headers": headers, "client": ("127.0.0.1", 50000),
                    "server": ("127.0.0.1", 8000), "state": {},
                }  # fmt: skip
                await app(scope, receive, send)
            await asyncio.sleep(0.1)  # the request log's batch goes out

    asyncio.run(run())


def per_request(requests: int, tmp: Path, spec: dict[str, Any], frozen: int) -> dict[str, float]:
    """Instructions per frozen lease, ``(count with requests - count with none) / requests`` (start-up and
    shutdown cancel): the app alone for each in-process variant, and the whole HTTP request of ``plain``."""
    from concurrent.futures import ThreadPoolExecutor

    jobs: list[tuple[str, str, int]] = [("app", n, k) for n in IN_PROCESS for k in (0, requests)]
    jobs += [("http", "plain", k) for k in (0, requests)]

    def count(job: tuple[str, str, int]) -> int:
        kind, name, k = job
        return app_instructions(name, k, tmp) if kind == "app" else http_instructions(name, k, tmp, spec, frozen)

    with ThreadPoolExecutor(2) as pool:  # valgrind runs one thread: two at a time
        counts = dict(zip(jobs, pool.map(count, jobs), strict=True))
    per = {
        f"{kind} {name}": (counts[(kind, name, requests)] - counts[(kind, name, 0)]) / requests
        for kind, name, _ in jobs
    }
    return per


# ---- HTTP ------------------------------------------------------------------------------------------------------


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
    config["loggers"]["uvicorn"]["level"] = config["loggers"]["uvicorn.error"]["level"] = "INFO"  # only ours DEBUG
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # as lrserve serve: exit (and flush) after shutdown
    uvicorn.run(
        app, host=HOST, port=port, log_config=config, log_level="info", access_log=access_log, server_header=False
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
    parser.add_argument(
        "--instructions", type=int, default=0, metavar="N",
        help="also count instructions per request under valgrind (N requests per run; ~1500 takes ~5 minutes)",
    )  # fmt: skip
    parser.add_argument("--serve", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--in-process", choices=IN_PROCESS, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.store)
        return
    if args.in_process:
        in_process_main(args.in_process, args.requests, args.store)
        return
    bench = _bench_http()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        http_rounds, log_bytes = over_http(bench, args, tmp)
        counted = per_request(args.instructions, tmp, bench.SPEC, bench.FROZEN) if args.instructions else None
    report(http_rounds, log_bytes, counted, args)


def report(
    http: list[dict[str, dict[str, Any]]], log_bytes: dict[str, int], counted: dict[str, float] | None, args: Any
) -> None:
    def med(name: str, key: str, over: str | None = None) -> float:
        if over is None:
            return float(statistics.median(r[name][key] for r in http))
        return float(statistics.median(r[name][key] / r[over][key] for r in http))

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
    if counted is None:
        return
    whole = counted["http plain"]
    print(f"\ninstructions per frozen lease (valgrind, {args.instructions} leases per run, minus a run with none):")
    print(f"  a whole HTTP request to plain  {whole:>10,.0f}")
    for name in IN_PROCESS:
        print(f"  the app alone, {name:<17}{counted[f'app {name}']:>10,.0f}")
    rows = [
        ("request ids + counters", "metrics", "plain"),
        ("request log at log_level info (the default)", "defaults", "metrics"),
        ("request log at log_level debug (a line each)", "log every request", "metrics"),
        ("all of the defaults", "defaults", "plain"),
    ]
    print("what each adds to a frozen lease (share of the whole HTTP request):")
    for label, name, base in rows:
        added = counted[f"app {name}"] - counted[f"app {base}"]
        print(f"  {label:<46}{added:>+9,.0f}{added / whole:>+8.1%}")


if __name__ == "__main__":
    main()
