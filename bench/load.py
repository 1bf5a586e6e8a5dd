"""Load: K runs x M training workers and an operator, against real servers, then an audit of what they were told.

    python bench/load.py [--runs 4] [--workers 8] [--window 10] [--duration 15] [--backend sqlite|postgres|both]

Each run is one training job: its M workers (the ranks) lease windows of W steps (``GET .../lr``) one after the
other and post a metric for each (rank 0 the plateau's ``loss``, the others a metric of their own), as fast as the
servers answer. An admin changes the runs in turn, each change previewed first (``dry_run``) and then applied
with ``expected_revision`` (scales and schedule replacements; never a ``from_step``, so never a served step).
All of it runs in one asyncio loop on ``httpx.AsyncClient`` s, for T seconds (and, when a fault schedule runs
alongside (tests/faults), until that schedule has finished; and until every worker leased and the admin changed
as often as ``Config`` asks; within ``Config.deadline``, else it ends with an error saying what was missing), against:

- ``sqlite``: one ``lrserve serve`` process on a fresh SQLite file;
- ``postgres``: two ``lrserve serve`` processes on one fresh PostgreSQL database; the load balancer is the client,
  sending each request to the replica after the one it used last.

A request that cannot connect is retried on the next replica, and a 503 (the store unavailable) is retried after a
pause, for up to ``retry_for`` seconds: so a replica killed or a database restarted under load (tests/faults)
costs latency, not errors. Any other answer that is not 2xx is an error (there should be none).

Printed per backend: requests/s and p50/p99 latency by kind, errors, retries, and the audit:

1. every (run, step) was served with exactly one value (per param group) across all responses of all replicas;
2. every acknowledged metric is in the run's events, and every acknowledged change with its revision and step;
3. the run's final curve (``GET .../curve``) equals the served values at every served step.

The servers, their database and the load generator share this machine's cores; the figures are what one
machine sustains end to end, not a server's capacity. Traffic goes to 127.0.0.1 only and stops after T seconds
(or the conditions above).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

HOST = "127.0.0.1"
PG_ADMIN_URL = os.environ.get("LRSERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "CosineAnnealingLR", "T_max": 100_000, "eta_min": 1e-5},
    "plateau": {"metric": "loss", "mode": "min", "factor": 0.5, "patience": 3},
}
#: The admin's changes, in turn (each previewed, then applied from the first unserved step).
CHANGES: list[dict[str, Any]] = [
    {"op": "scale", "factor": 0.9},
    {"op": "replace", "schedule": {"type": "StepLR", "step_size": 500, "gamma": 0.8}, "origin": "restart"},
    {"op": "scale", "factor": 1.1},
    {"op": "replace", "schedule": {"type": "CosineAnnealingLR", "T_max": 50_000}, "origin": "absolute"},
]


def loss(step: int) -> float:
    """The plateau's metric at ``step``: flat for 200 steps, then lower; a retry posts the same value."""
    return round(1.0 / (1 + step // 200), 6)


# ---- servers ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def lrserve_command() -> list[str]:
    script = Path(sys.executable).with_name("lrserve")
    if script.exists():
        return [str(script)]
    found = shutil.which("lrserve")
    return [found] if found else [sys.executable, "-m", "lrserve.cli.main"]


class Server:
    """One ``lrserve serve`` process on 127.0.0.1 (``start``, ``kill`` -9, ``stop`` by SIGTERM, ``start`` again)."""

    def __init__(self, store: str, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.store = store
        self.port = free_port()
        self.log_dir = log_dir
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self.starts += 1
        self._log = (self.log_dir / f"server-{self.port}-{self.starts}.log").open("wb")
        command = [*lrserve_command(), "serve", "--host", HOST, "--port", str(self.port), "--store", self.store]
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lrserve exited with {self.proc.returncode}; log in {self.log_dir}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"lrserve not ready after {timeout} s; log in {self.log_dir}")

    def _wait(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(60)
        if self._log is not None:
            self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self._wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self._wait()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"server-{self.port}-*.log")))


def _libpq(url: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v is not None)


@contextmanager
def fresh_pg_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL), dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"lrserve_load_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- the client side ----------------------------------------------------------------------------------------------


