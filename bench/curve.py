"""How fast ``lrserve.schemas.evaluate`` computes a curve: 1,000,000 steps x 2 param groups.

For CosineAnnealingLR, OneCycleLR, MultiStepLR and SequentialLR(LinearLR warm-up -> CosineAnnealingLR), against

(a) torch: the same scheduler stepped 1,000,000 times, reading ``get_last_lr()`` at each step;
(b) numpy: the bare closed form written inline below (no spec, no validation, no generality).

Goal: >= 100x faster than (a) and <= 2x the time of (b). Times are the best of ``--repeat`` runs (torch: one
run, it takes seconds); the two are timed alternately,
so that a busy machine slows both alike.. Also checks that the curves agree with torch (max relative error).

    python bench/curve.py [--steps 1000000] [--repeat 15] [--no-torch]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

# bench/ holds http.py, which would shadow the standard library's http (torch imports it) when this file runs as
# a script with bench/ first on sys.path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from lrserve.schemas import evaluate, parse_spec  # noqa: E402

LRS = np.array([0.1, 0.01])
GROUPS = [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 0.01}]


def cases(n: int) -> list[tuple[str, dict[str, Any], Callable[[np.ndarray], np.ndarray]]]:
    base = LRS[:, None]
    eta, warm = 1e-5, n // 100

    def cosine(s: np.ndarray) -> np.ndarray:
        return eta + (base - eta) * (1 + np.cos(np.pi * s / n)) / 2

    peak = LRS[:, None]
    initial, final = peak / 25.0, peak / 25.0 / 1e4
    e0 = 0.3 * n - 1

    def one_cycle(s: np.ndarray) -> np.ndarray:
        up = s <= e0
        pct = np.where(up, s / e0, (s - e0) / (n - 1 - e0))
        start = np.where(up, initial, peak)
        end = np.where(up, peak, final)
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1)

    milestones = np.array([3 * n // 10, 6 * n // 10, 9 * n // 10])

    def multistep(s: np.ndarray) -> np.ndarray:
        return base * 0.1 ** np.searchsorted(milestones, s, side="right")

    def sequential(s: np.ndarray) -> np.ndarray:
        ramp = base * (0.01 + 0.99 * np.minimum(s, warm) / warm)
        tail = eta + (base - eta) * (1 + np.cos(np.pi * (s - warm) / (n - warm))) / 2
        return np.where(s < warm, ramp, tail)

    return [
        ("CosineAnnealingLR", {"type": "CosineAnnealingLR", "T_max": n, "eta_min": eta}, cosine),
        ("OneCycleLR", {"type": "OneCycleLR", "max_lr": LRS.tolist(), "total_steps": n}, one_cycle),
        ("MultiStepLR", {"type": "MultiStepLR", "milestones": milestones.tolist(), "gamma": 0.1}, multistep),
        (
            "SequentialLR",
            {
                "type": "SequentialLR",
                "schedulers": [
                    {"type": "LinearLR", "start_factor": 0.01, "total_iters": warm},
                    {"type": "CosineAnnealingLR", "T_max": n - warm, "eta_min": eta},
                ],
                "milestones": [warm],
            },
            sequential,
        ),
    ]


def best_of_pair(first: Callable[[], Any], second: Callable[[], Any], repeat: int) -> tuple[float, Any, float, Any]:
    """Best times of two functions, run alternately so that a busy machine slows both alike."""
    t1, t2, out1, out2 = [], [], None, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out1 = first()
        t1.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        out2 = second()
        t2.append(time.perf_counter() - t0)
    return min(t1), out1, min(t2), out2


def torch_loop(schedule: dict[str, Any], n: int) -> tuple[float, np.ndarray]:
    import torch
    from torch.optim import lr_scheduler as sched

    params = [{"params": [torch.zeros(1, requires_grad=True)], "lr": g["lr"]} for g in GROUPS]
    opt = torch.optim.SGD(params, lr=1.0, momentum=0.9)

    def build(spec: dict[str, Any]) -> Any:
        kwargs = {k: v for k, v in spec.items() if k != "type"}
        if spec["type"] == "SequentialLR":
            kwargs["schedulers"] = [build(c) for c in kwargs["schedulers"]]
            return sched.SequentialLR(opt, **kwargs)
        return getattr(sched, spec["type"])(opt, **kwargs)

    out = np.empty((len(GROUPS), n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        s = build(schedule)
        out[:, 0] = s.get_last_lr()
        for i in range(1, n):
            s.step()
            out[:, i] = s.get_last_lr()
        return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-torch", action="store_true", help="skip the (slow) torch loops")
    args = parser.parse_args()
    n = args.steps
    steps = np.arange(n, dtype=np.int64)
    print(f"{n:,} steps x {len(GROUPS)} groups; best of {args.repeat} (torch: one run)\n")
    header = (
        f"{'schedule':<18} {'lrserve ms':>10} {'numpy ms':>9} {'torch s':>8} {'vs numpy':>9} {'vs torch':>9} "
        f"{'max rel err':>12}"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name, schedule, bare in cases(n):
        spec = parse_spec({"param_groups": GROUPS, "schedule": schedule})
        t_ours, mine, t_np, ref_np = best_of_pair(
            lambda spec=spec: evaluate(spec, steps), lambda bare=bare: bare(steps), args.repeat
        )
        t_torch, err = float("nan"), float("nan")
        if not args.no_torch:
            t_torch, ref = torch_loop(schedule, n)
            with np.errstate(divide="ignore", invalid="ignore"):
                err = float(np.nanmax(np.abs(mine - ref) / np.abs(ref)))
        ratio_np, speedup = t_ours / t_np, t_torch / t_ours
        rows.append((name, ratio_np, speedup))
        print(
            f"{name:<18} {t_ours * 1e3:>10.1f} {t_np * 1e3:>9.1f} {t_torch:>8.2f} {ratio_np:>8.2f}x "
            f"{speedup:>8.0f}x {err:>12.2g}"
        )
        assert np.allclose(mine, ref_np, rtol=1e-6, atol=1e-12), f"{name}: the inline numpy form disagrees"
    print("\ngoal: vs numpy <= 2x, vs torch >= 100x")
    for name, ratio_np, speedup in rows:
        ok = ratio_np <= 2.0 and (np.isnan(speedup) or speedup >= 100)
        print(f"  {name:<18} {'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
