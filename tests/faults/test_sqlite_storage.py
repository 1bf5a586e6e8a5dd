"""The SQLite file stops taking writes under load (made read-only; its disk full): writes get retryable 503
problems, frozen steps are still served, nothing acknowledged is lost, and the server recovers by itself.

- ``read-only``: ``chattr +i`` on the database file and its WAL (root only). Not on the ``-shm`` file: SQLite maps
  it into memory and writes it on every transaction, and an immutable mapped file kills the process with SIGBUS
  (exit -7) at the next write, an abrupt stop rather than an error (seen while writing this test).
- ``disk full``: the database lives on a small ext4 image mounted through a loop device (root only), which a
  filler file then fills; removing the filler is the repair.

While the fault is on, a probe sends a write (a batch of metrics big enough to need new pages), a lease of
steps already served, and a read of the run. Where the machine cannot do either (no root, no loop devices),
the test is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.harness import (
    CONFIG,
    Probe,
    Server,
    assert_retryable_problem,
    assert_survived,
    drive,
    progress,
    wait_until,
)

FAULT_S = 2.0
pytestmark = pytest.mark.slow


@dataclass
class Storage:
    """Where the database lives, and how to break and repair it."""

    db_dir: Path
    break_: Callable[[], None]
    repair: Callable[[], None]


def _chattr(flag: str, paths: list[Path]) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextlib.contextmanager
def read_only(tmp: Path) -> Iterator[Storage]:
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root")
    db_dir = tmp / "db"
    db_dir.mkdir()
    frozen = [db_dir / "lrserve.db", db_dir / "lrserve.db-wal"]
    try:
        yield Storage(db_dir, lambda: _chattr("+i", frozen), lambda: _chattr("-i", frozen))
    finally:
        _chattr("-i", [p for p in frozen if p.exists()])  # else pytest could not delete tmp_path


@contextlib.contextmanager
def disk_full(tmp: Path) -> Iterator[Storage]:
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        pytest.skip("a loop-mounted file system needs root and mkfs.ext4")
    image, mount = tmp / "fs.img", tmp / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=False, capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a loop device here: {mounted.stderr.decode().strip()}")
    filler = mount / "filler"

    def fill() -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            for size in (1 << 16, 4096, 512):  # down to the last few blocks
                chunk = b"\0" * size
                while True:
                    try:
                        os.write(fd, chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    try:
        db_dir = mount / "db"
        db_dir.mkdir()
        yield Storage(db_dir, fill, lambda: filler.unlink())
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)


FAULTS = {"read-only": read_only, "disk-full": disk_full}


@pytest.mark.parametrize("kind", FAULTS)
def test_sqlite_storage_fault_under_load(tmp_path: Path, kind: str) -> None:
    with FAULTS[kind](tmp_path) as storage:
        server = Server(f"sqlite:///{storage.db_dir / 'lrserve.db'}", tmp_path).start()
        try:
            probe, phases = _drive(server, storage)
        finally:
            server.stop()
        assert server.starts == 1  # it recovered by itself

    result = phases.pop("result")
    assert_survived(result)
    # Writes were refused with retryable problems, not 500s and not dropped connections...
    # (A full disk can still take a write that fits in pages SQLite already holds: 200 is then a durable answer.)
    writes = probe.statuses("write")
    assert writes and 503 in writes and set(writes) <= {200, 503}, probe.answers[:5]
    for answer in probe.unavailable():
        assert_retryable_problem(answer)
    assert result.stats.retries[("lease", "503")] + result.stats.retries[("metric", "503")] > 0
    # ...while frozen steps and the run itself could still be read.
    assert set(probe.statuses("frozen lease")) == {200}
    assert set(probe.statuses("read run")) == {200}
    # After the repair: writes go through again (``writable``), and the load went on (``progress``): both are
    # waits that fail the schedule, naming the phase, if they do not happen.
    assert set(phases) == {"recovered in", "after"}, phases


def _drive(server: Any, storage: Storage) -> tuple[Probe, dict[str, Any]]:
    probe = Probe()
    phases: dict[str, Any] = {}

    def batch(n: int) -> dict[str, Any]:
        """New metrics (a repeated batch would be a duplicate, answered without a write)."""
        return {"metrics": [{"step": 100_000 + n * 100 + i, "name": "probe", "value": float(i)} for i in range(100)]}

    async def fault(result: Any) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await progress(result, "load under way before the fault")
            await asyncio.to_thread(storage.break_)
            try:
                deadline, n = asyncio.get_running_loop().time() + FAULT_S, 0
                while asyncio.get_running_loop().time() < deadline:  # by time: accepted writes cost more than 503s
                    n += 1
                    await probe.send("write", client, "POST", "/v1/runs/fault-0/metrics", json=batch(n))
                    lease = {"step": 0, "count": CONFIG.window}
                    await probe.send("frozen lease", client, "GET", "/v1/runs/fault-0/lr", params=lease)
                    await probe.send("read run", client, "GET", "/v1/runs/fault-0")
                    await asyncio.sleep(0.2)
            finally:
                await asyncio.to_thread(storage.repair)

            async def writable() -> bool:
                return await probe.send("after", client, "POST", "/v1/runs/fault-1/metrics", json=batch(0)) == 200

            phases["recovered in"] = await wait_until(writable, 90, "writes accepted again")
            phases["after"] = await progress(result, "load after the repair")

    phases["result"] = drive([server.url], fault)
    return probe, phases