@dataclass
class Config:
    runs: int = 4
    workers: int = 8
    window: int = 10
    duration: float = 15.0
    admin_interval: float = 0.25
    #: how long one request is retried through connection failures and 503s before it counts as an error
    retry_for: float = 30.0
    timeout: float = 10.0
    #: the load goes on past T until each worker has had this many windows and the admin applied this many changes
    min_leases_per_worker: int = 0
    min_changes: int = 0
    #: seconds the whole load (fault schedule and minimums included) may take before it ends with an error
    deadline: float = 300.0


@dataclass
class Stats:
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    #: (kind, status) of every answer received, retried ones included
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: (kind, why): "connect" (transport error: another replica was tried) or "503"
    retries: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    #: final answers (not 503) by replica index: progress of each replica, e.g. one restarted by a fault test
    by_server: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0
    #: CPU seconds this process (the load generator) used meanwhile: near ``elapsed``, it was the bottleneck
    client_cpu: float = 0.0


@dataclass
class Ledger:
    """What the servers acknowledged."""

    served: dict[tuple[str, int], set[tuple[float, ...]]] = field(default_factory=lambda: defaultdict(set))
    metrics: set[tuple[str, int, str, float]] = field(default_factory=set)
    #: run -> {revision: from_step} of changes answered 200
    changes: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    #: run -> revisions a retried change found already recorded (its first attempt committed; the answer was lost)
    changes_unanswered: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))

    def record_window(self, run_id: str, window: dict[str, Any]) -> None:
        groups = window["groups"]
        for i in range(window["count"]):
            self.served[(run_id, window["start"] + i)].add(tuple(g["lr"][i] for g in groups))


class Balancer:
    """The load balancer, client-side: each request to the next replica; connection failures fail over to the
    others, 503s are retried after a pause; both for up to ``retry_for`` seconds."""

    def __init__(self, urls: list[str], stats: Stats, config: Config) -> None:
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self.clients = [httpx.AsyncClient(base_url=u, timeout=config.timeout, limits=limits) for u in urls]
        self.stats = stats
        self.retry_for = config.retry_for
        self._next = 0

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def request(self, kind: str, method: str, path: str, **kw: Any) -> tuple[httpx.Response, int]:
        """The final answer and how many attempts it took."""
        started = time.monotonic()
        deadline = started + self.retry_for
        attempts = 0
        while True:
            attempts += 1
            index = self._next % len(self.clients)
            self._next += 1
            try:
                response = await self.clients[index].request(method, path, **kw)
            except httpx.TransportError as e:
                self.stats.retries[(kind, "connect")] += 1
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} {path}: no replica answered for {self.retry_for} s: {e!r}") from e
                if attempts % len(self.clients) == 0:
                    await asyncio.sleep(0.05)  # every replica failed once: wait before the next round
                continue
            self.stats.statuses[(kind, response.status_code)] += 1
            if response.status_code == 503 and time.monotonic() < deadline:
                self.stats.retries[(kind, "503")] += 1
                await asyncio.sleep(0.1)
                continue
            self.stats.latency[kind].append(time.monotonic() - started)
            self.stats.by_server[index] += 1
            return response, attempts


@dataclass
class Load:
    """One load run: its configuration, the servers' URLs, and what it recorded."""

    config: Config
    urls: list[str]
    run_ids: list[str]
    stats: Stats = field(default_factory=Stats)
    ledger: Ledger = field(default_factory=Ledger)
    audit: list[str] = field(default_factory=list)
    audited: Counter[str] = field(default_factory=Counter)
    #: windows leased by each (run, rank)
    leases: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: set once the load should end (``drive``): workers and the admin finish their request in hand and return
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, message: str) -> None:
        if len(self.stats.errors) < 1000:
            self.stats.errors.append(message)

    def answers(self, server: int | None = None) -> int:
        """Final answers so far, of every kind: all of them, or those of replica ``server`` (its index in urls)."""
        if server is None:
            return sum(self.stats.by_server.values())
        return self.stats.by_server[server]

    def missing(self) -> list[str]:
        """The minimums of ``config`` not reached yet, in words."""
        out = []
        short = [k for k in self._workers() if self.leases[k] < self.config.min_leases_per_worker]
        if short:
            out.append(f"{len(short)} workers with fewer than {self.config.min_leases_per_worker} windows")
        changes = sum(len(c) for c in self.ledger.changes.values())
        if changes < self.config.min_changes:
            out.append(f"{changes} of {self.config.min_changes} changes applied")
        return out

    def _workers(self) -> list[tuple[str, int]]:
        return [(run_id, rank) for run_id in self.run_ids for rank in range(self.config.workers)]


