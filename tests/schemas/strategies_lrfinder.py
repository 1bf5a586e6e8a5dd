"""Hypothesis strategies and synthetic curves for the LR range test analysis (``core.lrfinder``).

``range_test_curve`` is a realistic range test on an exponential LR grid: flat at ``level``, then a smooth
(half-cosine) fall by ``drop`` between steps ``fall_start`` and ``fall_end``, then an exponential blow-up
(``rise`` per step), all times seeded log-normal noise of ``noise`` (relative). ``curves()`` draws its
parameters where the fall is clear, as on a real model: it spans 20 to 45 % of the test, takes off 50 to 95 %
of the loss, and the noise is at most twice the mean fall per step (and at most 3 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

START_LR, END_LR = 1e-7, 10.0


@dataclass(frozen=True)
class Curve:
    lrs: np.ndarray
    losses: np.ndarray
    fall_start: int
    fall_end: int


def range_test_curve(
    n: int = 200,
    *,
    fall_start: int = 60,
    fall_end: int = 150,
    level: float = 2.3,
    drop: float = 0.85,
    rise: float = 0.15,
    noise: float = 0.03,
    seed: int = 0,
) -> Curve:
    i = np.arange(n, dtype=np.float64)
    t = np.clip((i - fall_start) / (fall_end - fall_start), 0.0, 1.0)
    low = level * (1.0 - drop)
    base = level - (level - low) * (1.0 - np.cos(math.pi * t)) / 2.0
    base = base * np.exp(rise * np.maximum(i - fall_end, 0.0))
    rng = np.random.default_rng(seed)
    losses = base * np.exp(noise * rng.standard_normal(n))
    lrs = START_LR * (END_LR / START_LR) ** (i / (n - 1))  # torch-lr-finder's exponential grid
    return Curve(lrs, losses, fall_start, fall_end)


@st.composite
def curves(draw: st.DrawFn) -> Curve:
    n = draw(st.integers(80, 400))
    fall_start = draw(st.integers(int(0.15 * n), int(0.4 * n)))
    fall_end = draw(st.integers(fall_start + int(0.2 * n), min(fall_start + int(0.45 * n), int(0.85 * n))))
    drop = draw(st.floats(0.5, 0.95))
    return range_test_curve(
        n,
        fall_start=fall_start,
        fall_end=fall_end,
        level=draw(st.floats(0.5, 5.0)),
        drop=drop,
        rise=draw(st.floats(0.1, 0.5)),
        # at least 0.2 % (a real loss is never flat to the bit), at most twice the mean fall per step
        noise=draw(st.floats(0.002, max(0.002, min(0.03, 2 * drop / (fall_end - fall_start))))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def loss_sequences(min_size: int = 0, max_size: int = 60, *, finite: bool = True) -> st.SearchStrategy[list[float]]:
    """Arbitrary loss sequences (positive and not), with repeats so ties and plateaus are common."""
    values = st.floats(-5.0, 50.0, allow_nan=False, allow_infinity=False)
    if not finite:
        values = values | st.sampled_from([math.nan, math.inf, -math.inf])
    pool = st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0])
    return st.lists(values | pool, min_size=min_size, max_size=max_size)
