"""SIGKILL a PostgreSQL-backed replica under load: workers fail over, nothing acknowledged is lost or altered.

Two replicas share one database; the load (``bench/load.py``: ranks leasing and posting metrics, an admin
changing runs) goes to both in turn. Replica 1 is killed with SIGKILL mid-load, restarted (as an orchestrator
would), then replica 0 is killed and restarted. Requests that were in flight on a killed replica (a lease that
extended the horizon, a metric that committed, a change) are retried on the other one by the client: leases and
metrics are idempotent, and a change that committed before its answer was lost comes back as a revision conflict.
The load's audit then checks that every step has one value across all answers and that every acknowledged
write is in the history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import Server, answered, assert_survived, drive

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_sigkill_each_replica_under_load(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    url = pg_database()
    servers = [Server(url, tmp_path).start() for _ in range(2)]
    progress: dict[str, int] = {}

    async def fault(result: Any, _stop_at: float) -> None:
        for victim in (1, 0):
            await asyncio.sleep(1.2)
            await asyncio.to_thread(servers[victim].kill)
            progress[f"killed {victim}"] = answered(result)
            await asyncio.sleep(1.2)  # the survivor alone
            progress[f"alone {victim}"] = answered(result)
            await asyncio.to_thread(servers[victim].start)

    try:
        result = drive([s.url for s in servers], fault)
    finally:
        for s in servers:
            s.stop()
    assert_survived(result)
    assert [s.starts for s in servers] == [2, 2]
    # The kills hit the load: clients found a replica gone and went to the other one...
    assert result.stats.retries[("lease", "connect")] + result.stats.retries[("metric", "connect")] > 0
    # ...and the survivor kept serving while its peer was down.
    for victim in (1, 0):
        assert progress[f"alone {victim}"] > progress[f"killed {victim}"], progress
