"""PostgreSQL goes away under load and comes back: clients get retryable 503 problems, never a 500, and the
replicas recover by themselves (readiness back to 200, writes succeed) with nothing acknowledged lost.

Two ways to take the database away, both under the load of ``bench/load.py`` on two replicas:

- ``database outage`` (always): the test database refuses new connections (``ALLOW_CONNECTIONS false``) and every
  connection to it is terminated, for two seconds: to the replicas this is what a restart of the server looks
  like (their connections die; reconnecting fails until it is back), but it touches no other database.
- ``pg_ctlcluster restart`` (the real thing): the whole PostgreSQL server restarts. Every database on it goes
  down for a moment, so it runs only where nothing else uses that server: under ``CI=true`` (the suite runs
  alone) or with ``LRSERVE_TEST_PG_RESTART=1``; elsewhere (a development machine whose PostgreSQL other sessions
  share) it is skipped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.faults.harness import Probe, Server, assert_retryable_problem, assert_survived, drive, progress, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
OUTAGE_S = 2.0


@dataclass
class Admin:
    url: str  # the maintenance database
    database: str  # the one under test
    terminate: Callable[[str], int]


def _restart_allowed() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("LRSERVE_TEST_PG_RESTART") == "1"


def _pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], check=False).returncode == 0


def _set_connections(admin_url: str, database: str, allowed: bool) -> None:
    import psycopg

    u = make_url(admin_url)
    dsn = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    with psycopg.connect(**{k: v for k, v in dsn.items() if v is not None}, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')


async def _database_outage(admin: Admin, during: Callable[[], Any]) -> None:
    await asyncio.to_thread(_set_connections, admin.url, admin.database, False)
    try:
        await asyncio.to_thread(admin.terminate, admin.database)
        await during()
    finally:
        await asyncio.to_thread(_set_connections, admin.url, admin.database, True)


async def _server_restart(_admin: Admin, during: Callable[[], Any]) -> None:
    version = os.listdir("/etc/postgresql")[0]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]
    restart = asyncio.create_task(asyncio.to_thread(subprocess.run, command, check=True, timeout=60))
    try:
        await during()
    finally:
        await restart
        for _ in range(600):  # bounded: at most 30 s
            if _pg_ready():
                break
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(_database_outage, id="database-outage"),
        pytest.param(
            _server_restart,
            id="pg_ctlcluster-restart",
            marks=pytest.mark.skipif(
                not _restart_allowed(), reason="restarts the shared PostgreSQL: CI=true or LRSERVE_TEST_PG_RESTART=1"
            ),
        ),
    ],
)
def test_postgres_outage_under_load(
    tmp_path: Path,
    pg_database: Callable[[], str],
    pg_admin_url: str,
    pg_terminate_connections: Callable[[str], int],
    outage: Any,
) -> None:
    url = pg_database()
    database = make_url(url).database
    assert database is not None
    admin = Admin(pg_admin_url, database, pg_terminate_connections)
    servers = [Server(url, tmp_path).start() for _ in range(2)]
    probe = Probe()
    recovery: dict[str, float] = {}

    async def fault(result: Any) -> None:
        clients = [httpx.AsyncClient(base_url=s.url, timeout=10) for s in servers]
        try:
            await progress(result, "load under way before the outage")

            async def while_down() -> None:
                # What a client sees meanwhile, without retries: a write, a read from the store, readiness
                # (20 rounds of probes: they make the outage's length, they wait for nothing).
                for i in range(int(OUTAGE_S / 0.1)):
                    client = clients[i % 2]
                    metric = {"step": 10_000 + i, "name": "probe", "value": 1.0}
                    await probe.send("write", client, "POST", "/v1/runs/fault-0/metrics", json=metric)
                    await probe.send("events", client, "GET", "/v1/runs/fault-0/events", params={"limit": 1})
                    await probe.send("readyz", client, "GET", "/readyz")
                    await asyncio.sleep(0.1)

            await outage(admin, while_down)

            async def ready() -> bool:
                statuses = [await probe.send("after", c, "GET", "/readyz") for c in clients]
                return statuses == [200, 200]

            recovery["readyz"] = await wait_until(ready, 90, "both replicas ready again")
            # The load goes on through each replica (a wait that fails, naming the replica, if it does not).
            for index in (0, 1):
                recovery[f"replica {index} after"] = await progress(
                    result, f"replica {index} after the outage", server=index
                )
        finally:
            for client in clients:
                await client.aclose()

    try:
        result = drive([s.url for s in servers], fault)
    finally:
        for s in servers:
            s.stop()
    assert_survived(result)
    # During the outage, clients got 503 problems (retryable: Retry-After), never a 500 or a dropped connection.
    unavailable = probe.unavailable()
    assert unavailable, probe.answers[:10]
    for answer in unavailable:
        assert_retryable_problem(answer)
    assert all(status in (200, 503) for label, status, _, _ in probe.answers), probe.answers
    assert 503 in probe.statuses("write") and 503 in probe.statuses("readyz")
    assert result.stats.retries[("lease", "503")] + result.stats.retries[("metric", "503")] > 0
    # ...and the replicas recovered by themselves: ready again, and the load went on through each of them.
    assert set(recovery) == {"readyz", "replica 0 after", "replica 1 after"}, recovery
    for s in servers:
        assert s.starts == 1  # nobody restarted them
