"""LRRangeTest: the schedule against torch-lr-finder's ExponentialLR/LinearLR run on real torch, the loss
tracking against torch-lr-finder's loop, fastai's variant, validation and round trips."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.core.lrfinder import divergence_index, smooth_losses
from lrserve.schemas.errors import SpecInvalid
from tests.schemas import strategies_keras as sk

Spec = dict[str, Any]
CHECK = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ours(spec: Spec, steps: Any, groups: int = 1) -> np.ndarray[Any, Any]:
    run = parse_spec({"param_groups": [{"name": f"g{i}"} for i in range(groups)], "schedule": spec})
    return evaluate(run, np.asarray(steps, dtype=np.int64))


def torch_lr_finder_lrs(start: float, end: float, num_iter: int, mode: str) -> list[float]:
    """The LR of each iteration of torch-lr-finder's ``range_test``: its schedulers, on torch's LRScheduler."""
    torch = pytest.importorskip("torch")
    from torch.optim.lr_scheduler import LRScheduler

    class ExponentialLR(LRScheduler):  # torch_lr_finder/lr_finder.py
        def __init__(self, optimizer: Any, end_lr: float, num_iter: int) -> None:
            self.end_lr, self.num_iter = end_lr, num_iter
            super().__init__(optimizer)

        def get_lr(self) -> list[float]:
            r = self.last_epoch / (self.num_iter - 1)
            return [base_lr * (self.end_lr / base_lr) ** r for base_lr in self.base_lrs]

    class LinearLR(ExponentialLR):
        def get_lr(self) -> list[float]:
            r = self.last_epoch / (self.num_iter - 1)
            return [base_lr + r * (self.end_lr - base_lr) for base_lr in self.base_lrs]

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=start)
    schedule = (ExponentialLR if mode == "exp" else LinearLR)(optimizer, end, num_iter)
    lrs = []
    for _ in range(num_iter):
        optimizer.step()  # the training batch runs at the optimizer's current LR
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule.step()
    return lrs


@CHECK
@given(sk.range_test_spec())
def test_matches_torch_lr_finder(spec: Spec) -> None:
    n = min(spec["num_steps"], 600)  # torch steps one by one: keep it quick
    spec = {**spec, "num_steps": n}
    expected = torch_lr_finder_lrs(spec["start_lr"], spec["end_lr"], n, spec["mode"])
    got = ours(spec, np.arange(n))[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert got[0] == spec["start_lr"]
    assert got[-1] == pytest.approx(spec["end_lr"], rel=1e-12)


@CHECK
@given(sk.range_test_spec())
def test_formula_and_end_held(spec: Spec) -> None:
    n, start, end = spec["num_steps"], spec["start_lr"], spec["end_lr"]
    steps = np.concatenate([np.arange(n + 10), [10**9, 2**62]])
    r = np.minimum(steps, n - 1) / (n - 1)
    expected = start * (end / start) ** r if spec["mode"] == "exp" else start + (end - start) * r
    got = ours(spec, steps)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.all(got[n - 1 :] == got[n - 1])
    assert np.all(np.diff(got[:n]) > 0)
    run = parse_spec({"schedule": spec})
    assert run.schedule.to_schedule(run.base_lrs()).total_steps == n


def test_fastai_stops_one_ratio_short() -> None:
    # fastai's SchedExp at pos = i / num_it: same step 0, but step n - 1 is start * (end/start) ** ((n-1)/n).
    start, end, n = 1e-7, 10.0, 100
    got = ours({"type": "LRRangeTest", "start_lr": start, "end_lr": end, "num_steps": n}, [0, n - 1])[0]
    fastai = [start * (end / start) ** (i / n) for i in (0, n - 1)]
    assert got[0] == fastai[0]
    assert got[1] == pytest.approx(end, rel=1e-12)
    assert fastai[1] == pytest.approx(end * (start / end) ** (1 / n), rel=1e-12)


def test_per_group_ranges_and_defaults() -> None:
    spec: Spec = {"type": "LRRangeTest", "start_lr": [1e-4, 1e-3], "end_lr": 1.0, "num_steps": 3, "mode": "linear"}
    expected = [[1e-4, 0.50005, 1.0], [1e-3, 0.5005, 1.0]]
    np.testing.assert_allclose(ours(spec, [0, 1, 2], groups=2), expected, rtol=1e-12)
    run = parse_spec({"schedule": {"type": "LRRangeTest"}})
    defaults = run.schedule.model_dump()
    assert defaults["start_lr"] == 1e-7
    assert defaults["end_lr"] == 10.0
    assert defaults["num_steps"] == 100
    assert defaults["mode"] == "exp"
    assert defaults["smooth_f"] == 0.05
    assert defaults["diverge_th"] == 5.0


def torch_lr_finder_losses(losses: list[float], smooth_f: float, diverge_th: float) -> tuple[list[float], int | None]:
    """The loss bookkeeping of torch-lr-finder's range_test loop (history and where it breaks)."""
    history: list[float] = []
    best = None
    for iteration, raw in enumerate(losses):
        loss = raw
        if iteration == 0:
            best = loss
        else:
            if smooth_f > 0:
                loss = smooth_f * loss + (1 - smooth_f) * history[-1]
            if loss < best:
                best = loss
        history.append(loss)
        if loss > diverge_th * best:
            return history, iteration
    return history, None


