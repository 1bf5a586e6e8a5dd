"""RemoteScheduler under PyTorch Lightning: ``configure_optimizers`` returns it, Lightning steps it."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from lrserve.client import LRClient, RemoteScheduler  # noqa: E402
from tests.client.conftest import ONECYCLE_SPEC, ThreadServer  # noqa: E402

PLATEAU_SPEC = {
    "param_groups": [{"name": "body", "lr": 0.05}, {"name": "head", "lr": 0.5}],
    "schedule": {"type": "ReduceLROnPlateau", "metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 0},
}


class Module(L.LightningModule):  # type: ignore[misc,name-defined]
    def __init__(self, url: str, run_id: str, spec: dict[str, Any], plateau: bool) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        self.url, self.run_id, self.spec, self.plateau = url, run_id, spec, plateau
        self.seen: list[list[float]] = []
        self.epoch_values = iter([1.0, 0.9, 0.95, 0.97, 0.99, 1.2])

    def training_step(self, batch: Any, _idx: int) -> Any:
        self.seen.append([g["lr"] for g in self.trainer.optimizers[0].param_groups])
        x, y = batch
        return ((self.net(x) - y) ** 2).mean()

    def on_train_epoch_end(self) -> None:
        if self.plateau:
            self.log("val_loss", next(self.epoch_values))

    def configure_optimizers(self) -> Any:
        opt = torch.optim.Adam([{"params": self.net[0].parameters()}, {"params": self.net[2].parameters()}])
        self.client = LRClient(self.url)
        run = self.client.run(self.run_id, spec=self.spec)
        if self.plateau:
            sched = RemoteScheduler(opt, run, lease_steps=1, lease_seconds=None)
            config = {"scheduler": sched, "interval": "epoch", "monitor": "val_loss", "reduce_on_plateau": True}
        else:
            sched = RemoteScheduler(opt, run, lease_steps=16)
            config = {"scheduler": sched, "interval": "step"}
        self.sched = sched
        return {"optimizer": opt, "lr_scheduler": config}


def loader() -> Any:
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    data = torch.utils.data.TensorDataset(x, x.sum(dim=1, keepdim=True))
    return torch.utils.data.DataLoader(data, batch_size=8)


def fit(module: Any, **kw: Any) -> None:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )
    trainer.fit(module, loader())
    module.sched.close()
    module.client.close()


@pytest.mark.filterwarnings("ignore")
def test_lightning_steps_the_scheduler_every_step(server: ThreadServer, run_id: str) -> None:
    module = Module(server.url, run_id, ONECYCLE_SPEC, plateau=False)
    fit(module, max_steps=40)
    with LRClient(server.url) as client:
        curve = client.run(run_id).curve(0, len(module.seen))
    assert len(module.seen) == 40
    for g in range(2):
        assert [s[g] for s in module.seen] == list(curve.groups[g].lr)


@pytest.mark.filterwarnings("ignore")
def test_lightning_plateau_reports_the_monitored_metric(server: ThreadServer, run_id: str) -> None:
    module = Module(server.url, run_id, PLATEAU_SPEC, plateau=True)
    fit(module, max_epochs=6)
    with LRClient(server.url) as client:
        run = client.run(run_id)
        metrics = [e.payload for e in run.events(limit=100).events if e.kind == "metric"]
        assert [m["name"] for m in metrics] == ["val_loss"] * 6
        per_epoch = [module.seen[i * 8][0] for i in range(6)]  # 8 batches per epoch
        # torch's ReduceLROnPlateau(patience=0): halves after epochs 3, 4 and 5 (no improvement on 0.9).
        assert per_epoch == pytest.approx([0.05, 0.05, 0.05, 0.025, 0.0125, 0.00625])