def _unexpected(kind: str, response: httpx.Response) -> str:
    return f"{kind} {response.request.method} {response.request.url.path}: {response.status_code} {response.text[:300]}"


async def _worker(load: Load, lb: Balancer, run_id: str, rank: int) -> None:
    window, step = load.config.window, 0
    name = "loss" if rank == 0 else f"rank{rank}_loss"
    while not load.stop.is_set():
        response, _ = await lb.request("lease", "GET", f"/v1/runs/{run_id}/lr", params={"step": step, "count": window})
        if response.status_code != 200:
            load.error(_unexpected("lease", response))
            step += window
            continue
        load.ledger.record_window(run_id, response.json())
        load.leases[(run_id, rank)] += 1
        last = step + window - 1
        value = loss(last) if rank == 0 else float(rank)
        metric = {"step": last, "name": name, "value": value}
        response, _ = await lb.request("metric", "POST", f"/v1/runs/{run_id}/metrics", json=metric)
        if response.status_code == 200:
            load.ledger.metrics.add((run_id, last, name, value))
        else:
            load.error(_unexpected("metric", response))
        step += window


async def _admin(load: Load, lb: Balancer) -> None:
    i = 0
    while not load.stop.is_set():
        run_id = load.run_ids[i % len(load.run_ids)]
        change = {**CHANGES[i % len(CHANGES)], "reason": f"load {i}"}
        path = f"/v1/runs/{run_id}/changes"
        preview, _ = await lb.request("dry_run", "POST", path, json={**change, "dry_run": True, "preview_steps": 20})
        if preview.status_code != 200 or preview.json()["applied"]:
            load.error(_unexpected("dry_run", preview))
        else:
            revision = preview.json()["revision"]
            answer, attempts = await lb.request("change", "POST", path, json={**change, "expected_revision": revision})
            body = answer.json()
            if answer.status_code == 200:
                load.ledger.changes[run_id][body["revision"]] = body["from_step"]
            elif (
                attempts > 1
                and answer.status_code == 409
                and body.get("type") == "revision-conflict"
                and body.get("revision") == revision + 1
            ):
                load.ledger.changes_unanswered[run_id].add(revision + 1)  # the lost answer's change is recorded
            else:
                load.error(_unexpected("change", answer))
        i += 1
        with contextlib.suppress(TimeoutError):  # the pause, cut short when the load ends
            await asyncio.wait_for(load.stop.wait(), load.config.admin_interval)


#: A fault schedule: runs alongside the load, which goes on until it returns. It should wait for conditions
#: (``Load.answers``: progress before a fault, while it is on, after the repair), not for fixed times.
FaultHook = Callable[["Load"], Awaitable[None]]


async def _end(load: Load, started: float, fault: asyncio.Task[None] | None) -> None:
    """Set ``load.stop`` once T has passed, the fault schedule has returned and the minimums are met; at the
    deadline, record an error saying which of them was not (and cancel the fault schedule)."""
    config = load.config
    while True:
        now = time.monotonic()
        waiting = [] if now >= started + config.duration else [f"{config.duration} s"]
        if fault is not None and not fault.done():
            waiting.append("the fault schedule to finish")
        waiting += load.missing()
        if not waiting:
            break
        if now > started + config.deadline:
            load.error(f"the load did not end within its deadline of {config.deadline} s; waiting for: {waiting}")
            if fault is not None:
                fault.cancel()
            break
        await asyncio.sleep(0.05)
    load.stop.set()


