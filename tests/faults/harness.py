"""What the fault tests share: ``bench/load.py``'s load, probes sent around it, and the verdict.

A fault schedule waits for conditions, never for fixed times: the load goes on until the schedule returns, and
each phase waits for progress (``progress``: N more answers, from one replica or any), so a slow machine (a server
that takes seconds to start, a loaded CI host) makes the test slower, not wrong. Each wait fails with a message
naming the phase after ``PHASE_S``; the whole load ends with an error after ``CONFIG.deadline``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.bench_load import bench_load

load = bench_load()
Server = load.Server
#: 2 runs x 4 workers, for as long as the fault schedule runs (every worker leasing, the admin changing runs).
CONFIG = load.Config(
    runs=2,
    workers=4,
    window=10,
    duration=0.0,
    admin_interval=0.2,
    retry_for=30.0,
    min_leases_per_worker=1,
    min_changes=2,
    deadline=300.0,
)
#: the longest one phase of a schedule may wait for its condition
PHASE_S = 90.0
#: answers that show the load is going on (a few rounds of every worker)
PROGRESS = 40
PROBLEM_JSON = "application/problem+json"


@dataclass
class Probe:
    """Raw answers (no retries) collected while a fault is on, to show what clients see."""

    answers: list[tuple[str, int, str, dict[str, str]]] = field(default_factory=list)

    async def send(self, label: str, client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> int | None:
        try:
            response = await client.request(method, path, **kw)
        except httpx.TransportError as e:
            self.answers.append((label, -1, repr(e), {}))
            return None
        self.answers.append((label, response.status_code, response.text, dict(response.headers)))
        return response.status_code

    def statuses(self, label: str) -> list[int]:
        return [status for name, status, _, _ in self.answers if name == label]

    def unavailable(self) -> list[tuple[str, int, str, dict[str, str]]]:
        return [a for a in self.answers if a[1] == 503]


def drive(urls: list[str], fault: Callable[[Any, float], Awaitable[None]]) -> Any:
    return asyncio.run(load.drive(urls, CONFIG, fault, run_prefix="fault"))


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Seconds until ``check()`` holds (polled every 50 ms); AssertionError after ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def answered(result: Any, kind: str = "lease") -> int:
    return len(result.stats.latency[kind])


async def progress(result: Any, what: str, n: int = PROGRESS, server: int | None = None) -> int:
    """Wait until the load has had ``n`` more answers (from replica ``server``, or from any); the count then."""
    target = result.answers(server) + n

    async def reached() -> bool:
        return bool(result.answers(server) >= target)

    who = "any replica" if server is None else f"replica {server}"
    await wait_until(reached, PHASE_S, f"{what}: {n} more answers from {who}")
    return int(result.answers(server))


def assert_survived(result: Any) -> None:
    """No request failed for good, nothing was a 5xx other than the retryable 503, and the audit passes."""
    print("\n" + load.summary("fault", result))
    assert result.stats.errors == [], result.stats.errors[:5]
    assert result.audit == [], result.audit[:5]
    others = {key: n for key, n in result.stats.statuses.items() if key[1] >= 500 and key[1] != 503}
    assert not others, others
    assert result.audited["metrics"] > 0
    assert result.audited["changes"] > 0


def assert_retryable_problem(answer: tuple[str, int, str, dict[str, str]]) -> None:
    _, status, text, headers = answer
    assert status == 503, answer
    assert headers["content-type"] == PROBLEM_JSON, answer
    body = json.loads(text)
    assert (body["type"], body["status"]) == ("unavailable", 503), body
    assert body["detail"].startswith("the database is unavailable"), body
    assert headers.get("retry-after") == "1", headers
