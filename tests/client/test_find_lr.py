"""``find_lr`` end to end on real data: scikit-learn's ``load_digits`` (1797 8x8 digits, shipped inside the
package), a small MLP on CPU, a real uvicorn server on a real SQLite file.

The Cyclical-Learning-Rates recipe, checked whole: the range test diverges before its end, its suggestion lies
where the smoothed loss fell, the model and optimizer come back bit for bit, and the follow-up one-cycle run the
server derives from the suggestion, trained through ``RemoteScheduler``, ends far more accurate than the same
model and batches trained at the test's own bad ends (``end_lr`` diverges, ``start_lr`` barely moves). The
figures land in ``artifacts/find_lr.json`` (and the plot in ``artifacts/find_lr.png``).
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from lrserve.client import LRClient, RemoteScheduler, RunHandle, find_lr
from lrserve.schemas.errors import Conflict, RunNotFound
from lrserve.schemas.wire import SuggestionPublic
from tests.client.conftest import ThreadServer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"

START_LR, END_LR, NUM_STEPS = 1e-7, 10.0, 100
BATCH = 64
TRAIN_STEPS = 300  # ~14 epochs of the 1400 training digits
MOMENTUM = 0.9

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Digits:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor

    def batches(self, seed: int) -> list[Batch]:
        """One epoch of shuffled full batches (seeded)."""
        order = torch.randperm(len(self.x_train), generator=torch.Generator().manual_seed(seed))
        stop = len(order) - BATCH + 1
        return [(self.x_train[order[i : i + BATCH]], self.y_train[order[i : i + BATCH]]) for i in range(0, stop, BATCH)]

    def accuracy(self, model: nn.Module) -> float:
        with torch.no_grad():
            return float((model(self.x_val).argmax(1) == self.y_val).float().mean())


@pytest.fixture(scope="module")
def digits() -> Digits:
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, val = order[:1400], order[1400:]
    return Digits(x[train], y[train], x[val], y[val])


@pytest.fixture
def client(server: ThreadServer) -> Iterator[LRClient]:
    with LRClient(server.url) as c:
        yield c


def mlp() -> nn.Module:
    torch.manual_seed(0)  # every model of the test starts from the same weights
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def sgd(model: nn.Module, lr: float) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)


def train(
    model: nn.Module, opt: torch.optim.Optimizer, batches: list[Batch], steps: int, scheduler: Any = None
) -> list[float]:
    """``steps`` SGD steps over ``batches`` (cycled); the LR of the first group at each step."""
    lrs = []
    for s in range(steps):
        xb, yb = batches[s % len(batches)]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xb), yb).backward()
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return lrs


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "params": {k: v.clone() for k, v in model.state_dict().items()},
        "opt": copy.deepcopy(opt.state_dict()),
        "rng": torch.get_rng_state(),
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_same_state(before: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer) -> None:
    after = model.state_dict()
    assert after.keys() == before["params"].keys()
    for k, v in before["params"].items():
        assert torch.equal(after[k], v), f"{k} differs after find_lr"
    state = opt.state_dict()
    assert state["param_groups"] == before["opt"]["param_groups"]  # LRs (and no leftover keys) as before
    assert state["state"].keys() == before["opt"]["state"].keys()
    for i, entry in before["opt"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(state["state"][i][key], value), f"optimizer state {i}.{key} differs after find_lr"
    assert torch.equal(torch.get_rng_state(), before["rng"])
    for p, g in zip(model.parameters(), before["grads"], strict=True):
        assert (p.grad is None and g is None) or (p.grad is not None and g is not None and torch.equal(p.grad, g))


def fall_region(found: SuggestionPublic) -> tuple[int, int]:
    """Indices (into the plot) of where the smoothed loss fell: from the last point before its minimum still at
    the plateau (the median smoothed loss over fastai's skipped start, the first num_steps // 10 points) to the
    minimum."""
    smoothed = np.asarray(found.plot.smoothed)
    bottom = int(np.argmin(smoothed))
    plateau = float(np.median(smoothed[: NUM_STEPS // 10]))
    high = np.flatnonzero(smoothed[:bottom] >= plateau)
    assert high.size, "the smoothed loss never stood at its starting level before the minimum"
    return int(high[-1]), bottom


def test_range_test_suggestion_and_followup_beat_bad_fixed_lrs(
    client: LRClient, run_id: str, digits: Digits, tmp_path: Path
) -> None:
    t0 = time.perf_counter()
    model = mlp()
    opt = sgd(model, 0.05)
    train(model, opt, digits.batches(1), 3)  # a few steps first: momentum buffers for find_lr to restore
    before = snapshot(model, opt)
    start_params = {k: v.clone() for k, v in mlp().state_dict().items()}

    seen: list[tuple[float, float]] = []  # (lr, loss) of each step, as the training loop saw them

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(out, target)
        seen.append((float(opt.param_groups[0]["lr"]), float(loss.detach())))
        return loss

    test_id, train_id = f"{run_id}-test", f"{run_id}-train"
    png = ARTIFACTS / "find_lr.png"
    ARTIFACTS.mkdir(exist_ok=True)
    t_find = time.perf_counter()
    found = find_lr(
        model,
        opt,
        loss_fn,
        digits.batches(1),  # 21 batches: the test cycles through them ~5 times
        run=(client, test_id),
        start_lr=START_LR,
        end_lr=END_LR,
        num_steps=NUM_STEPS,
        progress=True,
        plot=png,
    )
    find_s = time.perf_counter() - t_find

    # the model and optimizer as they were (the test trained them to divergence: without the restore, they differ)
    assert_same_state(before, model, opt)
    assert not all(torch.equal(model.state_dict()[k], v) for k, v in start_params.items())

    # the test stopped at the divergence, before its last step, and the server saw exactly what the loop trained
    assert found.done
    assert found.stopped_at is not None and found.stopped_at < NUM_STEPS - 1
    assert found.plot.steps == list(range(found.stopped_at + 1))
    assert len(seen) == found.stopped_at + 1
    assert found.plot.lr == [lr for lr, _ in seen]
    assert found.plot.loss == [loss for _, loss in seen]
    assert found.plot.lr[0] == START_LR

    # the suggestions lie where the smoothed loss fell
    first, bottom = fall_region(found)
    lr_lo, lr_hi = found.plot.lr[first], found.plot.lr[bottom]
    picks = {r.rule: r for r in found.rules}
    assert found.clr_bounds is not None
    upper, lower = found.clr_bounds.upper[0], found.clr_bounds.lower[0]
    assert found.clr_bounds.upper_rule == "valley"
    assert upper == picks["valley"].lr[0]
    assert lr_lo <= upper <= lr_hi
    assert lr_lo <= picks["steepest"].lr[0] <= lr_hi
    assert lower == pytest.approx(upper / 6, rel=1e-12)

    # the follow-up run, derived by the server from the suggestion, trained through RemoteScheduler
    handle = client.run(test_id, lazy=True).followup(train_id, "one_cycle", total_steps=TRAIN_STEPS)
    assert handle.info is not None
    assert handle.info.spec.schedule.type == "OneCycleLR"
    assert handle.info.labels["derived_from"] == test_id
    batches = digits.batches(2)
    model = mlp()
    opt = sgd(model, 0.1)
    scheduler = RemoteScheduler(opt, handle)
    lrs = train(model, opt, batches, TRAIN_STEPS, scheduler)
    scheduler.close()
    followup_acc = digits.accuracy(model)
    assert len(lrs) == TRAIN_STEPS
    assert max(lrs) == pytest.approx(upper, rel=1e-3)  # the one cycle peaked at the suggested upper bound

    # the same model, batches and steps at the range test's ends, and (for the record) fixed at the upper bound
    fixed: dict[str, float] = {}
    for name, lr in (("end_lr", END_LR), ("start_lr", START_LR), ("suggested_upper", upper)):
        model = mlp()
        opt = sgd(model, lr)
        train(model, opt, batches, TRAIN_STEPS)
        fixed[f"{name} {lr:.3g}"] = digits.accuracy(model)
    acc_end, acc_start, _ = fixed.values()

    figures = {
        "data": "sklearn load_digits: 1400 train / 397 val, 8x8 pixels / 16",
        "model": "MLP 64-64-10, ReLU; SGD momentum 0.9; batch 64; CPU; seeded",
        "range_test": {
            "start_lr": START_LR,
            "end_lr": END_LR,
            "num_steps": NUM_STEPS,
            "steps_run": len(seen),
            "stopped_at": found.stopped_at,
            "lr_at_stop": found.plot.lr[-1],
            "fall_region_lr": [lr_lo, lr_hi],
            "suggestions": {r.rule: r.lr[0] for r in found.rules},
            "clr_bounds": {"lower": lower, "upper": upper, "upper_rule": found.clr_bounds.upper_rule},
            "seconds": round(find_s, 2),
        },
        "followup": {"schedule": "OneCycleLR", "max_lr": upper, "total_steps": TRAIN_STEPS, "val_acc": followup_acc},
        "fixed_lr_val_acc": fixed,
        "test_seconds": round(time.perf_counter() - t0, 2),
    }
    (ARTIFACTS / "find_lr.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2), file=sys.stderr)

    assert followup_acc >= 0.85
    assert acc_end <= followup_acc - 0.5  # diverged: chance level
    assert acc_start <= followup_acc - 0.5  # barely moved from the initial weights
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_a_range_test_runs_once_and_state_is_restored_on_errors(client: LRClient, run_id: str, digits: Digits) -> None:
    model = mlp()
    opt = sgd(model, 0.05)
    before = snapshot(model, opt)
    short: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 10, "progress": False}
    found = find_lr(model, opt, nn.functional.cross_entropy, digits.batches(1)[:4], run=(client, run_id), **short)
    assert found.done and found.stopped_at is None  # a gentle range: ran to its last step
    assert found.plot.steps == list(range(10))
    assert found.plot.lr[-1] == pytest.approx(1.0, rel=1e-12)
    assert_same_state(before, model, opt)

    with pytest.raises(Conflict, match="runs once"):
        find_lr(model, opt, nn.functional.cross_entropy, digits.batches(1), run=RunHandle(client, run_id), **short)

    # a one-shot iterator that runs out mid-test: a clear error, and the model still restored
    one_shot = iter(digits.batches(1)[:3])
    with pytest.raises(ValueError, match="re-iterable"):
        find_lr(model, opt, nn.functional.cross_entropy, one_shot, run=(client, f"{run_id}-b"), **short)
    assert client.run(f"{run_id}-b", lazy=True).get().horizon == 3  # it did train 3 steps before failing
    assert_same_state(before, model, opt)


def test_plot_without_matplotlib_fails_before_the_test(
    client: LRClient, run_id: str, digits: Digits, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    model = mlp()
    with pytest.raises(ImportError, match=r"lrserve\[plot\]"):
        find_lr(
            model,
            sgd(model, 0.1),
            nn.functional.cross_entropy,
            digits.batches(1),
            run=(client, run_id),
            plot=tmp_path / "lr.png",
        )
    with pytest.raises(RunNotFound):
        client.run(run_id, lazy=True).get()  # nothing was created