async def drive(urls: list[str], config: Config, fault: FaultHook | None = None, run_prefix: str = "load") -> Load:
    """Create the runs, run the workers, the admin and ``fault(load)`` (if any) until T has passed, the fault
    schedule has returned and ``config``'s minimums are met (or its deadline: an error), then audit."""
    run_ids = [f"{run_prefix}-{k}" for k in range(config.runs)]
    load = Load(config=config, urls=urls, run_ids=run_ids)
    lb = Balancer(urls, load.stats, config)
    try:
        for run_id in run_ids:
            response, _ = await lb.request("create", "PUT", f"/v1/runs/{run_id}", json={"spec": SPEC})
            if response.status_code not in (200, 201):
                raise RuntimeError(_unexpected("create", response))
        started, cpu = time.monotonic(), time.process_time()
        tasks: list[Awaitable[Any]] = [_worker(load, lb, run_id, rank) for run_id, rank in load._workers()]
        tasks.append(_admin(load, lb))
        schedule = asyncio.ensure_future(fault(load)) if fault is not None else None
        if schedule is not None:
            tasks.append(schedule)
        tasks.append(_end(load, started, schedule))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        load.stats.elapsed = time.monotonic() - started
        load.stats.client_cpu = time.process_time() - cpu
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                continue  # the fault schedule, cancelled at the deadline (already recorded as an error)
            if isinstance(outcome, BaseException):
                load.error(f"task failed: {outcome!r}")
                if not isinstance(outcome, RuntimeError | AssertionError):
                    raise outcome
        await _audit(load, lb)
    finally:
        await lb.aclose()
    return load


