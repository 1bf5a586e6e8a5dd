"""Keras 3 and TF1 dialects: parity with the real keras package and with the formulas of its source.

Three tiers:

* the published formulas, written here from ``keras/src/optimizers/schedules/learning_rate_schedule.py`` and
  TF1's ``learning_rate_decay`` (float64 numpy), at 1e-9 over 12,000 consecutive steps and some giant ones;
* real Keras in float64 (the LR passed as a float64 tensor, parameters float32-representable because Keras
  casts Python floats to float32 first), called per step as an optimizer does, at 1e-9 on sampled steps
  that include every boundary;
* real Keras as users get it (float32), vectorized over 12,000 steps, at 1e-6 relative plus the error
  float32 makes in ``step / decay_steps`` itself (2**-24 relative, i.e. ``step * 2**-24`` steps' worth of
  the schedule's own slope).

The real-Keras tiers skip when keras (3, torch backend) is not importable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.core import decays
from lrserve.schemas.errors import SpecInvalid
from tests.schemas import strategies_keras as sk

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: schedules need only its ops
try:
    import keras
    from keras.optimizers import schedules as kschedules
except ImportError:  # pragma: no cover - keras is in the [test] extra
    keras = None
    kschedules = None

needs_keras = pytest.mark.skipif(keras is None, reason="keras 3 (torch backend) is not installed")

Spec = dict[str, Any]
STEPS = np.arange(12_000, dtype=np.int64)
GIANT = np.array([10**6, 10**9, 2**40, 2**62], dtype=np.int64)
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ours(spec: Spec, steps: np.ndarray[Any, Any], groups: int = 1) -> np.ndarray[Any, Any]:
    run = parse_spec({"param_groups": [{"name": f"g{i}"} for i in range(groups)], "schedule": spec})
    return evaluate(run, steps)


def close(actual: np.ndarray[Any, Any], expected: np.ndarray[Any, Any], rtol: float, scale: float) -> None:
    """``|a - e| <= rtol * (|e| + scale)``: relative, with the schedule's scale as the floor near zero."""
    err = np.abs(actual - expected)
    bound = rtol * (np.abs(expected) + scale)
    bad = np.nonzero(~(err <= bound))[0]
    assert bad.size == 0, f"{bad.size} mismatches, first at index {bad[0]}: {actual[bad[0]]} vs {expected[bad[0]]}"


def scale_of(spec: Spec) -> float:
    keys = ("initial_learning_rate", "end_learning_rate", "warmup_target", "values")
    vals = [np.max(np.abs(spec[k])) for k in keys if spec.get(k) is not None]
    return float(max(vals))


# ---------------------------------------------------------------------------------------------------------
# The formulas, from Keras' source (float64 numpy, written independently of lrserve.schemas.core.decays).


