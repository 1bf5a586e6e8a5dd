"""Reading an LR range test: smoothing, divergence, suggested LRs, and the follow-up CLR / 1cycle schedule.

Pure numpy over the losses a range test reported, one per step in step order, with the LR of each step.

Smoothing (``smooth_f`` is the weight of the new loss, the ``LRRangeTest`` spec's field; fastai's
``beta = 1 - smooth_f``)::

    debiased (fastai's Recorder, AvgSmoothLoss):  avg[-1] = 0
        avg[i]      = beta * avg[i - 1] + (1 - beta) * loss[i]
        smoothed[i] = avg[i] / (1 - beta ** (i + 1))
    seeded (torch-lr-finder's range_test):
        smoothed[0] = loss[0];  smoothed[i] = smooth_f * loss[i] + (1 - smooth_f) * smoothed[i - 1]

``smooth_f == 0`` means no smoothing in both (fastai's ``beta = 1`` would be 0 / 0). ``debiased`` is the
default: the debiased average is a true weighted mean of the losses so far (weights summing to 1, decaying
geometrically), while the seeded one keeps a weight ``(1 - smooth_f) ** i`` on the first loss (0.36 after 20
steps at 0.05): when that loss lies off the plateau, the seeded curve drifts slowly and steadily through the
flat start, which ``valley`` then reads as the top of its valley (the property tests show it). ``seeded``
reproduces torch-lr-finder's history bit for bit, for comparisons with it.

Divergence (both libraries: torch-lr-finder ``diverge_th = 5``, fastai ``4``): the test stops at the first
step ``i`` whose loss or smoothed loss is not finite, or whose ``smoothed[i] > diverge_th * min(smoothed[:i+1])``.
The ratio rule needs a positive best (the libraries assume positive losses; with a best <= 0 it would stop
at once): while the best is <= 0 only a non-finite loss stops the test. The stopping step is part of the
history, as both libraries record it; losses reported after it are ignored.

Suggestions are read off the smoothed loss of that history (both libraries plot and suggest on the smoothed
loss), each rule on its reference's window: torch-lr-finder drops ``skip_start = 10`` points at the start and
``skip_end = 5`` at the end; fastai's ``lr_find`` drops ``num_steps // 10`` and 5. A non-finite point left in a
window (only possible with ``skip_end = 0``) ends the window there, as fastai does with NaN. Rules:

* ``steepest`` (torch-lr-finder ``LRFinder.plot``): ``argmin(np.gradient(window))``, the steepest fall per
  step (central differences, one-sided at the ends); ``None`` with fewer than 2 points.
* ``valley`` (fastai ``valley``, its ``lr_find`` default): the longest strictly decreasing
  subsequence of the window, first one of the greatest length, ending at ``end`` and ``L`` long;
  ``start = end - L`` and the pick is ``start + int(L / 3) + int(L / 3 / 2)``, about half-way down. Computed in
  ``O(n log n)`` (fastai loops ``O(n**2)``), same pick; fastai's pick wraps to the window's last point when it
  comes out -1 (``L == 2`` ending at the window's second point), and so does ours.
* ``minimum_div_10`` (fastai ``minimum``): one tenth of the LR at the window's lowest loss (first one on ties).
* ``clr_bounds`` (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017, section 3): ``upper``
  from one of the rules above (``valley`` by default: inside the fall, where the paper reads the bound off
  the curve as the point where the progress "slows"; or ``minimum``, the LR where the loss stops falling),
  ``lower = upper / lower_div`` (6 by default, the ratio of the paper's CIFAR-10 bounds 0.001 and 0.006; its
  rule of thumb is 3 to 4).

>>> import numpy as np
>>> lrs = np.geomspace(1e-5, 1.0, 100)
>>> loss = np.r_[np.full(30, 2.0), np.linspace(2.0, 0.5, 50), np.geomspace(0.5, 1e3, 20)]
>>> s = suggest(lrs, loss)
>>> s.stopped_at, s.valley is not None and 30 < s.valley.index < 90
(91, True)
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | FloatArray
Smoothing = Literal["debiased", "seeded"]
UpperRule = Literal["steepest", "valley", "minimum_div_10", "minimum"]
Policy = Literal["triangular", "triangular2", "exp_range", "one_cycle"]

DEFAULT_SMOOTH_F = 0.05  # the LRRangeTest spec's default (torch-lr-finder's); fastai's beta 0.98 is 0.02
DEFAULT_DIVERGE_TH = 5.0  # torch-lr-finder; fastai uses 4
DEFAULT_LOWER_DIV = 6.0

RULES: dict[str, str] = {
    "steepest": "torch-lr-finder: the LR where the smoothed loss falls fastest per step "
    "(argmin of np.gradient), skipping skip_start points at the start and skip_end at the end",
    "valley": "fastai's default: about half-way down the longest valley (longest strictly decreasing run "
    "of the smoothed loss), skipping num_steps // 10 points at the start and 5 at the end",
    "minimum_div_10": "fastai's minimum: one tenth of the LR at the lowest smoothed loss (same window as valley)",
    "clr_bounds": "Smith's CLR bounds: upper from a rule (valley by default), lower = upper / lower_div (6)",
}


# --- smoothing and divergence -------------------------------------------------------------------------------


def smooth_losses(
    losses: ArrayLike, *, smooth_f: float = DEFAULT_SMOOTH_F, method: Smoothing = "debiased"
) -> FloatArray:
    """The smoothed loss, step by step (see the module docstring for both rules).

    >>> smooth_losses([1.0, 2.0], smooth_f=0.5).tolist()  # debiased: (0.25 + 1.0) / 0.75
    [1.0, 1.6666666666666667]
    >>> smooth_losses([1.0, 2.0], smooth_f=0.5, method="seeded").tolist()
    [1.0, 1.5]
    """
    if not 0.0 <= smooth_f < 1.0:
        raise ValueError("smooth_f must be in [0, 1)")
    if method not in ("debiased", "seeded"):
        raise ValueError("method must be 'debiased' or 'seeded'")
    raw = np.asarray(losses, dtype=np.float64)
    if raw.ndim != 1:
        raise ValueError("losses must be one-dimensional")
    if smooth_f == 0.0:
        return raw.copy()
    out = np.empty_like(raw)
    # An exponential moving average is a sequential recurrence: a plain loop is exact and fast enough for the
    # lengths a range test has (a closed form through beta ** -i overflows for long tests).
    if method == "seeded":
        prev = 0.0
        for i, x in enumerate(raw.tolist()):
            prev = x if i == 0 else smooth_f * x + (1.0 - smooth_f) * prev
            out[i] = prev
    else:
        beta, avg, debias = 1.0 - smooth_f, 0.0, 1.0
        for i, x in enumerate(raw.tolist()):
            avg = beta * avg + (1.0 - beta) * x
            debias *= beta  # beta ** (i + 1), by repeated products as fastai's count does
            out[i] = avg / (1.0 - debias)
    return out


def divergence_index(
    smoothed: ArrayLike, *, diverge_th: float = DEFAULT_DIVERGE_TH, losses: ArrayLike | None = None
) -> int | None:
    """The step where the test stops: the first non-finite (raw or smoothed) loss, or the first smoothed loss
    above ``diverge_th`` times the best smoothed loss so far (that best > 0); ``None`` if none does.

    >>> divergence_index([3.0, 1.0, 2.0, 5.5], diverge_th=5.0)
    3
    """
    if not diverge_th > 1.0:
        raise ValueError("diverge_th must be > 1")
    s = np.asarray(smoothed, dtype=np.float64)
    bad = ~np.isfinite(s)
    if losses is not None:
        raw = np.asarray(losses, dtype=np.float64)
        if raw.shape != s.shape:
            raise ValueError("losses and smoothed must have the same length")
        bad |= ~np.isfinite(raw)
    stop = int(np.argmax(bad)) if bad.any() else s.size
    head = s[:stop]
    best = np.minimum.accumulate(head) if head.size else head
    over = (best > 0) & (head > diverge_th * best)
    if over.any():
        return int(np.argmax(over))
    return stop if stop < s.size else None


@dataclass(frozen=True)
class LossTrack:
    """Incremental form of the two functions above, for a server folding losses as they arrive.

    ``LossTrack().push(loss, smooth_f=..., ...)`` returns the next state; ``stopped_at`` is set on the push
    that diverges, and later pushes return the state unchanged. Folding a sequence gives exactly
    ``smooth_losses`` and ``divergence_index`` (a test checks it).
    """

    count: int = 0
    avg: float = 0.0
    debias: float = 1.0
    smoothed: float = math.nan
    best: float = math.inf
    stopped_at: int | None = None

    def push(
        self,
        loss: float,
        *,
        smooth_f: float = DEFAULT_SMOOTH_F,
        method: Smoothing = "debiased",
        diverge_th: float = DEFAULT_DIVERGE_TH,
    ) -> LossTrack:
        if self.stopped_at is not None:
            return self
        if not 0.0 <= smooth_f < 1.0:
            raise ValueError("smooth_f must be in [0, 1)")
        x, i = float(loss), self.count
        avg, debias = self.avg, self.debias
        if smooth_f == 0.0:
            value = x
        elif method == "seeded":
            value = x if i == 0 else smooth_f * x + (1.0 - smooth_f) * self.smoothed
        else:
            beta = 1.0 - smooth_f
            avg, debias = beta * avg + (1.0 - beta) * x, debias * beta
            value = avg / (1.0 - debias)
        stop: int | None = None
        best = self.best
        if not (math.isfinite(x) and math.isfinite(value)):
            stop = i
        else:
            best = min(best, value)
            if best > 0 and value > diverge_th * best:
                stop = i
        return LossTrack(i + 1, avg, debias, value, best, stop)


# --- suggestion rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """A rule's pick: ``lr = lrs[index] * factor`` (``factor`` 0.1 for ``minimum_div_10``, else 1).

    ``index`` is the step in the test's history the rule read; ``loss`` is the smoothed loss there, so
    ``(lrs[index], loss)`` is the point to mark on the plot.
    """

    rule: str
    lr: float
    index: int
    loss: float
    factor: float = 1.0

    def for_groups(self, group_lrs: Sequence[Sequence[float]]) -> list[float]:
        """The pick for each param group of a per-group test: ``group_lrs[g][index] * factor``."""
        return [float(row[self.index]) * self.factor for row in group_lrs]


@dataclass(frozen=True)
class ClrBounds:
    """The CLR bounds: ``upper`` from the rule ``upper_rule`` (read at ``index``), ``lower = upper / lower_div``."""

    lower: float
    upper: float
    upper_rule: str
    index: int
    lower_div: float
    factor: float = 1.0

    def for_groups(self, group_lrs: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
        """``(lower, upper)`` per param group of a per-group test."""
        upper = [float(row[self.index]) * self.factor for row in group_lrs]
        return [u / self.lower_div for u in upper], upper


def _window(values: FloatArray, skip_start: int, skip_end: int) -> tuple[int, FloatArray]:
    if skip_start < 0 or skip_end < 0:
        raise ValueError("skip_start and skip_end must be >= 0")
    win = values[skip_start : max(values.size - skip_end, 0)]
    bad = ~np.isfinite(win)
    if bad.any():
        win = win[: int(np.argmax(bad))]
    return skip_start, win


def _pick(rule: str, lrs: FloatArray, smoothed: FloatArray, index: int, factor: float = 1.0) -> Suggestion:
    return Suggestion(rule, float(lrs[index]) * factor, index, float(smoothed[index]), factor)


def steepest(lrs: ArrayLike, smoothed: ArrayLike, *, skip_start: int = 10, skip_end: int = 5) -> Suggestion | None:
    """torch-lr-finder's suggestion: ``argmin(np.gradient(smoothed[skip_start:-skip_end]))``."""
    x, y = _arrays(lrs, smoothed)
    offset, win = _window(y, skip_start, skip_end)
    if win.size < 2:  # np.gradient needs 2 (torch-lr-finder 0.2.2 raises there; its later code prints and skips)
        return None
    return _pick("steepest", x, y, offset + int(np.argmin(np.gradient(win))))


