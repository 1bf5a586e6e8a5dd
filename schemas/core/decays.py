"""Decay primitives of the Keras 3, TF1 and Caffe dialects: pure factories over step arrays.

Each factory takes per-group parameters as ``(G, 1)`` columns (see ``schedule.column``) and scalars for the
rest, checks what would make the arithmetic meaningless, and returns a closure ``steps (N,) int64 -> (G, N)
float64`` built from ``where``/``minimum``/integer division only: no loop per step, no state, no I/O. The
neutral names used here map onto the dialects' names in ``specs/keras.py`` and ``specs/caffe.py``::

    exponential(init, period, rate, staircase)    init * rate ** (s / period)        (floor(s / period))
    inverse_time(init, period, rate, staircase,   init * (1 + rate * s / period) ** -power
                 power=1)
    polynomial(init, end, period, power, cycle)   (init - end) * (1 - min(s, period) / period) ** power + end
    piecewise(values, boundaries, right_closed)   values[k] on the k-th interval between boundaries
    cosine(init, period, alpha, warmup_steps,      linear warm-up, then init * ((1-alpha) * cos_half + alpha)
           warmup_target)
    cosine_restarts(init, first_period, t_mul,     SGDR: periods grow by t_mul, peaks shrink by m_mul
                    m_mul, alpha)
    linear_cosine(init, period, num_periods,       init * ((alpha + linear + eps) * cos + beta)
                  alpha, beta, noise)
    sigmoid(init, rate, center)                    init / (1 + exp(-rate * (s - center)))

    >>> import numpy as np
    >>> lr = exponential(np.array([[0.1]]), period=2, rate=0.5, staircase=True)
    >>> lr(np.arange(5, dtype=np.int64)).round(4).tolist()
    [[0.1, 0.1, 0.05, 0.05, 0.025]]

Steps may be huge (up to 2**62): every formula stays finite there (powers of rates in [0, 1] underflow to 0,
the logistic is evaluated in its stable form).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from lrserve.schemas.core.schedule import Column, Steps, ValueFn, Values

FloatArray = npt.NDArray[np.float64]


def _f(steps: Steps) -> FloatArray:
    return np.asarray(steps, dtype=np.int64).astype(np.float64)[None, :]


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def exponential(init: Column, *, period: int, rate: float, staircase: bool = False) -> ValueFn:
    """``init * rate ** (s / period)``; with ``staircase`` the exponent is ``s // period`` (exact integers)."""
    _positive("period", period)

    def lr(steps: Steps) -> Values:
        if staircase:
            p = (np.asarray(steps, dtype=np.int64) // period).astype(np.float64)[None, :]
        else:
            p = _f(steps) / period
        return init * np.power(rate, p)

    return lr


def inverse_time(init: Column, *, period: int, rate: float, staircase: bool = False, power: float = 1.0) -> ValueFn:
    """``init * (1 + rate * p) ** -power`` with ``p = s / period`` (``s // period`` with ``staircase``)."""
    _positive("period", period)

    def lr(steps: Steps) -> Values:
        if staircase:
            p = (np.asarray(steps, dtype=np.int64) // period).astype(np.float64)[None, :]
        else:
            p = _f(steps) / period
        base = 1.0 + rate * p
        return init * (1.0 / base if power == 1.0 else np.power(base, -power))

    return lr


def polynomial(init: Column, end: Column, *, period: int, power: float, cycle: bool = False) -> ValueFn:
    """``(init - end) * (1 - p) ** power + end``.

    Without ``cycle``: ``p = min(s, period) / period`` (the end value is held from ``s = period`` on). With
    ``cycle``: ``p = s / (period * max(1, ceil(s / period)))``, so the value reaches ``end`` at every multiple
    of ``period`` and jumps back up on the next step (Keras' PolynomialDecay, ``cycle=True``).
    """
    _positive("period", period)

    def lr(steps: Steps) -> Values:
        s = np.asarray(steps, dtype=np.int64)
        # 1 - p as (span - s) / span with the numerator in exact integers: no cancellation at giant steps.
        if cycle:
            span = np.maximum(1, -(-s // period)) * period  # period times ceil(s / period), at least 1
        else:
            span, s = np.full_like(s, period), np.minimum(s, period)
        rest = (span - s).astype(np.float64) / span.astype(np.float64)
        return (init - end) * np.power(rest[None, :], power) + end

    return lr


def piecewise(values: FloatArray, boundaries: Sequence[int], *, right_closed: bool = True) -> ValueFn:
    """Piecewise constant: ``values[:, k]`` where ``k`` counts the boundaries passed.

    ``values`` has shape ``(G, K + 1)`` for ``K`` strictly increasing ``boundaries``. ``right_closed`` (Keras'
    PiecewiseConstantDecay): a boundary still belongs to the interval on its left, so ``k = #{b < s}`` and
    the value changes at ``boundary + 1``. Otherwise (Caffe's multistep, torch's MultiStepLR) ``k = #{b <= s}``
    and the value changes at the boundary itself.
    """
    vals = np.asarray(values, dtype=np.float64)
    bounds = np.asarray(boundaries, dtype=np.int64)
    if vals.ndim != 2 or vals.shape[1] != bounds.shape[0] + 1:
        raise ValueError(f"need one more value than boundaries, got values {vals.shape} and {bounds.shape[0]}")
    if bounds.size and np.any(np.diff(bounds) <= 0):
        raise ValueError("boundaries must be strictly increasing")
    side: Literal["left", "right"] = "left" if right_closed else "right"

    def lr(steps: Steps) -> Values:
        k = np.searchsorted(bounds, np.asarray(steps, dtype=np.int64), side=side)
        return vals[:, k]

    return lr


def _half_cosine(fraction: FloatArray) -> FloatArray:
    return 0.5 * (1.0 + np.cos(math.pi * fraction))


def cosine(
    init: Column,
    *,
    period: int,
    alpha: float = 0.0,
    warmup_steps: int = 0,
    warmup_target: Column | None = None,
) -> ValueFn:
    """Keras' CosineDecay.

    Without ``warmup_target``: ``init * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s, period) / period)) + alpha)``.
    With it: ``init + (warmup_target - init) * s / warmup_steps`` for ``s < warmup_steps``, then the cosine
    from ``warmup_target`` (in place of ``init``) over ``s - warmup_steps``; held from
    ``warmup_steps + period`` on.
    """
    _positive("period", period)
    if warmup_steps < 0:
        raise ValueError("warmup_steps must be >= 0")
    peak = init if warmup_target is None else warmup_target
    warm = 0 if warmup_target is None else warmup_steps

    def lr(steps: Steps) -> Values:
        s = np.minimum(np.asarray(steps, dtype=np.int64), period + warm)
        decayed = peak * ((1.0 - alpha) * _half_cosine((s - warm).astype(np.float64)[None, :] / period) + alpha)
        if warm == 0:
            return decayed
        ramp = (peak - init) * (s.astype(np.float64)[None, :] / warm) + init
        return np.where((s < warm)[None, :], ramp, decayed)

    return lr


def restart_index(steps: Steps, first_period: int, t_mul: float) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """SGDR bookkeeping: the restart index ``i`` of each step and the fraction done of period ``i``.

    Period ``i`` lasts ``first_period * t_mul ** i`` steps and starts at ``first_period * (t_mul**i - 1) /
    (t_mul - 1)`` (``first_period * i`` when ``t_mul == 1``). Keras takes ``floor(log(...) / log(t_mul))``,
    which rounding can put one period early exactly at a restart; here that estimate is corrected against
    the period starts, so a restart step always begins its new period.
    """
    s = np.asarray(steps, dtype=np.int64)
    if t_mul == 1.0:
        return s // first_period, (s % first_period).astype(np.float64) / first_period
    log_t = math.log(t_mul)
    x = s.astype(np.float64)
    i = np.maximum(np.floor(np.log1p(x / first_period * (t_mul - 1.0)) / log_t), 0.0)

    def start(k: FloatArray) -> FloatArray:
        # In steps; a start within 1e-9 of an integer *is* that integer (t_mul = 2: 10, 30, 70, ...), so
        # rounding in t_mul ** k cannot move a restart step into the period before it.
        grown = np.where(k * log_t < 0.7, np.expm1(k * log_t), np.power(t_mul, k) - 1.0)
        exact = first_period * grown / (t_mul - 1.0)
        nearest = np.round(exact)
        return np.where(np.abs(exact - nearest) <= 1e-9 * np.maximum(nearest, 1.0), nearest, exact)

    i = np.where(x < start(i), i - 1.0, i)
    i = np.where(x >= start(i + 1.0), i + 1.0, i)
    done = (x - start(i)) / (first_period * np.power(t_mul, i))
    return i.astype(np.int64), np.clip(done, 0.0, 1.0)


def cosine_restarts(
    init: Column, *, first_period: int, t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0
) -> ValueFn:
    """Keras' CosineDecayRestarts: ``init * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * f)) + alpha)``
    with ``i`` the restart index and ``f`` the fraction done of the current period (``restart_index``)."""
    _positive("first_period", first_period)
    if t_mul < 1.0:
        raise ValueError("t_mul must be >= 1")

    def lr(steps: Steps) -> Values:
        i, done = restart_index(steps, first_period, t_mul)
        m_fac = np.power(m_mul, i.astype(np.float64))
        return init * ((1.0 - alpha) * (m_fac * _half_cosine(done))[None, :] + alpha)

    return lr


@dataclass(frozen=True)
class Noise:
    """Gaussian noise of TF1's noisy linear cosine decay: variance ``initial_variance / (1 + s) ** variance_decay``
    (``s`` clamped at the decay's period, as TF does), drawn from ``(seed, step)`` by ``gaussian``."""

    seed: int
    initial_variance: float = 1.0
    variance_decay: float = 0.55


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    # SplitMix64's finalizer: a bijection of uint64 with full avalanche (array ops wrap silently).
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _unit(bits: npt.NDArray[np.uint64]) -> FloatArray:
    # The top 53 bits as a float in (0, 1]: never 0, so log() below is finite.
    return ((bits >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53


def gaussian(seed: int, steps: Steps) -> FloatArray:
    """Standard normal numbers, one per step, a pure function of ``(seed, step)``.

    Counter-based: two SplitMix64 hashes of ``(seed, step)`` give two uniforms, Box–Muller one normal. The
    number for a step does not depend on which other steps are asked, nor in which order.
    """
    s = np.asarray(steps, dtype=np.int64).astype(np.uint64)
    key = _mix64(np.array([seed], dtype=np.uint64) ^ np.uint64(0x6C72736572766521))  # "lrserve!"
    ctr = s * np.uint64(2)
    u1 = _unit(_mix64(key + (ctr + np.uint64(1)) * _GOLDEN))
    u2 = _unit(_mix64(key + (ctr + np.uint64(2)) * _GOLDEN))
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2)


def linear_cosine(
    init: Column,
    *,
    period: int,
    num_periods: float = 0.5,
    alpha: float = 0.0,
    beta: float = 0.001,
    noise: Noise | None = None,
) -> ValueFn:
    """TF1's (noisy) linear cosine decay, with ``t = min(s, period)``::

        linear = (period - t) / period
        cos    = 0.5 * (1 + cos(pi * 2 * num_periods * t / period))
        lr     = init * ((alpha + linear + eps) * cos + beta)

    ``eps = 0`` without noise; with it ``eps ~ N(0, initial_variance / (1 + t) ** variance_decay)`` drawn by
    ``gaussian(seed, s)`` (the real step ``s``: past the period the deterministic part is held and the noise
    keeps its last variance, as in TF). The noisy value is clamped at 0 (TF would return a negative LR).
    """
    _positive("period", period)

    def lr(steps: Steps) -> Values:
        s = np.asarray(steps, dtype=np.int64)
        t = np.minimum(s, period).astype(np.float64)[None, :]
        linear = (period - t) / period
        cos = _half_cosine(2.0 * num_periods * t / period)
        if noise is None:
            return init * ((alpha + linear) * cos + beta)
        std = np.sqrt(noise.initial_variance / np.power(1.0 + t, noise.variance_decay))
        eps = std * gaussian(noise.seed, s)[None, :]
        return np.maximum(init * ((alpha + linear + eps) * cos + beta), 0.0)

    return lr


def sigmoid(init: Column, *, rate: float, center: int) -> ValueFn:
    """``init / (1 + exp(-rate * (s - center)))``, evaluated as ``exp(-|x|)`` so it never overflows."""

    def lr(steps: Steps) -> Values:
        x = rate * (_f(steps) - center)
        e = np.exp(-np.abs(x))
        return init * np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    return lr
