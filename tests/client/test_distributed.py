"""RemoteScheduler under torch.distributed: real processes on gloo, an operator changing the run mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch.distributed

from lrserve.client import LRClient
from tests.client.conftest import ThreadServer
from tests.e2e.server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def run_ranks(server: ThreadServer, tmp_path: Path, mode: str, world: int) -> tuple[str, list[dict]]:
    run_id = f"ddp-{mode}-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("TORCHELASTIC_RUN_ID", None)
    procs = []
    for rank in range(world):
        out = tmp_path / f"rank{rank}.json"
        args = [str(rank), str(world), str(port), server.url, run_id, mode, str(out)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.client.dist_worker", *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    logs = []
    for p in procs:
        stdout, _ = p.communicate(timeout=120)
        logs.append(stdout.decode(errors="replace"))
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log
    return run_id, [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.mark.parametrize(("mode", "world"), [("auto", 2), ("every_rank", 2)])
def test_ranks_apply_identical_values_through_a_mid_run_change(
    server: ThreadServer, tmp_path: Path, mode: str, world: int
) -> None:
    run_id, results = run_ranks(server, tmp_path, mode, world)
    applied = [r["applied"] for r in results]
    assert all(a == applied[0] for a in applied[1:])  # identical LRs on every rank at every step
    assert len({r["params"] for r in results}) == 1  # so the parameters stay bit-identical
    with LRClient(server.url) as client:
        run = client.run(run_id)
        curve = run.curve(0, len(applied[0]))
        for g in range(2):
            assert [a[g] for a in applied[0]] == list(curve.groups[g].lr)
        (change,) = [m for m in curve.markers if m.kind == "change"]
        assert 40 < change.step < len(applied[0])  # the change took effect mid-run
    if mode == "auto":
        assert all(r["requests"] == [] for r in results[1:])  # only rank 0 talks to the server
        assert results[0]["requests"]
    else:
        assert all(r["requests"] for r in results)