def valley(lrs: ArrayLike, smoothed: ArrayLike, *, skip_start: int = 0, skip_end: int = 5) -> Suggestion | None:
    """fastai's ``valley`` on ``smoothed[skip_start:-skip_end]`` (``lr_find`` uses ``skip_start = num_it // 10``)."""
    x, y = _arrays(lrs, smoothed)
    offset, win = _window(y, skip_start, skip_end)
    n = win.size
    if n == 0:
        return None
    # lds[i]: length of the longest strictly decreasing subsequence ending at i (patience sorting on -loss).
    tails: list[float] = []
    best_len, best_end = 0, 0
    for i, v in enumerate((-win).tolist()):
        k = bisect_left(tails, v)
        if k == len(tails):
            tails.append(v)
        else:
            tails[k] = v
        if k + 1 > best_len:  # strictly longer: fastai keeps the first end of the greatest length
            best_len, best_end = k + 1, i
    # fastai moves (max_start, max_end) only when some run beats the first point's length 1; else both stay 0
    start = best_end - best_len if best_len > 1 else 0
    sections = (best_end - start) / 3
    idx = start + int(sections) + int(sections / 2)
    if idx < 0:  # fastai indexes lrs[-1]: the window's last point
        idx += n
    return _pick("valley", x, y, offset + idx)