async def _events(lb: Balancer, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        response, _ = await lb.request(
            "audit", "GET", f"/v1/runs/{run_id}/events", params={"after": after, "limit": 1000}
        )
        response.raise_for_status()
        page = response.json()
        events.extend(page["events"])
        after = page["next_after"]
    return events


async def _audit(load: Load, lb: Balancer) -> None:
    problems = load.audit
    ledger = load.ledger
    for (run_id, step), values in ledger.served.items():
        if len(values) != 1:
            problems.append(f"{run_id} step {step} was served with {len(values)} values: {sorted(values)[:3]}")
    for run_id in load.run_ids:
        events = await _events(lb, run_id)
        recorded = {
            (run_id, e["payload"]["step"], e["payload"]["name"], e["payload"]["value"])
            for e in events
            if e["kind"] == "metric"
        }
        acked = {m for m in ledger.metrics if m[0] == run_id}
        for missing in sorted(acked - recorded)[:5]:
            problems.append(f"acknowledged metric missing from the events: {missing}")
        changes = {e["payload"]["revision"]: e["payload"]["from_step"] for e in events if e["kind"] == "change"}
        for revision, from_step in ledger.changes[run_id].items():
            if changes.get(revision) != from_step:
                problems.append(f"{run_id}: acknowledged change r{revision} from {from_step}: {changes.get(revision)}")
        for revision in ledger.changes_unanswered[run_id]:
            if revision not in changes:
                problems.append(f"{run_id}: change r{revision} reported as recorded, not in the events")
        load.audited["metrics"] += len(acked)
        load.audited["changes"] += len(ledger.changes[run_id]) + len(ledger.changes_unanswered[run_id])
        load.audited["reductions"] += sum(1 for e in events if e["kind"] == "reduction")

        served = sorted(step for (rid, step) in ledger.served if rid == run_id)
        if not served:
            problems.append(f"{run_id}: nothing was served")
            continue
        stop = served[-1] + 1
        response, _ = await lb.request("audit", "GET", f"/v1/runs/{run_id}/curve", params={"start": 0, "stop": stop})
        response.raise_for_status()
        curve = response.json()
        values = {step: tuple(g["lr"][i] for g in curve["groups"]) for i, step in enumerate(curve["steps"])}
        changed = [
            s for s in served if len(ledger.served[(run_id, s)]) == 1 and {values.get(s)} != ledger.served[(run_id, s)]
        ]
        if changed:
            step = changed[0]
            problems.append(
                f"{run_id}: {len(changed)} steps differ from what was served, the first {step}: served "
                f"{ledger.served[(run_id, step)]}, the curve now says {values.get(step)}"
            )
        load.audited["steps"] += len(served)


# ---- the two set-ups and the report -----------------------------------------------------------------------------


def run_sqlite(config: Config, log_dir: Path, fault: FaultHook | None = None) -> Load:
    server = Server(f"sqlite:///{log_dir / 'lrserve.db'}", log_dir).start()
    try:
        return asyncio.run(drive([server.url], config, fault))
    finally:
        server.stop()


def run_postgres(
    config: Config, log_dir: Path, fault: FaultHook | None = None, replicas: int = 2, url: str | None = None
) -> Load:
    """``replicas`` servers on ``url`` (an empty database), or on a fresh database created and dropped here."""
    if url is None:
        with fresh_pg_database() as fresh:
            return run_postgres(config, log_dir, fault, replicas, fresh)
    servers = [Server(url, log_dir).start() for _ in range(replicas)]
    try:
        return asyncio.run(drive([s.url for s in servers], config, fault))
    finally:
        for s in servers:
            s.stop()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(label: str, load: Load) -> str:
    stats = load.stats
    lines = [
        f"== {label}: {load.config.runs} runs x {load.config.workers} workers, window {load.config.window}, "
        f"{stats.elapsed:.1f} s, {len(load.urls)} server(s)",
        f"   {'kind':<8} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    total = 0
    for kind in ("lease", "metric", "dry_run", "change"):
        values = stats.latency.get(kind, [])
        total += len(values)
        rate = len(values) / stats.elapsed if stats.elapsed else 0.0
        lines.append(f"   {kind:<8} {len(values):>9} {rate:>8.1f} {_ms(values, 0.5):>8.1f} {_ms(values, 0.99):>8.1f}")
    lines.append(f"   {'all':<8} {total:>9} {total / stats.elapsed if stats.elapsed else 0:>8.1f}")
    share = stats.client_cpu / stats.elapsed if stats.elapsed else 0.0
    lines.append(f"   load generator: {share:.0%} of a core ({os.cpu_count()} cores, shared with the servers)")
    retries = dict(stats.retries) or "none"
    lines.append(f"   errors: {len(stats.errors)}; retries: {retries}")
    for error in stats.errors[:5]:
        lines.append(f"     {error}")
    verdict = "PASS" if not load.audit else f"FAIL ({len(load.audit)})"
    lines.append(
        f"   audit {verdict}: {load.audited['steps']} served steps checked (one value each, on the final curve), "
        f"{load.audited['metrics']} acknowledged metrics and {load.audited['changes']} changes looked up in the events "
        f"({load.audited['reductions']} plateau reductions recorded)"
    )
    lines.extend(f"     {problem}" for problem in load.audit[:10])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="K: runs (training jobs)")
    parser.add_argument("--workers", type=int, default=8, help="M: workers (ranks) per run")
    parser.add_argument("--window", type=int, default=10, help="W: steps per lease")
    parser.add_argument("--duration", type=float, default=15.0, help="T: seconds of load per backend")
    parser.add_argument("--admin-interval", type=float, default=0.25, help="seconds between the admin's changes")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line per backend")
    args = parser.parse_args()
    config = Config(args.runs, args.workers, args.window, args.duration, args.admin_interval)
    failed = False
    with tempfile.TemporaryDirectory(prefix="lrserve-load-") as tmp:
        for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
            log_dir = Path(tmp) / backend
            log_dir.mkdir()
            load = run_sqlite(config, log_dir) if backend == "sqlite" else run_postgres(config, log_dir)
            print(summary(backend, load), flush=True)
            if args.json:
                print(json.dumps(figures(backend, load)))
            failed |= bool(load.audit or load.stats.errors)
    sys.exit(1 if failed else 0)


def figures(label: str, load: Load) -> dict[str, Any]:
    stats = load.stats
    return {
        "backend": label,
        "elapsed_s": round(stats.elapsed, 2),
        "kinds": {
            kind: {
                "requests": len(v),
                "rps": round(len(v) / stats.elapsed, 1),
                "p50_ms": round(_ms(v, 0.5), 2),
                "p99_ms": round(_ms(v, 0.99), 2),
            }
            for kind, v in stats.latency.items()
        },
        "client_cpu_share": round(stats.client_cpu / stats.elapsed, 2) if stats.elapsed else None,
        "errors": len(stats.errors),
        "retries": {f"{k}:{why}": n for (k, why), n in stats.retries.items()},
        "audit_problems": len(load.audit),
        "audited": dict(load.audited),
    }


if __name__ == "__main__":
    main()