@CHECK
@given(
    st.lists(st.floats(0.01, 100.0), min_size=1, max_size=200),
    st.floats(0.0, 0.99),
    st.floats(1.01, 10.0),
)
def test_loss_tracking_matches_torch_lr_finder(losses: list[float], smooth_f: float, diverge_th: float) -> None:
    history, stop = torch_lr_finder_losses(losses, smooth_f, diverge_th)
    smoothed = smooth_losses(losses, smooth_f=smooth_f, method="seeded")
    diverged_at = divergence_index(smoothed, diverge_th=diverge_th, losses=losses)
    end = len(smoothed) if diverged_at is None else diverged_at + 1
    assert list(smoothed[:end]) == pytest.approx(history, rel=1e-12)
    assert diverged_at == stop


def _stop(losses: list[float], smooth_f: float) -> int | None:
    smoothed = smooth_losses(losses, smooth_f=smooth_f, method="seeded")
    return divergence_index(smoothed, diverge_th=5, losses=losses)


def test_loss_tracking_stops_on_nan_and_on_divergence() -> None:
    assert _stop([1.0, math.nan, 0.5], 0.05) == 1
    assert _stop([1.0, 1.0, 100.0, 1.0], 0.0) == 2
    assert _stop([1.0, 0.9, 0.8], 0.05) is None
    assert _stop([1.0, math.inf], 0.0) == 1
    # a best <= 0 disables the ratio rule (torch-lr-finder would stop at once on a negative loss)
    assert _stop([-1.0, -0.5, 3.0], 0.0) is None


GROUPS = [{"name": "a"}, {"name": "b"}]
BAD: list[tuple[Spec, str, str]] = [
    ({"start_lr": 1.0, "end_lr": 0.5}, "schedule.end_lr", "greater than start_lr"),
    ({"start_lr": 1.0, "end_lr": 1.0}, "schedule.end_lr", "greater than start_lr"),
    ({"start_lr": [1e-3, 1.0], "end_lr": [1.0, 0.1]}, "schedule.end_lr", "greater than start_lr"),
    ({"start_lr": 0.0}, "schedule.start_lr", "must be > 0"),
    ({"start_lr": -1.0}, "schedule.start_lr", ">= 0"),
    ({"num_steps": 1}, "schedule.num_steps", "greater than or equal to 2"),
    ({"mode": "cos"}, "schedule.mode", "'exp' or 'linear'"),
    ({"smooth_f": 1.0}, "schedule.smooth_f", "less than 1"),
    ({"smooth_f": -0.1}, "schedule.smooth_f", "greater than or equal to 0"),
    ({"diverge_th": 1.0}, "schedule.diverge_th", "greater than 1"),
    ({"start_lr": [1e-3, 1e-3, 1e-3]}, "schedule", "schedule.start_lr has 3 entries"),
    ({"beta": 0.98}, "schedule.beta", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("fields", "path", "fragment"), BAD)
def test_bad_specs_name_the_field(fields: Spec, path: str, fragment: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec({"param_groups": GROUPS, "schedule": {"type": "LRRangeTest", **fields}})
    errors = info.value.errors
    assert [e.path() for e in errors] == [path], [e.as_dict() for e in errors]
    assert fragment in errors[0].msg


@CHECK
@given(sk.range_test_spec())
def test_round_trip(spec: Spec) -> None:
    run = parse_spec({"param_groups": GROUPS, "schedule": spec})
    assert parse_spec(run.model_dump(mode="json", by_alias=True)) == run