def minimum_div_10(lrs: ArrayLike, smoothed: ArrayLike, *, skip_start: int = 0, skip_end: int = 5) -> Suggestion | None:
    """fastai's ``minimum``: ``lrs[argmin(window)] / 10``, on the same window as ``valley``."""
    x, y = _arrays(lrs, smoothed)
    offset, win = _window(y, skip_start, skip_end)
    if win.size == 0:
        return None
    return _pick("minimum_div_10", x, y, offset + int(np.argmin(win)), 0.1)


def clr_bounds(
    upper: Suggestion | None, *, lower_div: float = DEFAULT_LOWER_DIV, rule: str | None = None
) -> ClrBounds | None:
    """CLR bounds from a suggestion: ``upper = upper.lr``, ``lower = upper / lower_div``; ``None`` without one."""
    if not lower_div > 1.0 or not math.isfinite(lower_div):
        raise ValueError("lower_div must be a finite number > 1")
    if upper is None:
        return None
    return ClrBounds(upper.lr / lower_div, upper.lr, rule or upper.rule, upper.index, float(lower_div), upper.factor)


def _arrays(lrs: ArrayLike, smoothed: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(lrs, dtype=np.float64)
    y = np.asarray(smoothed, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"lrs and losses must be one-dimensional and of the same length ({x.shape} vs {y.shape})")
    return x, y


# --- the whole reading ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestions:
    """Everything read off one range test: the plot data and each rule's pick (``None`` where undefined).

    ``lr``, ``loss`` and ``smoothed`` cover steps ``0 .. stopped_at`` (all steps when the test did not
    diverge): the plot of loss vs LR, log x. A non-finite loss at ``stopped_at`` is kept there as is.
    """

    lr: tuple[float, ...]
    loss: tuple[float, ...]
    smoothed: tuple[float, ...]
    stopped_at: int | None
    smoothing: Smoothing
    smooth_f: float
    diverge_th: float
    steepest: Suggestion | None
    valley: Suggestion | None
    minimum_div_10: Suggestion | None
    clr_bounds: ClrBounds | None

    def rule(self, name: UpperRule) -> Suggestion | None:
        """A rule's pick by name; ``minimum`` is the point ``minimum_div_10`` read, without the division."""
        if name == "minimum":
            m = self.minimum_div_10
            return None if m is None else Suggestion("minimum", self.lr[m.index], m.index, m.loss)
        picks: dict[str, Suggestion | None] = {
            "steepest": self.steepest,
            "valley": self.valley,
            "minimum_div_10": self.minimum_div_10,
        }
        if name not in picks:
            raise ValueError(f"unknown rule {name!r}: one of steepest, valley, minimum_div_10, minimum")
        return picks[name]


def suggest(
    lrs: ArrayLike,
    losses: ArrayLike,
    *,
    smooth_f: float = DEFAULT_SMOOTH_F,
    smoothing: Smoothing = "debiased",
    diverge_th: float = DEFAULT_DIVERGE_TH,
    num_steps: int | None = None,
    skip_start: int = 10,
    skip_end: int = 5,
    fastai_skip_end: int = 5,
    upper_rule: UpperRule = "valley",
    lower_div: float = DEFAULT_LOWER_DIV,
) -> Suggestions:
    """Smooth, find the stop, and apply every rule to a range test's history.

    ``lrs[i]`` and ``losses[i]`` are the LR and the raw loss of step ``i``. ``num_steps`` is the test's planned
    length (fastai's window starts at ``num_steps // 10``): pass the spec's; by default the number of losses
    given, which falls short of it when the worker stopped at the divergence. ``skip_start`` and ``skip_end``
    are torch-lr-finder's (``steepest``), ``fastai_skip_end`` is fastai's (``valley``, ``minimum_div_10``).
    ``upper_rule`` and ``lower_div`` give ``clr_bounds``.
    """
    x, raw = _arrays(lrs, losses)
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("lrs must be finite and > 0")
    planned = raw.size if num_steps is None else num_steps
    if planned < 0:
        raise ValueError("num_steps must be >= 0")
    smoothed = smooth_losses(raw, smooth_f=smooth_f, method=smoothing)
    stop = divergence_index(smoothed, diverge_th=diverge_th, losses=raw)
    end = raw.size if stop is None else stop + 1
    x, raw, smoothed = x[:end], raw[:end], smoothed[:end]
    fa_start = planned // 10
    picks = {
        "steepest": steepest(x, smoothed, skip_start=skip_start, skip_end=skip_end),
        "valley": valley(x, smoothed, skip_start=fa_start, skip_end=fastai_skip_end),
        "minimum_div_10": minimum_div_10(x, smoothed, skip_start=fa_start, skip_end=fastai_skip_end),
    }
    result = Suggestions(
        lr=tuple(x.tolist()),
        loss=tuple(raw.tolist()),
        smoothed=tuple(smoothed.tolist()),
        stopped_at=stop,
        smoothing=smoothing,
        smooth_f=float(smooth_f),
        diverge_th=float(diverge_th),
        steepest=picks["steepest"],
        valley=picks["valley"],
        minimum_div_10=picks["minimum_div_10"],
        clr_bounds=None,
    )
    bounds = clr_bounds(result.rule(upper_rule), lower_div=lower_div, rule=upper_rule)
    return replace(result, clr_bounds=bounds)


# --- the follow-up schedule ---------------------------------------------------------------------------------


def followup_schedule(
    bounds: ClrBounds,
    policy: Policy = "triangular",
    *,
    step_size_up: int | None = None,
    steps_per_epoch: int | None = None,
    half_cycle_epochs: float = 4.0,
    step_size_down: int | None = None,
    gamma: float | None = None,
    total_steps: int | None = None,
    pct_start: float | None = None,
    div_factor: float | None = None,
    anneal_strategy: Literal["cos", "linear"] | None = None,
    cycle_momentum: bool | None = None,
    group_lrs: Sequence[Sequence[float]] | None = None,
) -> dict[str, Any]:
    """The training schedule that follows a range test, as a torch-dialect spec mapping (``RunSpec.schedule``).

    * ``triangular`` / ``triangular2`` / ``exp_range``: ``CyclicLR`` from ``base_lr = lower`` to
      ``max_lr = upper``. ``step_size_up`` is in steps; without it, ``half_cycle_epochs * steps_per_epoch``
      (the CLR paper sets it to a few epochs' worth of steps; 4 epochs by default). ``exp_range`` needs
      ``gamma`` (< 1: the amplitude shrinks by ``gamma ** step``; the paper's CIFAR-10 run used 0.99994).
    * ``one_cycle``: ``OneCycleLR`` peaking at ``max_lr = upper`` over ``total_steps``. It starts at
      ``upper / div_factor`` (torch's 25 unless given; ``div_factor=bounds.lower_div`` starts at ``lower``).

    Options left ``None`` are left out (torch's defaults). With ``group_lrs`` (one LR row per param group, a
    per-group range test) the LRs are per-group lists read at the bounds' step.

    >>> b = ClrBounds(lower=0.01, upper=0.06, upper_rule="valley", index=40, lower_div=6.0)
    >>> followup_schedule(b, "triangular2", step_size_up=500)
    {'type': 'CyclicLR', 'base_lr': 0.01, 'max_lr': 0.06, 'step_size_up': 500, 'mode': 'triangular2'}
    >>> followup_schedule(b, "one_cycle", total_steps=1000)
    {'type': 'OneCycleLR', 'max_lr': 0.06, 'total_steps': 1000}
    """
    lower: float | list[float]
    upper: float | list[float]
    if group_lrs is None:
        lower, upper = bounds.lower, bounds.upper
    else:
        lower, upper = bounds.for_groups(group_lrs)
    spec: dict[str, Any]
    if policy == "one_cycle":
        if total_steps is None or total_steps < 1:
            raise ValueError("one_cycle needs total_steps >= 1")
        spec = {"type": "OneCycleLR", "max_lr": upper, "total_steps": int(total_steps)}
        options: dict[str, Any] = {
            "pct_start": pct_start,
            "div_factor": div_factor,
            "anneal_strategy": anneal_strategy,
            "cycle_momentum": cycle_momentum,
        }
    elif policy in ("triangular", "triangular2", "exp_range"):
        if step_size_up is None:
            if steps_per_epoch is None:
                raise ValueError("give step_size_up, or steps_per_epoch (step_size_up = half_cycle_epochs * it)")
            step_size_up = round(half_cycle_epochs * steps_per_epoch)
        if step_size_up < 1:
            raise ValueError("step_size_up must be >= 1")
        if policy == "exp_range" and gamma is None:
            raise ValueError("exp_range needs gamma (the amplitude shrinks by gamma ** step; e.g. 0.9999)")
        spec = {"type": "CyclicLR", "base_lr": lower, "max_lr": upper, "step_size_up": int(step_size_up)}
        spec["mode"] = policy
        options = {"step_size_down": step_size_down, "gamma": gamma, "cycle_momentum": cycle_momentum}
    else:
        raise ValueError(f"unknown policy {policy!r}: triangular, triangular2, exp_range or one_cycle")
    spec.update({k: v for k, v in options.items() if v is not None})
    return spec
