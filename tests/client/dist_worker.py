"""One rank of the distributed client test: ``python -m tests.client.dist_worker RANK WORLD PORT URL RUN MODE OUT``.

DDP on gloo (CPU). Rank 0 also plays the operator: at step 40 it changes the run with its own admin client.
Each rank writes the LRs it applied at every step, a digest of its parameters and its HTTP request count."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from lrserve.client import LRClient, RemoteScheduler

SPEC = {
    "param_groups": [{"name": "body", "lr": 0.02}, {"name": "head", "lr": 0.2}],
    "schedule": {"type": "OneCycleLR", "max_lr": [0.1, 1.0], "total_steps": 300},
}
STEPS = 120


def main() -> None:
    rank, world, port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    url, run_id, mode, out = sys.argv[4], sys.argv[5], sys.argv[6], Path(sys.argv[7])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD([{"params": model[0].parameters()}, {"params": model[2].parameters()}], lr=0.1, momentum=0.9)
    requests: list[str] = []
    client = LRClient(url)
    client._http.event_hooks["request"].append(lambda r: requests.append(r.url.path))
    run = client.run(run_id, spec=SPEC, lazy=True)  # lazy: only the ranks that talk to the server call it
    sched = RemoteScheduler(opt, run, lease_steps=16, lease_seconds=None, distributed=mode)  # type: ignore[arg-type]
    torch.manual_seed(100 + rank)  # each rank its own data; DDP averages the gradients
    applied = []
    for step in range(STEPS):
        applied.append([g["lr"] for g in opt.param_groups])
        x = torch.randn(16, 8)
        loss = ((ddp(x) - x.sum(dim=1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if rank == 0 and step == 40:
            with LRClient(url) as admin:
                admin.run(run_id).scale(0.25, reason="operator, mid-run")
    sched.close()
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
    out.write_text(json.dumps({"applied": applied, "params": digest, "requests": requests}))
    client.close()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
