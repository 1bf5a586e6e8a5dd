"""Hypothesis strategies for the Keras/TF1 specs, as the JSON mappings a client would send.

Every float is rounded to float32 first: Keras casts its Python-float parameters to float32 even when the
LR tensor is float64, so only float32-representable parameters let the float64 parity tests compare the
formulas themselves (and not the rounding of ``0.96`` to float32) at 1e-9.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

Spec = dict[str, Any]


def f32(lo: float, hi: float) -> st.SearchStrategy[float]:
    """A float32-representable float in ``[lo, hi]``."""
    return (
        st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        .map(lambda x: float(np.float32(x)))
        .filter(lambda x: lo <= x <= hi)
    )


def lrs() -> st.SearchStrategy[float]:
    return f32(1e-4, 2.0)


@st.composite
def exponential_decay(draw: st.DrawFn) -> Spec:
    return {
        "type": "ExponentialDecay",
        "initial_learning_rate": draw(lrs()),
        "decay_steps": draw(st.integers(1, 5000)),
        "decay_rate": draw(f32(0.05, 1.0)),
        "staircase": draw(st.booleans()),
    }


@st.composite
def piecewise_constant_decay(draw: st.DrawFn) -> Spec:
    bounds = sorted(draw(st.sets(st.integers(0, 9000), min_size=1, max_size=6)))
    values = draw(st.lists(lrs(), min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return {"type": "PiecewiseConstantDecay", "boundaries": bounds, "values": values}


@st.composite
def polynomial_decay(draw: st.DrawFn) -> Spec:
    return {
        "type": "PolynomialDecay",
        "initial_learning_rate": draw(lrs()),
        "decay_steps": draw(st.integers(1, 5000)),
        "end_learning_rate": draw(f32(0.0, 0.5)),
        "power": draw(f32(0.25, 4.0)),
        "cycle": draw(st.booleans()),
    }


@st.composite
def inverse_time_decay(draw: st.DrawFn) -> Spec:
    return {
        "type": "InverseTimeDecay",
        "initial_learning_rate": draw(lrs()),
        "decay_steps": draw(st.integers(1, 5000)),
        "decay_rate": draw(f32(0.0, 5.0)),
        "staircase": draw(st.booleans()),
    }


@st.composite
def cosine_decay(draw: st.DrawFn) -> Spec:
    spec: Spec = {
        "type": "CosineDecay",
        "initial_learning_rate": draw(lrs()),
        "decay_steps": draw(st.integers(1, 5000)),
        "alpha": draw(f32(0.0, 1.0)),
    }
    if draw(st.booleans()):
        spec["warmup_target"] = draw(lrs())
        spec["warmup_steps"] = draw(st.integers(0, 3000))
    return spec


@st.composite
def cosine_decay_restarts(draw: st.DrawFn) -> Spec:
    return {
        "type": "CosineDecayRestarts",
        "initial_learning_rate": draw(lrs()),
        "first_decay_steps": draw(st.integers(1, 2000)),
        "t_mul": draw(st.sampled_from([1.0, 1.5, 2.0, 3.0]) | f32(1.0, 3.0)),
        "m_mul": draw(f32(0.0, 1.0)),
        "alpha": draw(f32(0.0, 1.0)),
    }


@st.composite
def linear_cosine_decay(draw: st.DrawFn, noisy: bool = False) -> Spec:
    spec: Spec = {
        "type": "NoisyLinearCosineDecay" if noisy else "LinearCosineDecay",
        "initial_learning_rate": draw(lrs()),
        "decay_steps": draw(st.integers(1, 5000)),
        "num_periods": draw(f32(0.0, 8.0)),
        "alpha": draw(f32(0.0, 1.0)),
        "beta": draw(f32(0.0, 0.1)),
    }
    if noisy:
        spec["initial_variance"] = draw(f32(0.0, 2.0))
        spec["variance_decay"] = draw(f32(0.0, 2.0))
        spec["seed"] = draw(st.integers(0, 2**63 - 1))
    return spec


KERAS_SPECS = {
    "ExponentialDecay": exponential_decay(),
    "PiecewiseConstantDecay": piecewise_constant_decay(),
    "PolynomialDecay": polynomial_decay(),
    "InverseTimeDecay": inverse_time_decay(),
    "CosineDecay": cosine_decay(),
    "CosineDecayRestarts": cosine_decay_restarts(),
}

ANY_SPEC = st.one_of(*KERAS_SPECS.values(), linear_cosine_decay(), linear_cosine_decay(noisy=True))


# Caffe (solver.prototxt) and the LR range test live here too: one module of strategies for these dialects.


@st.composite
def caffe_spec(draw: st.DrawFn, policy: str | None = None) -> Spec:
    policy = policy or draw(st.sampled_from(CAFFE_POLICIES))
    spec: Spec = {"type": "caffe", "lr_policy": policy, "base_lr": draw(lrs())}
    if policy in ("step", "exp", "multistep"):
        spec["gamma"] = draw(f32(0.0, 1.0) if policy != "exp" else f32(0.9, 1.0))
    if policy == "inv":
        spec["gamma"] = draw(f32(0.0, 0.1))
    if policy == "sigmoid":
        spec["gamma"] = draw(f32(0.0, 0.5))
    if policy in ("inv", "poly"):
        spec["power"] = draw(f32(0.0, 3.0))
    if policy in ("step", "sigmoid"):
        spec["stepsize"] = draw(st.integers(1, 5000))
    if policy == "multistep":
        spec["stepvalue"] = sorted(draw(st.sets(st.integers(0, 15000), min_size=1, max_size=6)))
    if policy == "poly" or draw(st.booleans()):
        spec["max_iter"] = draw(st.integers(1, 20000))
    return spec


CAFFE_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


@st.composite
def range_test_spec(draw: st.DrawFn) -> Spec:
    start = draw(st.floats(1e-8, 1.0))
    return {
        "type": "LRRangeTest",
        "start_lr": start,
        "end_lr": start * draw(st.floats(1.001, 1e9)),
        "num_steps": draw(st.integers(2, 5000)),
        "mode": draw(st.sampled_from(["exp", "linear"])),
        "smooth_f": draw(st.floats(0.0, 0.99)),
        "diverge_th": draw(st.floats(1.01, 100.0)),
    }
