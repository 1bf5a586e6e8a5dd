"""The reference: real torch schedulers built from the same spec mappings, stepped one step at a time.

``torch_curve(run, steps)`` gives ``(lr, momentum)`` of shape ``(G, steps)``: ``get_last_lr()`` after ``s``
calls of ``scheduler.step()`` on a fresh scheduler, and the momentum torch wrote to the optimizer (``momentum``
for SGD, ``betas[0]`` for Adam). Per-group values torch takes only as scalars (``eta_min``) are run as one
single-group optimizer per group (torch's groups never interact). ``lr_lambda`` texts become Python lambdas
(``eval`` of the trusted test expressions, with ``math``'s names in scope).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler as sched

Spec = dict[str, Any]

_NAMES: dict[str, Any] = {name: getattr(math, name) for name in dir(math) if not name.startswith("_")}
_NAMES.update({"math": math, "min": min, "max": max, "abs": abs, "pow": pow})
_PER_GROUP = ("eta_min", "lr_lambda", "base_lr", "max_lr", "base_momentum", "max_momentum")


def python_lambda(text: str) -> Any:
    code = compile(text, "<lr_lambda>", "eval")
    return lambda step: float(eval(code, {"__builtins__": {}, **_NAMES}, {"step": step, "epoch": step}))


def _needs_split(spec: Spec) -> bool:
    if isinstance(spec.get("eta_min"), list):
        return True
    return any(_needs_split(child) for child in spec.get("schedulers", []))


def _pick(spec: Spec, g: int) -> Spec:
    out = copy.deepcopy(spec)
    for key in _PER_GROUP:
        if isinstance(out.get(key), list):
            out[key] = out[key][g]
    if "schedulers" in out:
        out["schedulers"] = [_pick(child, g) for child in out["schedulers"]]
    return out


def build(spec: Spec, optimizer: torch.optim.Optimizer) -> Any:
    kind = spec["type"]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    if kind == "SequentialLR":
        children = [build(c, optimizer) for c in kwargs.pop("schedulers")]
        return sched.SequentialLR(optimizer, children, **kwargs)
    if kind == "ChainedScheduler":
        return sched.ChainedScheduler([build(c, optimizer) for c in kwargs.pop("schedulers")])
    if "lr_lambda" in kwargs:
        texts = kwargs["lr_lambda"]
        kwargs["lr_lambda"] = [python_lambda(t) for t in texts] if isinstance(texts, list) else python_lambda(texts)
    if kind == "CyclicLR":
        kwargs.pop("scale_fn", None)
    return getattr(sched, kind)(optimizer, **kwargs)


def _optimizer(lrs: list[float], optimizer: str) -> torch.optim.Optimizer:
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    if optimizer == "adam":
        return torch.optim.Adam(groups, lr=1.0)
    return torch.optim.SGD(groups, lr=1.0, momentum=0.9)


def _momentum(group: dict[str, Any]) -> float:
    return float(group["betas"][0]) if "betas" in group else float(group["momentum"])


def _run(spec: Spec, lrs: list[float], steps: int, optimizer: str) -> tuple[np.ndarray, np.ndarray]:
    opt = _optimizer(lrs, optimizer)
    lr = np.empty((len(lrs), steps))
    mom = np.empty((len(lrs), steps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": we never train
        s = build(spec, opt)
        for i in range(steps):
            if i:
                s.step()
            lr[:, i] = s.get_last_lr()
            mom[:, i] = [_momentum(g) for g in opt.param_groups]
    return lr, mom


def torch_curve(run: Spec, steps: int, optimizer: str = "sgd") -> tuple[np.ndarray, np.ndarray]:
    """``(lr, momentum)``, each ``(G, steps)``, for a RunSpec mapping (groups without ``lr`` get 1.0)."""
    lrs = [float(g.get("lr") if g.get("lr") is not None else 1.0) for g in run["param_groups"]]
    spec = run["schedule"]
    if not _needs_split(spec):
        return _run(spec, lrs, steps, optimizer)
    parts = [_run(_pick(spec, g), [lrs[g]], steps, optimizer) for g in range(len(lrs))]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
