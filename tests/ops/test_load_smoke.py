"""``bench/load.py`` briefly, on SQLite and on two PostgreSQL replicas: no errors, and its audit passes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.bench_load import bench_load

load = bench_load()
#: 3 s of load, and on until every worker has leased a window and the admin applied 2 changes (a loaded machine
#: may need longer; ``deadline`` bounds it, with an error naming what was missing).
CONFIG = load.Config(
    runs=2, workers=4, window=10, duration=3.0, admin_interval=0.2, min_leases_per_worker=1, min_changes=2, deadline=240
)


def check(result: Any) -> None:
    print("\n" + load.summary("smoke", result))
    assert result.stats.errors == []
    assert result.audit == []
    leases = result.stats.latency["lease"]
    assert len(leases) >= CONFIG.runs * CONFIG.workers  # every worker got at least one window
    assert min(result.leases.values()) >= 1 and len(result.leases) == CONFIG.runs * CONFIG.workers, result.leases
    assert result.audited["steps"] >= CONFIG.window * CONFIG.runs
    assert result.audited["metrics"] == len(result.stats.latency["metric"])
    assert result.audited["changes"] >= 2  # the admin previewed and applied changes meanwhile
    assert len(result.stats.latency["dry_run"]) == len(result.stats.latency["change"])
    assert not any(status >= 500 for _, status in result.stats.statuses)


def test_load_on_sqlite(tmp_path: Path) -> None:
    check(load.run_sqlite(CONFIG, tmp_path))


@pytest.mark.postgres
def test_load_on_two_postgres_replicas(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    result = load.run_postgres(CONFIG, tmp_path, url=pg_database())
    check(result)
    assert len(result.urls) == 2
