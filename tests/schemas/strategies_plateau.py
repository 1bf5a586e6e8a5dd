"""Hypothesis strategies for the plateau rules: metric histories and torch/Keras plateau settings.

A metric history is a list of ``(step, value)`` with non-decreasing steps (repeats allowed: two metrics at one
step), built from segments that a training run produces: improving stretches, plateaus of one repeated value,
noisy wandering, NaNs and sudden jumps.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

History = list[tuple[int, float]]


@st.composite
def metric_values(draw: st.DrawFn, *, positive: bool = True, max_size: int = 200) -> list[float]:
    low = 1e-3 if positive else -5.0
    values: list[float] = []
    current = draw(st.floats(0.1 if positive else low, 5.0))
    while len(values) < max_size:
        kind = draw(st.sampled_from(["improve", "plateau", "noise", "nan", "jump", "stop"]))
        if kind == "stop" and values:
            break
        n = draw(st.integers(1, 25))
        for _ in range(n):
            if kind == "improve":
                current = max(low, current * draw(st.sampled_from([0.5, 0.9, 0.99, 0.9999, 0.99999, 1.0])))
            elif kind == "noise":
                current = min(10.0, max(low, current + draw(st.floats(-0.05, 0.05))))
            elif kind == "jump":
                current = draw(st.floats(low, 5.0))
            values.append(math.nan if kind == "nan" else current)
    return values[:max_size]


@st.composite
def histories(draw: st.DrawFn, *, positive: bool = True, max_size: int = 200) -> History:
    """Metric values at non-decreasing steps from 0: most steps have one, some none, a few two."""
    values = draw(metric_values(positive=positive, max_size=max_size))
    gaps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 0]), min_size=len(values), max_size=len(values)))
    step = draw(st.integers(0, 3))
    out: History = []
    for value, gap in zip(values, gaps, strict=True):
        out.append((step, value))
        step += gap
    return out


@st.composite
def torch_plateau(draw: st.DrawFn, num_groups: int, *, threshold_mode: str | None = None) -> dict[str, Any]:
    """Keyword arguments of torch's ReduceLROnPlateau (min_lr scalar or per group)."""
    min_lr_value = st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.05, 0.5])
    return {
        "mode": draw(st.sampled_from(["min", "max"])),
        "factor": draw(st.sampled_from([0.1, 0.5, 0.3, 0.9]) | st.floats(0.01, 0.99)),
        "patience": draw(st.integers(0, 6)),
        "threshold": draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.1]) | st.floats(0.0, 0.5)),
        "threshold_mode": threshold_mode or draw(st.sampled_from(["rel", "abs"])),
        "cooldown": draw(st.integers(0, 4)),
        "min_lr": draw(min_lr_value | st.lists(min_lr_value, min_size=num_groups, max_size=num_groups)),
        "eps": draw(st.sampled_from([1e-8, 0.0, 1e-3, 0.02])),
    }


@st.composite
def keras_plateau(draw: st.DrawFn) -> dict[str, Any]:
    """Keyword arguments of Keras' ReduceLROnPlateau callback (min_lr is a scalar there)."""
    return {
        "mode": draw(st.sampled_from(["min", "max"])),
        "factor": draw(st.sampled_from([0.1, 0.5, 0.25]) | st.floats(0.01, 0.99)),
        "patience": draw(st.integers(0, 6)),
        "min_delta": draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.1]) | st.floats(0.0, 0.5)),
        "cooldown": draw(st.integers(0, 4)),
        "min_lr": draw(st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.05, 0.5])),
    }


base_lrs = st.lists(st.sampled_from([0.1, 1.0, 0.05, 1e-3, 3e-4, 0.02]) | st.floats(1e-4, 1.0), min_size=1, max_size=3)
