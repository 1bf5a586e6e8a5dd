"""``find_lr``: an LR range test run against the service, with the model and optimizer restored afterwards.

The recipe of Leslie Smith's cyclical learning rates, in two calls::

    client = LRClient("http://lrserve:8000", token=...)
    found = find_lr(model, optimizer, loss_fn, train_loader, run=(client, "mlp-lr-test"), plot="lr.png")
    print(found.clr_bounds)                     # lower, upper per param group
    train = client.run("mlp-lr-test", lazy=True).followup("mlp-train", "one_cycle", total_steps=3000)
    scheduler = RemoteScheduler(optimizer, train)

``find_lr`` creates the ``LRRangeTest`` run, trains one batch per step at the LR the server leases, reports the
loss of each step, and stops when the server's lease answers ``done`` (the smoothed loss diverged, or the last
step was trained). The server keeps the losses, smooths them, detects the divergence and reads the suggestions
(``lrserve.schemas.core.lrfinder``): what this returns is the server's ``SuggestionPublic``.

One step is two requests, in this order: report the loss of step ``s``, then lease step ``s + 1``. The lease must
come after the report, since the server decides from that loss whether step ``s + 1`` is trained at all; so
leases are one step long, and nothing can be leased ahead. This is done with plain ``RunHandle`` calls rather
than the ``LeaseManager`` (or a ``RemoteScheduler`` with ``lease_steps=1``): its background thread would only
add a hand-off per step, it refetches the run's plan whenever the run's history moved (every posted loss moves
it: a third request per step), and its outage mode, evaluating LRs locally, is wrong here — without the server
nobody detects the divergence. Transient failures are still retried with backoff by ``LRClient``.

Like torch-lr-finder's ``reset()``, the model's and the optimizer's state are restored afterwards from deep
copies of their ``state_dict``s (parameters bit for bit, the optimizer's moments and its param groups' LRs),
as are the parameters' gradients, the modules' train/eval flags and torch's random number generators (so that
training after ``find_lr`` draws what it would have drawn without it).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from lrserve.client.http import LRClient, RunHandle
from lrserve.schemas.core.lrfinder import DEFAULT_DIVERGE_TH, DEFAULT_SMOOTH_F, UpperRule
from lrserve.schemas.errors import Conflict
from lrserve.schemas.specs.run import GROUP_NAME_PATTERN
from lrserve.schemas.wire import LrWindow, SuggestionPublic

LossFn = Callable[[Any, Any], torch.Tensor]
_GROUP_NAME = re.compile(GROUP_NAME_PATTERN)


def find_lr(
    model: nn.Module,
    optimizer: Optimizer,
    loss_fn: LossFn,
    batches: Iterable[Any],
    *,
    run: RunHandle | tuple[LRClient, str],
    start_lr: float | Sequence[float] = 1e-7,
    end_lr: float | Sequence[float] = 10.0,
    num_steps: int = 100,
    mode: Literal["exp", "linear"] = "exp",
    smooth_f: float = DEFAULT_SMOOTH_F,
    diverge_th: float = DEFAULT_DIVERGE_TH,
    upper_rule: UpperRule = "valley",
    lower_div: float = 6.0,
    labels: Mapping[str, str] | None = None,
    progress: bool = True,
    plot: str | os.PathLike[str] | None = None,
) -> SuggestionPublic:
    """Run an LR range test on the service and return what it suggests (see the module's docstring).

    ``batches``: ``(inputs, targets)`` pairs (a ``DataLoader``, a list); each step trains on the next one,
    ``loss_fn(model(inputs), targets)``, starting over when it runs out (it must then be iterable again). Tensors
    are moved to the device of the model's first parameter. ``run``: a ``RunHandle`` (only its client and id are
    used: ``client.run("lr-test", lazy=True)``) or a ``(client, run_id)`` pair; the run is created with one
    param group per optimizer group and must be new (a range test runs once: 409 ``Conflict`` if it has served
    steps already). ``start_lr``, ``end_lr`` (scalars or one per group), ``num_steps``, ``mode``, ``smooth_f``
    (weight of the new loss in the smoothed loss) and ``diverge_th`` (stop once the smoothed loss exceeds
    ``diverge_th`` times the best) are the ``LRRangeTest`` spec's fields. ``upper_rule`` and ``lower_div`` choose
    the CLR bounds of the answer (``upper`` from that rule, ``lower = upper / lower_div``). ``progress``: a rich
    progress bar. ``plot``: write loss and smoothed loss vs LR (log x) with the suggestions to this PNG (needs
    matplotlib: ``pip install 'lrserve[plot]'``).

    >>> found = find_lr(model, opt, nn.CrossEntropyLoss(), loader, run=(client, "lr-test"))  # doctest: +SKIP
    >>> found.clr_bounds.lower, found.clr_bounds.upper                                       # doctest: +SKIP
    ([0.0083], [0.05])
    """
    if plot is not None:
        _require_matplotlib()
    client, run_id = (run.client, run.run_id) if isinstance(run, RunHandle) else run
    groups = optimizer.param_groups
    schedule = {
        "type": "LRRangeTest",
        "start_lr": _scalar_or_list(start_lr),
        "end_lr": _scalar_or_list(end_lr),
        "num_steps": num_steps,
        "mode": mode,
        "smooth_f": smooth_f,
        "diverge_th": diverge_th,
    }
    spec = {"param_groups": _param_groups(groups), "schedule": schedule}
    handle = RunHandle(client, run_id, spec=spec, labels=labels)
    info = handle.ensure()
    if info.horizon >= 0:
        raise Conflict(
            detail=f"run {run_id!r} has served steps already (up to {info.horizon}): a range test runs once; "
            "give find_lr a new run id, or delete the run first"
        )
    incarnation = info.incarnation
    device = _device_of(model)
    data = _cycle(batches)
    with _restored(model, optimizer), _progress_bar(progress, num_steps) as bar:
        model.train()
        window = handle.values(0, 1, incarnation)
        step = 0
        while not window.done and step < num_steps:
            _set_lrs(optimizer, window)
            inputs, targets = _pair(next(data), device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            value = float(loss.detach())
            handle.report(step, "loss", value, incarnation)
            bar(step, window.groups[0].lr[0], value)
            step += 1
            window = handle.values(step, 1, incarnation)
    found = handle.suggestion(upper_rule, lower_div)
    if plot is not None:
        plot_range_test(found, plot)
    return found


def plot_range_test(found: SuggestionPublic, path: str | os.PathLike[str]) -> Path:
    """Write a range test's loss and smoothed loss vs LR (log x, first param group) to a PNG at ``path``, with
    each rule's pick marked where it read the curve, the CLR bounds shaded and the divergence step dashed.
    Needs matplotlib (``pip install 'lrserve[plot]'``); returns the path."""
    _require_matplotlib()
    import math

    from matplotlib.figure import Figure

    p = found.plot
    lr_at = dict(zip(p.steps, p.lr, strict=True))
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(p.lr, p.loss, color="0.6", linewidth=0.8, label="loss")
    ax.plot(p.lr, p.smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    for k, pick in enumerate(found.rules):
        read_at = lr_at[pick.step]
        where = "" if math.isclose(read_at, pick.lr[0], rel_tol=1e-9) else f" (read at {read_at:.3g})"
        ax.plot(
            [read_at],
            [pick.loss],
            marker="ovs^D"[k % 5],
            linestyle="none",
            color=f"C{k + 1}",
            label=f"{pick.rule}: {pick.lr[0]:.3g}{where}",
        )
    if found.clr_bounds is not None:
        b = found.clr_bounds
        ax.axvspan(b.lower[0], b.upper[0], color="C0", alpha=0.1, label=f"CLR bounds ({b.upper_rule})")
    if found.stopped_at is not None and found.stopped_at in lr_at:
        ax.axvline(lr_at[found.stopped_at], color="C3", linestyle="--", linewidth=1, label="diverged")
    finite = [v for v in (*p.loss, *p.smoothed) if math.isfinite(v)]
    smooth = [v if math.isfinite(v) else math.inf for v in p.smoothed]
    if finite and min(smooth) < math.inf:
        # the diverging tail would squash the curve: the top is the highest smoothed loss up to its minimum
        bottom = smooth.index(min(smooth))
        lo, hi = min(finite), max(smooth[: bottom + 1])
        pad = 0.1 * (hi - lo or abs(hi) or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title(f"LR range test {found.run_id}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out


# ---- internals --------------------------------------------------------------------------------------------------


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("plotting a range test needs matplotlib: pip install 'lrserve[plot]'") from None


def _scalar_or_list(v: float | Sequence[float]) -> float | list[float]:
    return float(v) if isinstance(v, int | float) else [float(x) for x in v]


def _param_groups(groups: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run param group per optimizer group, in order: its ``name`` if it has a valid one, and its LR."""
    out = []
    for i, g in enumerate(groups):
        name = g.get("name")
        if not (isinstance(name, str) and _GROUP_NAME.match(name)):
            name = "default" if len(groups) == 1 else f"group{i}"
        out.append({"name": name, "lr": float(g["lr"])})
    return out