def ref_exponential(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    p = s.astype(float) / c["decay_steps"]
    if c.get("staircase"):
        p = np.floor(p)
    return c["initial_learning_rate"] * np.power(c["decay_rate"], p)


def ref_piecewise(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    b, v = c["boundaries"], c["values"]
    out = (s <= b[0]) * v[0] + (s > b[-1]) * v[-1]
    for low, high, value in zip(b[:-1], b[1:], v[1:-1], strict=True):
        out = out + ((s > low) & (s <= high)) * value
    return out.astype(float)


def ref_polynomial(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    g, d = s.astype(float), float(c["decay_steps"])
    if c.get("cycle"):
        d = d * np.where(g == 0, 1.0, np.ceil(g / d))
    else:
        g = np.minimum(g, d)
    p = g / d
    init, end = c["initial_learning_rate"], c.get("end_learning_rate", 0.0001)
    return (init - end) * np.power(1 - p, c.get("power", 1.0)) + end


def ref_inverse_time(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    p = s.astype(float) / c["decay_steps"]
    if c.get("staircase"):
        p = np.floor(p)
    return c["initial_learning_rate"] / (1 + c["decay_rate"] * p)


def ref_cosine(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    init, d, alpha = c["initial_learning_rate"], float(c["decay_steps"]), c.get("alpha", 0.0)

    def decay(step: np.ndarray[Any, Any], start: float) -> np.ndarray[Any, Any]:
        cosine_decayed = 0.5 * (1.0 + np.cos(math.pi * (step / d)))
        return start * ((1 - alpha) * cosine_decayed + alpha)

    g = s.astype(float)
    if c.get("warmup_target") is None:
        return decay(np.minimum(g, d), init)
    w, target = float(c.get("warmup_steps", 0)), c["warmup_target"]
    g = np.minimum(g, d + w)
    with np.errstate(divide="ignore", invalid="ignore"):
        warm = (target - init) * (g / w) + init
    return np.where(g < w, warm, decay(g - w, target))


def ref_restarts(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Walks the periods one by one (exactly, in integers where t_mul is 1) instead of Keras' floor(log)."""
    first, t_mul, m_mul = c["first_decay_steps"], c.get("t_mul", 2.0), c.get("m_mul", 1.0)
    init, alpha = c["initial_learning_rate"], c.get("alpha", 0.0)
    out = np.empty(s.shape)
    order = np.argsort(s, kind="stable")
    i, start, length = 0, 0.0, float(first)
    for j in order:
        step = int(s[j])
        if t_mul == 1.0:
            i, done = step // first, (step % first) / first
        else:
            while step >= start + length:
                start, length, i = start + length, length * t_mul, i + 1
            done = (step - start) / length
        out[j] = init * ((1 - alpha) * 0.5 * m_mul**i * (1 + math.cos(math.pi * done)) + alpha)
    return out


def ref_linear_cosine(c: Spec, s: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    d = float(c["decay_steps"])
    g = np.minimum(s.astype(float), d)
    linear_decayed = (d - g) / d
    fraction = 2.0 * c.get("num_periods", 0.5) * (g / d)
    cosine_decayed = 0.5 * (1.0 + np.cos(math.pi * fraction))
    decayed = (c.get("alpha", 0.0) + linear_decayed) * cosine_decayed + c.get("beta", 0.001)
    return c["initial_learning_rate"] * decayed


REFERENCES: dict[str, Callable[[Spec, np.ndarray[Any, Any]], np.ndarray[Any, Any]]] = {
    "ExponentialDecay": ref_exponential,
    "PiecewiseConstantDecay": ref_piecewise,
    "PolynomialDecay": ref_polynomial,
    "InverseTimeDecay": ref_inverse_time,
    "CosineDecay": ref_cosine,
    "CosineDecayRestarts": ref_restarts,
    "LinearCosineDecay": ref_linear_cosine,
}


@pytest.mark.parametrize("kind", list(REFERENCES))
def test_matches_published_formula(kind: str) -> None:
    strategy = sk.KERAS_SPECS.get(kind, sk.linear_cosine_decay())

    @FAST
    @given(strategy)
    def check(spec: Spec) -> None:
        # Keras' float formulas lose all precision at 2**40 in these two (ceil(s / d), log of a huge step)
        giant = GIANT[:2] if kind == "CosineDecayRestarts" or spec.get("cycle") else GIANT
        steps = np.concatenate([STEPS, giant])
        got = ours(spec, steps)[0]
        close(got, REFERENCES[kind](spec, steps), 1e-9, scale_of(spec))

    check()


# ---------------------------------------------------------------------------------------------------------
# Real Keras.


def keras_schedule(spec: Spec, dtype: str) -> Any:
    assert keras is not None
    assert kschedules is not None
    config = {k: v for k, v in spec.items() if k != "type"}
    if dtype == "float64":
        as64 = keras.ops.convert_to_tensor
        if "initial_learning_rate" in config:
            config["initial_learning_rate"] = as64(config["initial_learning_rate"], dtype="float64")
        if "values" in config:
            config["values"] = [as64(v, dtype="float64") for v in config["values"]]
    return getattr(kschedules, spec["type"])(**config)


def boundary_steps(spec: Spec, rng: np.random.Generator, n: int = 300) -> np.ndarray[Any, Any]:
    """Steps around every place the schedule changes regime, plus a random sample up to 12,000."""
    marks: list[int] = [0]
    for key in ("decay_steps", "first_decay_steps", "warmup_steps"):
        if key in spec:
            d = spec[key]
            marks += [d * k for k in range(1, 6)] + [spec.get("warmup_steps", 0) + spec.get("decay_steps", 0)]
    marks += list(spec.get("boundaries", []))
    if spec["type"] == "CosineDecayRestarts":
        start, length = 0.0, float(spec["first_decay_steps"])
        while start < 12_000:
            start, length = start + length, length * spec["t_mul"]
            marks.append(math.ceil(start))
    around = np.array([m + k for m in marks for k in (-1, 0, 1)])
    sample = rng.integers(0, 12_000, n)
    steps = np.unique(np.concatenate([around, sample]))
    return steps[(steps >= 0) & (steps < 2**24)]


def without_restart_slips(
    spec: Spec, steps: np.ndarray[Any, Any], got: np.ndarray[Any, Any], kv: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Keras' ``floor(log(1 + f * (t_mul - 1)) / log(t_mul))`` can round a restart step into the period
    before it, where the cosine has just reached its floor. Check that every gross difference is exactly
    that, and return the mask of the other steps."""
    slips = np.abs(got - kv) > 1e-3 * scale_of(spec)
    if spec["type"] != "CosineDecayRestarts" or not slips.any():
        return ~slips
    starts = {0}
    start, length = 0.0, float(spec["first_decay_steps"])
    while start <= steps.max():
        start, length = start + length, length * spec["t_mul"]
        if start == int(start):
            starts.add(int(start))
    floor = spec["initial_learning_rate"] * spec["alpha"]
    for step, value in zip(steps[slips], kv[slips], strict=True):
        assert int(step) in starts, f"Keras differs at step {step}, not a restart"
        assert value == pytest.approx(floor, rel=1e-4, abs=1e-6 * scale_of(spec)), f"step {step}: {value}"
    return ~slips


@needs_keras
@pytest.mark.parametrize("kind", list(sk.KERAS_SPECS))
def test_real_keras_float64(kind: str) -> None:
    @SLOW
    @given(sk.KERAS_SPECS[kind], st.integers(0, 2**32 - 1))
    def check(spec: Spec, seed: int) -> None:
        steps = boundary_steps(spec, np.random.default_rng(seed))
        schedule = keras_schedule(spec, "float64")
        kv = np.array([float(schedule(int(s))) for s in steps])
        got = ours(spec, steps)[0]
        keep = without_restart_slips(spec, steps, got, kv)
        close(got[keep], kv[keep], 1e-9, scale_of(spec))

    check()


VECTORIZED = ("ExponentialDecay", "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts")


@needs_keras
@pytest.mark.parametrize("kind", VECTORIZED)
def test_real_keras_float32(kind: str) -> None:
    @FAST
    @given(sk.KERAS_SPECS[kind])
    def check(spec: Spec) -> None:
        if spec.get("warmup_target") is not None:
            spec = {k: v for k, v in spec.items() if k not in ("warmup_target", "warmup_steps")}  # cond: scalar only
        got = ours(spec, STEPS)[0]
        kv = keras_schedule(spec, "float32")(STEPS).numpy().astype(np.float64)
        # 1e-6 relative; near zero, a few float32 ulps of the LR scale (1 + cos cancels); and float32 rounds
        # step / decay_steps by 2**-24 relative, which is step * 2**-24 steps' worth of the schedule's own
        # slope (our one-step differences on either side; a factor 4 for the operations after it).
        slope = np.maximum(np.abs(np.diff(got, prepend=got[0])), np.abs(np.diff(got, append=got[-1])))
        allowed = 1e-6 * np.abs(kv) + 2.0**-21 * scale_of(spec) + slope * STEPS * 2.0**-22
        bad = np.nonzero((np.abs(got - kv) > allowed) & without_restart_slips(spec, STEPS, got, kv))[0]
        assert bad.size == 0, f"step {bad[0]}: ours {got[bad[0]]}, keras {kv[bad[0]]}"

    check()


@needs_keras
def test_real_keras_float32_piecewise_and_warmup() -> None:
    specs: list[Spec] = [
        {"type": "PiecewiseConstantDecay", "boundaries": [10, 20, 4000], "values": [1.0, 0.5, 0.1, 0.01]},
        {
            "type": "CosineDecay",
            "initial_learning_rate": 0.0,
            "decay_steps": 900,
            "alpha": 0.1,
            "warmup_target": 0.1,
            "warmup_steps": 100,
        },
    ]
    for spec in specs:
        steps = boundary_steps(spec, np.random.default_rng(0), n=500)
        schedule = keras_schedule(spec, "float32")
        kv = np.array([float(schedule(int(s))) for s in steps])
        close(ours(spec, steps)[0], kv, 1e-6, scale_of(spec))


@needs_keras
def test_piecewise_changes_after_the_boundary_like_keras() -> None:
    spec: Spec = {"type": "PiecewiseConstantDecay", "boundaries": [10, 20], "values": [1.0, 0.5, 0.1]}
    steps = np.array([0, 9, 10, 11, 19, 20, 21, 10**9])
    expected = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]
    assert ours(spec, steps)[0].tolist() == expected
    schedule = keras_schedule(spec, "float32")
    assert [float(schedule(int(s))) for s in steps[:-1]] == pytest.approx(expected[:-1], rel=1e-7)


def test_piecewise_trap_without_keras() -> None:
    # Keras: values[0] for step <= boundaries[0]; torch's MultiStepLR and Caffe's multistep switch *at* it.
    spec: Spec = {"type": "PiecewiseConstantDecay", "boundaries": [100], "values": [1.0, 0.1]}
    assert ours(spec, np.array([99, 100, 101]))[0].tolist() == [1.0, 1.0, 0.1]


# ---------------------------------------------------------------------------------------------------------
# Properties of the schedules themselves.


@FAST
@given(sk.ANY_SPEC)
def test_finite_non_negative_and_held_past_the_end(spec: Spec) -> None:
    run = parse_spec({"schedule": spec})
    schedule = run.schedule.to_schedule(run.base_lrs())
    values = schedule.lr(np.concatenate([STEPS[:2000], GIANT]))
    assert np.all(np.isfinite(values))
    assert np.all(values >= 0)
    end = schedule.total_steps
    if end is not None and spec["type"] != "NoisyLinearCosineDecay":
        tail = schedule.lr(np.array([end - 1, end, end + 7, 2**62], dtype=np.int64))
        assert np.all(tail == tail[:, :1])


def test_total_steps() -> None:
    def total(spec: Spec) -> int | None:
        run = parse_spec({"schedule": spec})
        return run.schedule.to_schedule(run.base_lrs()).total_steps

    assert total({"type": "PolynomialDecay", "initial_learning_rate": 1.0, "decay_steps": 50}) == 51
    assert total({"type": "PolynomialDecay", "initial_learning_rate": 1.0, "decay_steps": 50, "cycle": True}) is None
    assert total({"type": "CosineDecay", "initial_learning_rate": 1.0, "decay_steps": 50}) == 51
    cosine_warm = {
        "type": "CosineDecay",
        "initial_learning_rate": 0.0,
        "decay_steps": 50,
        "warmup_target": 1.0,
        "warmup_steps": 10,
    }
    assert total(cosine_warm) == 61
    assert (
        total({"type": "ExponentialDecay", "initial_learning_rate": 1.0, "decay_steps": 5, "decay_rate": 0.5}) is None
    )
    assert total({"type": "LinearCosineDecay", "initial_learning_rate": 1.0, "decay_steps": 50}) == 51


def test_per_group_lists_and_identical_rows() -> None:
    spec: Spec = {
        "type": "PolynomialDecay",
        "initial_learning_rate": [0.1, 1.0],
        "decay_steps": 10,
        "end_learning_rate": 0.0,
    }
    values = ours(spec, np.arange(12), groups=2)
    assert values[:, 0].tolist() == [0.1, 1.0]
    assert values[:, 10].tolist() == [0.0, 0.0]
    same = ours({**spec, "initial_learning_rate": 0.5}, np.arange(12), groups=3)
    assert np.all(same == same[:1])
    piecewise = {"type": "PiecewiseConstantDecay", "boundaries": [1], "values": [[1.0, 2.0], 0.5]}
    assert ours(piecewise, np.array([0, 2]), groups=2).tolist() == [[1.0, 0.5], [2.0, 0.5]]


def test_group_lr_is_ignored() -> None:
    spec: Spec = {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}
    run = parse_spec({"param_groups": [{"name": "a", "lr": 5.0}, {"name": "b"}], "schedule": spec})
    assert evaluate(run, [0, 10]).tolist() == [[0.1, 0.05], [0.1, 0.05]]


def test_cosine_restarts_starts_every_period_exactly() -> None:
    # Keras' float log can put step 30 (t_mul 2: periods 10, 20, 40) into the period before it.
    spec: Spec = {"type": "CosineDecayRestarts", "initial_learning_rate": 1.0, "first_decay_steps": 10, "m_mul": 0.5}
    starts = np.array([0, 10, 30, 70, 150, 310, 630, 10 * (2**40 - 1)], dtype=np.int64)
    assert ours(spec, starts)[0].tolist() == [0.5**i for i in range(7)] + [0.5**40]
    before = np.array([0.5**i * 0.5 * (1 + math.cos(math.pi * (10 * 2**i - 1) / (10 * 2**i))) for i in range(6)])
    assert ours(spec, starts[1:7] - 1)[0] == pytest.approx(before, rel=1e-12)
    i, done = decays.restart_index(np.array([29, 30, 31]), 10, 2.0)
    assert i.tolist() == [1, 2, 2]
    assert done.tolist() == [0.95, 0.0, 0.025]


# ---------------------------------------------------------------------------------------------------------
# TF1's noisy linear cosine decay: reproducible noise with the variance TF gives it.


def noisy(**extra: Any) -> Spec:
    return {
        "type": "NoisyLinearCosineDecay",
        "initial_learning_rate": 1.0,
        "decay_steps": 50_000,
        "num_periods": 0.0,
        "alpha": 20.0,
        "beta": 0.0,
        **extra,
    }


def test_noise_is_a_function_of_seed_and_step() -> None:
    spec = noisy(seed=12345)
    steps = np.arange(5000)
    base = ours(spec, steps)[0]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(steps)
    assert np.array_equal(ours(spec, shuffled)[0], base[shuffled])
    subset = np.array([4999, 3, 3, 1000])
    assert np.array_equal(ours(spec, subset)[0], base[subset])
    assert np.array_equal(ours(spec, steps)[0], base)  # rebuilt from the spec: same numbers
    other = ours(noisy(seed=12346), steps)[0]
    assert np.mean(other == base) < 0.01
    assert np.array_equal(decays.gaussian(7, steps), decays.gaussian(7, steps[::-1])[::-1])


def test_noise_statistics_follow_the_variance_decay() -> None:
    iv, vd = 0.5, 0.55
    steps = np.arange(40_000)
    eps = (
        ours(noisy(initial_variance=iv, variance_decay=vd, seed=3), steps)[0]
        - ours({**noisy(), "type": "LinearCosineDecay"}, steps)[0]
    )
    std = np.sqrt(iv / (1.0 + steps) ** vd)
    z = eps / std
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.01
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)  # neighbouring steps independent
    # the variance itself shrinks as (1 + t) ** -variance_decay: compare an early and a late window
    early, late = eps[100:2100], eps[30_000:40_000]
    predicted = np.mean(std[100:2100] ** 2) / np.mean(std[30_000:40_000] ** 2)
    assert early.var() / late.var() == pytest.approx(predicted, rel=0.15)


def test_noise_holds_its_last_variance_past_the_end() -> None:
    spec = noisy(decay_steps=100, initial_variance=1.0, variance_decay=1.0, seed=9)
    held = ours(spec, np.arange(10_000, 30_000))[0] - 20.0  # linear part is 0 past the end; cos is 1
    assert held.std() == pytest.approx(math.sqrt(1.0 / 101.0), rel=0.05)


@FAST
@given(sk.linear_cosine_decay(noisy=True))
def test_noisy_matches_tf1_formula(spec: Spec) -> None:
    # TF1: (alpha + linear + eps) * cosine + beta, eps ~ N(0, initial_variance / (1 + t) ** variance_decay);
    # eps drawn here from the same (seed, step) normals, and the result clamped at 0 (lrserve's rule).
    steps = np.concatenate([STEPS[:3000], GIANT[:2]])
    d = float(spec["decay_steps"])
    t = np.minimum(steps.astype(float), d)
    std = np.sqrt(spec["initial_variance"] / (1.0 + t) ** spec["variance_decay"])
    eps = std * decays.gaussian(spec["seed"], steps)
    cosine_decayed = 0.5 * (1.0 + np.cos(math.pi * 2.0 * spec["num_periods"] * t / d))
    decayed = (spec["alpha"] + (d - t) / d + eps) * cosine_decayed + spec["beta"]
    expected = np.maximum(spec["initial_learning_rate"] * decayed, 0.0)
    close(ours(spec, steps)[0], expected, 1e-9, scale_of(spec))


def test_noisy_value_is_clamped_at_zero() -> None:
    spec = {**noisy(initial_variance=100.0, seed=1), "alpha": 0.0}
    values = ours(spec, np.arange(2000))[0]
    assert values.min() == 0.0
    assert np.mean(values == 0.0) > 0.2


def test_no_noise_equals_linear_cosine() -> None:
    spec = noisy(initial_variance=0.0, seed=5)
    plain = {**spec, "type": "LinearCosineDecay"}
    del plain["initial_variance"], plain["seed"]
    assert np.array_equal(ours(spec, STEPS)[0], ours(plain, STEPS)[0])


# ---------------------------------------------------------------------------------------------------------
# Validation and round trips.

GROUPS = [{"name": "a"}, {"name": "b"}]
BAD: list[tuple[Spec, str, str]] = [
    (
        {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_rate": 0.5},
        "schedule.decay_steps",
        "Field required",
    ),
    (
        {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5},
        "schedule.decay_steps",
        "greater than 0",
    ),
    (
        {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 1.5},
        "schedule.decay_rate",
        "less than or equal to 1",
    ),
    (
        {"type": "ExponentialDecay", "initial_learning_rate": -0.1, "decay_steps": 5, "decay_rate": 0.5},
        "schedule.initial_learning_rate",
        ">= 0",
    ),
    (
        {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": 0.5, "gamma": 0.1},
        "schedule.gamma",
        "Extra inputs",
    ),
    (
        {"type": "PiecewiseConstantDecay", "boundaries": [10, 10], "values": [1.0, 0.5, 0.1]},
        "schedule.boundaries",
        "strictly increasing",
    ),
    ({"type": "PiecewiseConstantDecay", "boundaries": [10], "values": [1.0]}, "schedule.values", "one more entry"),
    ({"type": "PiecewiseConstantDecay", "boundaries": [], "values": [1.0]}, "schedule.boundaries", "at least 1"),
    ({"type": "PiecewiseConstantDecay", "boundaries": [1], "values": [1.0, [0.5, -1.0]]}, "schedule.values.1", ">= 0"),
    (
        {"type": "PolynomialDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "power": -1},
        "schedule.power",
        "greater than or equal to 0",
    ),
    (
        {"type": "InverseTimeDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "decay_rate": -1},
        "schedule.decay_rate",
        "greater than or equal to 0",
    ),
    (
        {"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "warmup_steps": 3},
        "schedule.warmup_steps",
        "needs a warmup_target",
    ),
    (
        {"type": "CosineDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "alpha": 1.5},
        "schedule.alpha",
        "less than or equal to 1",
    ),
    (
        {"type": "CosineDecayRestarts", "initial_learning_rate": 0.1, "first_decay_steps": 5, "t_mul": 0.5},
        "schedule.t_mul",
        "greater than or equal to 1",
    ),
    (
        {"type": "CosineDecayRestarts", "initial_learning_rate": 0.1, "first_decay_steps": 5, "m_mul": 2.0},
        "schedule.m_mul",
        "less than or equal to 1",
    ),
    (
        {"type": "LinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "beta": -1.0},
        "schedule.beta",
        "greater than or equal to 0",
    ),
    (
        {"type": "NoisyLinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "seed": -1},
        "schedule.seed",
        "greater than or equal to 0",
    ),
    (
        {"type": "NoisyLinearCosineDecay", "initial_learning_rate": 0.1, "decay_steps": 5, "initial_variance": -1},
        "schedule.initial_variance",
        "greater than or equal to 0",
    ),
    (
        {"type": "ExponentialDecay", "initial_learning_rate": [0.1, 0.2, 0.3], "decay_steps": 5, "decay_rate": 0.5},
        "schedule",
        "schedule.initial_learning_rate has 3 entries but the run has 2 param groups",
    ),
    (
        {"type": "PiecewiseConstantDecay", "boundaries": [1], "values": [1.0, [0.5]]},
        "schedule",
        "schedule.values.1 has 1 entries",
    ),
]


@pytest.mark.parametrize(("schedule", "path", "fragment"), BAD)
def test_bad_specs_name_the_field(schedule: Spec, path: str, fragment: str) -> None:
    with pytest.raises(SpecInvalid) as info:
        parse_spec({"param_groups": GROUPS, "schedule": schedule})
    errors = info.value.errors
    assert [e.path() for e in errors] == [path], [e.as_dict() for e in errors]
    assert fragment in errors[0].msg


@FAST
@given(sk.ANY_SPEC)
def test_round_trip(spec: Spec) -> None:
    run = parse_spec({"param_groups": GROUPS, "schedule": spec})
    again = parse_spec(run.model_dump(mode="json", by_alias=True))
    assert again == run
    assert np.array_equal(evaluate(again, STEPS[:500]), evaluate(run, STEPS[:500]))


def test_keras_config_pastes_in() -> None:
    # a get_config() dict, name included, is a valid spec once the class name is its type
    config = {
        "initial_learning_rate": 0.1,
        "decay_steps": 1000,
        "alpha": 0.0,
        "name": "CosineDecay",
        "warmup_target": None,
        "warmup_steps": 0,
    }
    run = parse_spec({"schedule": {"type": "CosineDecay", **config}})
    assert evaluate(run, [0])[0, 0] == 0.1
