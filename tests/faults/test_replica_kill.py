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

from tests.faults.harness import Server, assert_survived, drive, progress

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_sigkill_each_replica_under_load(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    url = pg_database()
    servers = [Server(url, tmp_path).start() for _ in range(2)]
    seen: dict[str, int] = {}

    async def fault(result: Any) -> None:
        # Each phase waits for progress, not for time: a restart may take seconds on a loaded machine.
        for victim in (1, 0):
            survivor = 1 - victim
            # Both replicas serving (for the second round: the first victim is back and answering).
            await progress(result, f"replica {victim} serving before its kill", server=victim)
            await asyncio.to_thread(servers[victim].kill)
            seen[f"killed {victim}"] = result.answers()
            # The survivor alone keeps the load going (a wait that fails, naming the phase, if it does not).
            await progress(result, f"replica {survivor} alone after replica {victim} was killed", server=survivor)
            seen[f"alone {victim}"] = result.answers()
            await asyncio.to_thread(servers[victim].start)  # returns once /readyz answers 200
        await progress(result, "replica 0 serving after its restart", server=0)

    try:
        result = drive([s.url for s in servers], fault)
    finally:
        for s in servers:
            s.stop()
    print(seen)
    assert_survived(result)
    assert [s.starts for s in servers] == [2, 2]
    assert set(seen) == {"killed 1", "alone 1", "killed 0", "alone 0"}, seen  # the whole schedule ran
    # The kills hit the load: clients found a replica gone and went to the other one.
    assert result.stats.retries[("lease", "connect")] + result.stats.retries[("metric", "connect")] > 0