def _device_of(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None


def _to(obj: Any, device: torch.device | None) -> Any:
    if device is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple | list):
        return type(obj)(_to(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _pair(batch: Any, device: torch.device | None) -> tuple[Any, Any]:
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise TypeError(f"find_lr trains on (inputs, targets) pairs; a batch was a {type(batch).__name__}")
    return _to(batch[0], device), _to(batch[1], device)


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    passes = 0
    while True:
        seen = 0
        for batch in batches:
            seen += 1
            yield batch
        passes += 1
        if seen == 0 and passes == 1:
            raise ValueError("batches is empty")
        if seen == 0:
            raise ValueError(
                "batches ran out and gives nothing when iterated again (an iterator?): pass a re-iterable "
                "(a list, a DataLoader) or at least num_steps batches"
            )


def _set_lrs(optimizer: Optimizer, window: LrWindow) -> None:
    for group, values in zip(optimizer.param_groups, window.groups, strict=True):
        lr = values.lr[0]
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)  # a tensor LR (capturable/fused optimizers) keeps its identity
        else:
            group["lr"] = lr


@contextmanager
def _restored(model: nn.Module, optimizer: Optimizer) -> Iterator[None]:
    """Run the body, then put back the model's and optimizer's state, the parameters' gradients, the train flags
    and torch's RNGs."""
    grads = {p: None if p.grad is None else p.grad.clone() for p in model.parameters()}
    model_state = copy.deepcopy(model.state_dict())
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    training = {m: m.training for m in model.modules()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        for param, grad in grads.items():
            param.grad = grad
        for module, flag in training.items():
            module.training = flag
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Callable[[int, float, float], None]]:
    """A rich progress bar over the test's steps (``update(step, lr, loss)``); a no-op when not ``enabled``."""
    if not enabled:
        yield lambda step, lr, loss: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("LR range test"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lr {task.fields[lr]:.3g}  loss {task.fields[loss]:.4g}"),
        TimeElapsedColumn(),
    ) as bar:
        task = bar.add_task("range test", total=total, lr=float("nan"), loss=float("nan"))

        def update(step: int, lr: float, loss: float) -> None:
            bar.update(task, completed=step + 1, lr=lr, loss=loss)

        yield update


__all__ = ["find_lr", "plot_range_test"]
