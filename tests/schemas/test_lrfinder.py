"""The range test's analysis (``core.lrfinder``) against the libraries it follows, and its properties.

References:

* torch-lr-finder (installed with the ``test`` extra): a real ``LRFinder.range_test`` fed a scripted loss
  sequence (a criterion that returns the next loss), its ``history`` and ``plot(suggest_lr=True)``.
* fastai: its rules transcribed below from ``fastai/callback/schedule.py`` (``valley``, ``minimum``,
  ``lr_find``'s window), ``fastai/learner.py`` (``AvgSmoothLoss``) and the ``LRFinder`` callback's stop
  rule, as loops; and, where fastai is importable (it is not in the ``test`` extra: it pulls in spaCy, pandas
  and torchvision), a real ``Learner.lr_find`` on the same scripted losses.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrserve.schemas import parse_spec
from lrserve.schemas.core import lrfinder as lf
from lrserve.schemas.core import rangetest
from tests.schemas.strategies_lrfinder import END_LR, START_LR, Curve, curves, loss_sequences, range_test_curve

PROPS = settings(max_examples=200, deadline=None)
CURVES = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
smooth_fs = st.sampled_from([0.0, 0.02, 0.05, 0.3]) | st.floats(0.001, 0.99)


# --- references, transcribed ----------------------------------------------------------------------------------


def fastai_smooth(losses: list[float], beta: float) -> list[float]:
    """fastai ``AvgSmoothLoss``: ``val = torch.lerp(loss, val, beta)``; value ``val / (1 - beta ** count)``."""
    val, out = 0.0, []
    for count, loss in enumerate(losses, start=1):
        val = loss + beta * (val - loss)
        out.append(val / (1 - beta**count))
    return out


def torch_lr_finder_smooth(losses: list[float], smooth_f: float) -> list[float]:
    """torch-lr-finder ``range_test``: the first loss as is, then ``smooth_f * loss + (1 - smooth_f) * last``."""
    out: list[float] = []
    for i, loss in enumerate(losses):
        out.append(loss if i == 0 or smooth_f == 0 else smooth_f * loss + (1 - smooth_f) * out[-1])
    return out


def naive_stop(losses: list[float], smoothed: list[float], th: float) -> int | None:
    best = math.inf
    for i, (x, s) in enumerate(zip(losses, smoothed, strict=True)):
        if not (math.isfinite(x) and math.isfinite(s)):
            return i
        best = min(best, s)
        if best > 0 and s > th * best:
            return i
    return None


def fastai_stop(smoothed: list[float], th: float = 4.0) -> int | None:
    """fastai ``LRFinder.after_batch`` (positive finite losses): best first, then ``smooth > 4 * best``."""
    best = math.inf
    for i, s in enumerate(smoothed):
        if s < best:
            best = s
        if s > th * best:
            return i
    return None


def fastai_valley(losses: list[float]) -> int:
    """fastai ``valley``, verbatim but returning the (possibly -1) index it reads ``lrs`` at."""
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def fastai_lr_find(lrs: list[float], smoothed: list[float], num_it: int) -> tuple[float, float]:
    """fastai ``lr_find``'s window ``[num_it // 10 : -5]`` cut at the first NaN, then (valley, minimum)."""
    w_lrs, w_loss = lrs[num_it // 10 : -5], smoothed[num_it // 10 : -5]
    nans = [i for i, v in enumerate(w_loss) if math.isnan(v)]
    if nans:
        w_lrs, w_loss = w_lrs[: nans[0]], w_loss[: nans[0]]
    return w_lrs[fastai_valley(w_loss)], w_lrs[int(np.argmin(w_loss))] / 10


def fastai_grid(n: int) -> np.ndarray:
    """fastai ``SchedExp`` at ``pos = i / num_it``."""
    return START_LR * (END_LR / START_LR) ** (np.arange(n) / n)


# --- smoothing ----------------------------------------------------------------------------------------------


@PROPS
@given(loss_sequences(), smooth_fs)
def test_debiased_smoothing_is_fastais(losses: list[float], smooth_f: float) -> None:
    got = lf.smooth_losses(losses, smooth_f=smooth_f)
    want = losses if smooth_f == 0 else fastai_smooth(losses, 1 - smooth_f)
    scale = max((abs(x) for x in losses), default=1.0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * scale)


@PROPS
@given(loss_sequences(min_size=1, max_size=40), st.floats(0.01, 0.9))
def test_debiased_smoothing_is_a_weighted_mean(losses: list[float], smooth_f: float) -> None:
    beta = 1 - smooth_f
    got = lf.smooth_losses(losses, smooth_f=smooth_f)
    x = np.asarray(losses)
    for i in range(x.size):
        w = (1 - beta) * beta ** (i - np.arange(i + 1))
        np.testing.assert_allclose(w.sum(), 1 - beta ** (i + 1), rtol=1e-12)
        np.testing.assert_allclose(got[i], (w @ x[: i + 1]) / w.sum(), rtol=1e-9, atol=1e-9 * max(1, abs(x).max()))
    np.testing.assert_allclose(lf.smooth_losses([2.5] * 30, smooth_f=smooth_f), 2.5, rtol=1e-12)


@PROPS
@given(loss_sequences(finite=False), smooth_fs)
def test_seeded_smoothing_is_torch_lr_finders_bit_for_bit(losses: list[float], smooth_f: float) -> None:
    got = lf.smooth_losses(losses, smooth_f=smooth_f, method="seeded")
    np.testing.assert_array_equal(got, torch_lr_finder_smooth(losses, smooth_f))


def test_smoothing_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="smooth_f"):
        lf.smooth_losses([1.0], smooth_f=1.0)
    with pytest.raises(ValueError, match="method"):
        lf.smooth_losses([1.0], method="ema")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one-dimensional"):
        lf.smooth_losses([[1.0]])  # type: ignore[list-item]


# --- divergence ---------------------------------------------------------------------------------------------


@PROPS
@given(loss_sequences(finite=False), smooth_fs, st.sampled_from(["debiased", "seeded"]), st.floats(1.01, 10.0))
def test_divergence_is_the_first_step_over_the_threshold(
    losses: list[float], smooth_f: float, method: lf.Smoothing, th: float
) -> None:
    smoothed = lf.smooth_losses(losses, smooth_f=smooth_f, method=method)
    stop = lf.divergence_index(smoothed, diverge_th=th, losses=losses)
    assert stop == naive_stop(losses, smoothed.tolist(), th)
    end = len(losses) if stop is None else stop
    best = np.minimum.accumulate(smoothed[:end]) if end else smoothed[:0]
    assert np.all(np.isfinite(smoothed[:end]))
    assert not np.any((best > 0) & (smoothed[:end] > th * best))  # nothing before the stop qualifies


@PROPS
@given(loss_sequences(finite=False), smooth_fs, st.sampled_from(["debiased", "seeded"]), st.floats(1.01, 10.0))
def test_incremental_track_folds_to_the_batch_functions(
    losses: list[float], smooth_f: float, method: lf.Smoothing, th: float
) -> None:
    track = lf.LossTrack()
    values = []
    for loss in losses:
        track = track.push(loss, smooth_f=smooth_f, method=method, diverge_th=th)
        if track.stopped_at is None or track.count == len(values) + 1:
            values.append(track.smoothed)
    smoothed = lf.smooth_losses(losses, smooth_f=smooth_f, method=method)
    stop = lf.divergence_index(smoothed, diverge_th=th, losses=losses)
    assert track.stopped_at == stop
    end = len(losses) if stop is None else stop + 1
    np.testing.assert_array_equal(values[:end], smoothed[:end])


@PROPS
@given(st.lists(st.floats(0.01, 100.0), max_size=60), st.floats(0.001, 0.5))
def test_stop_rule_is_fastais_on_positive_losses(losses: list[float], smooth_f: float) -> None:
    smoothed = fastai_smooth(losses, 1 - smooth_f)
    assert lf.divergence_index(smoothed, diverge_th=4.0) == fastai_stop(smoothed, 4.0)


def test_non_finite_losses_and_non_positive_best() -> None:
    assert lf.divergence_index([1.0, 1.0, math.nan, 1.0], losses=[1.0, 1.0, math.nan, 1.0]) == 2
    assert lf.divergence_index([1.0, 1.0, 1.0], losses=[1.0, math.inf, 1.0]) == 1  # raw inf, smoothing aside
    assert lf.divergence_index([1.0, math.inf]) == 1
    assert lf.divergence_index([-1.0, -0.5, 3.0, 10.0]) is None  # best <= 0: only non-finite stops
    assert lf.divergence_index([3.0, 1.0, 5.0, 5.01]) == 3  # strictly above 5 * best
    assert lf.divergence_index([]) is None
    with pytest.raises(ValueError, match="diverge_th"):
        lf.divergence_index([1.0], diverge_th=1.0)


# --- the rules against their references ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(loss_sequences(max_size=80))
def test_valley_picks_fastais_index(losses: list[float]) -> None:
    lrs = np.geomspace(1e-6, 1.0, len(losses)) if losses else np.empty(0)
    got = lf.valley(lrs, losses, skip_start=0, skip_end=0)
    if not losses:
        assert got is None
        return
    want = fastai_valley(losses) % len(losses)
    assert got is not None
    assert got.index == want
    assert got.lr == lrs[want]


@PROPS
@given(loss_sequences(max_size=80), st.integers(0, 12), st.integers(0, 8))
def test_minimum_div_10_is_fastais_minimum(losses: list[float], skip_start: int, skip_end: int) -> None:
    lrs = np.geomspace(1e-6, 1.0, len(losses)) if losses else np.empty(0)
    got = lf.minimum_div_10(lrs, losses, skip_start=skip_start, skip_end=skip_end)
    window = losses[skip_start : max(len(losses) - skip_end, 0)]
    if not window:
        assert got is None
        return
    i = skip_start + int(np.argmin(window))
    assert got == lf.Suggestion("minimum_div_10", lrs[i] * 0.1, i, losses[i], 0.1)


def _torch_lr_finder_run(losses: np.ndarray, *, mode: str = "exp", smooth_f: float = 0.05, th: float = 5.0) -> Any:
    """A real torch-lr-finder range test whose criterion returns the scripted losses, one per batch."""
    torch = pytest.importorskip("torch")
    tlf = pytest.importorskip("torch_lr_finder")
    data = pytest.importorskip("torch.utils.data")

    n = losses.size
    model = torch.nn.Linear(1, 1, bias=False).double()
    script = iter(losses.tolist())

    def criterion(out: Any, _: Any) -> Any:
        return out.sum() * 0.0 + next(script)  # float64 all along: .item() returns the scripted value

    zeros = torch.zeros(n, 1, dtype=torch.float64)
    loader = data.DataLoader(data.TensorDataset(zeros, zeros), batch_size=1)
    finder = tlf.LRFinder(model, torch.optim.SGD(model.parameters(), lr=START_LR), criterion, device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(loader, end_lr=END_LR, num_iter=n, step_mode=mode, smooth_f=smooth_f, diverge_th=th)
    return finder


def _torch_lr_finder_suggestion(finder: Any, skip_start: int, skip_end: int) -> float | None:
    from matplotlib.figure import Figure  # Figure needs no GUI backend

    ax = Figure().add_subplot()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # matplotlib: legend without labelled artists, log axis of few points
        if len(finder.history["lr"]) < skip_start + skip_end + 2:  # where 0.2.2's plot raises "Need at least"
            with pytest.raises(RuntimeError, match="Need at least"):
                finder.plot(skip_start=skip_start, skip_end=skip_end, ax=ax, suggest_lr=True)
            return None
        out = finder.plot(skip_start=skip_start, skip_end=skip_end, ax=ax, suggest_lr=True)
    return float(out[1])


TLF_CASES = [
    ({"n": 100, "fall_start": 30, "fall_end": 70, "noise": 0.03, "seed": 1}, 10, 5),
    ({"n": 200, "fall_start": 60, "fall_end": 150, "noise": 0.05, "seed": 2}, 10, 5),
    ({"n": 300, "fall_start": 40, "fall_end": 200, "noise": 0.02, "drop": 0.6, "seed": 3}, 10, 5),
    ({"n": 200, "fall_start": 50, "fall_end": 120, "noise": 0.0, "seed": 4}, 0, 0),
    ({"n": 150, "fall_start": 20, "fall_end": 100, "noise": 0.04, "rise": 0.4, "seed": 5}, 20, 10),
    ({"n": 120, "fall_start": 30, "fall_end": 119, "noise": 0.03, "seed": 6}, 10, 5),  # never diverges
    # diverges at step 18: the window [12:-5] has 2 points (the fewest np.gradient takes); [13:-5] has 1: none
    ({"n": 40, "fall_start": 2, "fall_end": 12, "noise": 0.02, "rise": 1.0, "seed": 7}, 12, 5),
    ({"n": 40, "fall_start": 2, "fall_end": 12, "noise": 0.02, "rise": 1.0, "seed": 7}, 13, 5),
]


@pytest.mark.parametrize(("params", "skip_start", "skip_end"), TLF_CASES)
def test_steepest_and_tracking_match_torch_lr_finder(params: dict[str, Any], skip_start: int, skip_end: int) -> None:
    curve = range_test_curve(**params)
    finder = _torch_lr_finder_run(curve.losses)
    h_lr, h_loss = np.asarray(finder.history["lr"]), np.asarray(finder.history["loss"])

    s = lf.suggest(curve.lrs, curve.losses, smoothing="seeded", skip_start=skip_start, skip_end=skip_end)
    n = len(h_loss)
    assert s.stopped_at == (None if n == curve.losses.size else n - 1)
    np.testing.assert_array_equal(s.smoothed, h_loss)  # the history torch-lr-finder plots, bit for bit
    np.testing.assert_allclose(s.lr, h_lr, rtol=1e-12)

    want = _torch_lr_finder_suggestion(finder, skip_start, skip_end)
    if want is None:
        assert s.steepest is None
        return
    assert s.steepest is not None
    j = int(np.argmin(np.abs(np.log(h_lr) - math.log(want))))
    assert abs(s.steepest.index - j) <= 1  # the bar: one grid step; in fact the same step
    assert s.steepest.lr == want


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_range_test_grid_is_torch_lr_finders(mode: Literal["exp", "linear"]) -> None:
    n = 50
    finder = _torch_lr_finder_run(np.full(n, 1.0), mode=mode, smooth_f=0.0)
    lr = rangetest.lr_range(np.array([[START_LR]]), np.array([[END_LR]]), num_steps=n, mode=mode)
    np.testing.assert_allclose(lr(np.arange(n))[0], finder.history["lr"], rtol=1e-12)


@CURVES
@given(curves())
def test_valley_and_minimum_match_fastais_lr_find_pipeline(curve: Curve) -> None:
    n = curve.losses.size
    lrs = fastai_grid(n).tolist()
    smoothed = fastai_smooth(curve.losses.tolist(), 0.98)
    stop = fastai_stop(smoothed)
    end = n if stop is None else stop + 1
    want_valley, want_min = fastai_lr_find(lrs[:end], smoothed[:end], n)

    s = lf.suggest(lrs, curve.losses, smooth_f=0.02, diverge_th=4.0)
    assert s.stopped_at == stop
    assert s.valley is not None
    assert s.minimum_div_10 is not None
    # The same step but for rounding: fastai's lerp and our update differ in the last bit, which can reorder
    # two near-equal smoothed losses; the bar is one grid step.
    step = math.log(END_LR / START_LR) / n
    assert abs(math.log(s.valley.lr / want_valley)) <= step * 1.0001
    assert abs(math.log(s.minimum_div_10.lr / want_min)) <= step * 1.0001


FASTAI_CASES = [
    {"n": 100, "fall_start": 30, "fall_end": 70, "noise": 0.03, "seed": 11},
    {"n": 200, "fall_start": 60, "fall_end": 150, "noise": 0.05, "seed": 12},
    {"n": 300, "fall_start": 40, "fall_end": 200, "noise": 0.02, "drop": 0.6, "seed": 13},
]


@pytest.mark.parametrize("params", FASTAI_CASES)
def test_valley_and_minimum_match_a_real_fastai_lr_find(params: dict[str, Any], tmp_path: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pytest.importorskip("fastai", reason="fastai is not in the test extra (heavy); parity checked by hand")
        import torch
        from fastai.callback.schedule import minimum, valley
        from fastai.data.core import DataLoaders
        from fastai.data.load import DataLoader
        from fastai.learner import Learner
        from fastai.optimizer import SGD

    curve = range_test_curve(**params)
    n = curve.losses.size
    script = iter(curve.losses.tolist())

    def criterion(out: Any, _: Any) -> Any:
        return out.sum() * 0.0 + next(script)

    items = [(torch.zeros(1), torch.zeros(1)) for _ in range(n + 10)]
    dls = DataLoaders(DataLoader(items, bs=1), DataLoader(items[:2], bs=1), device="cpu")
    learn = Learner(dls, torch.nn.Linear(1, 1, bias=False), loss_func=criterion, opt_func=SGD, path=tmp_path)
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        got = learn.lr_find(
            start_lr=START_LR, end_lr=END_LR, num_it=n, show_plot=False, suggest_funcs=(valley, minimum)
        )
    lrs = np.array([float(v) for v in learn.recorder.lrs])
    recorded = len(learn.recorder.losses)

    s = lf.suggest(lrs, curve.losses[:recorded], smooth_f=0.02, diverge_th=4.0, num_steps=n)
    np.testing.assert_allclose(s.smoothed, [float(v) for v in learn.recorder.losses], rtol=1e-5)  # float32
    assert s.stopped_at == (None if recorded == n else recorded - 1)
    assert s.valley is not None
    assert s.minimum_div_10 is not None
    step = math.log(lrs[1] / lrs[0])
    assert abs(math.log(s.valley.lr / got.valley)) <= step * 1.0001  # within one grid step
    assert abs(math.log(s.minimum_div_10.lr / got.minimum)) <= step * 1.0001


# --- properties ---------------------------------------------------------------------------------------------


@CURVES
@given(curves(), st.sampled_from(["debiased", "seeded"]))
def test_suggestions_lie_where_the_smoothed_loss_fell(curve: Curve, method: lf.Smoothing) -> None:
    """On a clear range test every pick is in ``[fall_start, argmin(smoothed)]``: after the flat start, not past
    the lowest smoothed loss. ``valley`` gets one step of slack (the half-cosine fall is flat at its very
    start); with ``seeded`` smoothing it is not checked: when the first loss happens to lie above the plateau,
    the seeded average drifts down all through the flat start, and the longest descent then starts at step 0.
    """
    s = lf.suggest(curve.lrs, curve.losses, smoothing=method)
    low = int(np.argmin(s.smoothed))
    assert s.steepest is not None
    assert s.valley is not None
    assert s.minimum_div_10 is not None
    assert curve.fall_start <= s.steepest.index <= low
    assert curve.fall_start <= s.minimum_div_10.index <= low
    if method == "debiased":
        assert curve.fall_start - 1 <= s.valley.index <= low
        assert s.clr_bounds is not None
        assert s.clr_bounds.index == s.valley.index
    assert s.stopped_at is None or s.stopped_at > low


@PROPS
@given(loss_sequences(finite=False, max_size=80), st.integers(0, 12), st.integers(0, 8))
def test_rules_on_arbitrary_sequences(losses: list[float], skip_start: int, skip_end: int) -> None:
    lrs = np.geomspace(1e-6, 1.0, len(losses)) if losses else np.empty(0)
    y = np.asarray(losses, dtype=np.float64)
    win = y[skip_start : max(y.size - skip_end, 0)]
    if (~np.isfinite(win)).any():
        win = win[: int(np.argmax(~np.isfinite(win)))]
    steep = lf.steepest(lrs, y, skip_start=skip_start, skip_end=skip_end)
    val = lf.valley(lrs, y, skip_start=skip_start, skip_end=skip_end)
    mini = lf.minimum_div_10(lrs, y, skip_start=skip_start, skip_end=skip_end)
    assert (steep is None) == (win.size < 2)
    assert (val is None) == (mini is None) == (win.size == 0)
    for pick in (steep, val, mini):
        if pick is not None:
            assert skip_start <= pick.index < skip_start + win.size
            assert pick.lr == pytest.approx(lrs[pick.index] * pick.factor, rel=1e-15)
    if steep is not None:
        grad = np.gradient(win)
        assert grad[steep.index - skip_start] == grad.min()
        if grad.min() < 0:  # the loss falls at the steepest point
            assert win[min(steep.index - skip_start + 1, win.size - 1)] < win[max(steep.index - skip_start - 1, 0)]
    if mini is not None:
        assert y[mini.index] == win.min()


def test_undefined_rules_are_none() -> None:
    short = lf.suggest([1e-4, 1e-3, 1e-2], [1.0, 0.9, 0.8])
    assert short.steepest is None
    assert short.valley is None
    assert short.minimum_div_10 is None
    assert short.clr_bounds is None
    assert short.stopped_at is None
    empty = lf.suggest([], [])
    assert empty.lr == ()
    assert empty.steepest is None
    assert empty.rule("minimum") is None


def test_num_steps_sets_fastais_window() -> None:
    curve = range_test_curve(200, fall_start=5, fall_end=150, rise=0.3, noise=0.01)
    early = lf.suggest(curve.lrs, curve.losses, num_steps=0)
    late = lf.suggest(curve.lrs, curve.losses, num_steps=1000)  # window starts at step 100
    assert early.valley is not None
    assert late.valley is not None
    assert early.valley.index < 100 <= late.valley.index


def test_suggest_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        lf.suggest([1e-3, 1e-2], [1.0])
    with pytest.raises(ValueError, match="lrs must be finite"):
        lf.suggest([0.0, 1e-2], [1.0, 1.0])
    with pytest.raises(ValueError, match="skip_start"):
        lf.steepest([1.0], [1.0], skip_start=-1)
    with pytest.raises(ValueError, match="unknown rule"):
        lf.suggest([1.0], [1.0]).rule("slide")  # type: ignore[arg-type]


def test_plot_data_and_stop() -> None:
    curve = range_test_curve(200, seed=21)
    s = lf.suggest(curve.lrs, curve.losses)
    assert s.stopped_at is not None
    assert len(s.lr) == len(s.loss) == len(s.smoothed) == s.stopped_at + 1
    assert s.loss == tuple(curve.losses[: s.stopped_at + 1].tolist())
    assert s.smoothing == "debiased"
    assert s.smooth_f == 0.05
    assert s.diverge_th == 5.0
    nan = np.r_[curve.losses[:120], math.nan, curve.losses[121:]]
    s_nan = lf.suggest(curve.lrs, nan)
    assert s_nan.stopped_at == 120
    assert math.isnan(s_nan.loss[-1])
    assert s_nan.valley is not None
    assert s_nan.valley.index < 120 - 5


# --- CLR bounds and the follow-up schedule ------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["steepest", "valley", "minimum_div_10", "minimum"])
def test_clr_bounds_from_each_rule(rule: lf.UpperRule) -> None:
    curve = range_test_curve(200, seed=31)
    s = lf.suggest(curve.lrs, curve.losses, upper_rule=rule, lower_div=4.0)
    b, pick = s.clr_bounds, s.rule(rule)
    assert b is not None
    assert pick is not None
    assert (b.upper, b.lower, b.index, b.upper_rule) == (pick.lr, pick.lr / 4.0, pick.index, rule)
    if rule == "minimum":
        assert s.minimum_div_10 is not None
        assert b.upper == s.lr[s.minimum_div_10.index]
    with pytest.raises(ValueError, match="lower_div"):
        lf.clr_bounds(pick, lower_div=1.0)


def _validates(schedule: dict[str, Any], groups: int = 1) -> Any:
    return parse_spec({"param_groups": [{"name": f"g{i}"} for i in range(groups)], "schedule": schedule}).schedule


BOUNDS = lf.ClrBounds(lower=0.01, upper=0.06, upper_rule="valley", index=3, lower_div=6.0)


@pytest.mark.parametrize("policy", ["triangular", "triangular2", "exp_range"])
def test_cyclic_followups_validate(policy: lf.Policy) -> None:
    spec = lf.followup_schedule(BOUNDS, policy, steps_per_epoch=50, gamma=0.999 if policy == "exp_range" else None)
    parsed = _validates(spec)
    assert type(parsed).__name__ == "CyclicLR"
    assert (parsed.base_lr, parsed.max_lr, parsed.step_size_up, parsed.mode) == (0.01, 0.06, 200, policy)


def test_one_cycle_followup_validates() -> None:
    spec = lf.followup_schedule(BOUNDS, "one_cycle", total_steps=1000, div_factor=BOUNDS.lower_div, pct_start=0.25)
    parsed = _validates(spec)
    assert type(parsed).__name__ == "OneCycleLR"
    assert (parsed.max_lr, parsed.total_steps, parsed.div_factor, parsed.pct_start) == (0.06, 1000, 6.0, 0.25)
    assert parsed.max_lr / parsed.div_factor == pytest.approx(BOUNDS.lower)


def test_followup_per_group_and_from_a_whole_test() -> None:
    curve = range_test_curve(200, seed=41)
    s = lf.suggest(curve.lrs, curve.losses)
    assert s.clr_bounds is not None
    rows = [curve.lrs.tolist(), (curve.lrs * 10).tolist()]
    spec = lf.followup_schedule(s.clr_bounds, "triangular", step_size_up=400, group_lrs=rows)
    parsed = _validates(spec, groups=2)
    assert parsed.max_lr == [pytest.approx(s.clr_bounds.upper), pytest.approx(10 * s.clr_bounds.upper)]
    assert parsed.base_lr == [pytest.approx(s.clr_bounds.lower), pytest.approx(10 * s.clr_bounds.lower)]
    assert s.minimum_div_10 is not None
    assert s.minimum_div_10.for_groups(rows)[1] == pytest.approx(10 * s.minimum_div_10.lr)
    _validates(lf.followup_schedule(s.clr_bounds, "one_cycle", total_steps=500, group_lrs=rows), groups=2)


def test_followup_rejects_incomplete_requests() -> None:
    with pytest.raises(ValueError, match="total_steps"):
        lf.followup_schedule(BOUNDS, "one_cycle")
    with pytest.raises(ValueError, match="steps_per_epoch"):
        lf.followup_schedule(BOUNDS, "triangular")
    with pytest.raises(ValueError, match="gamma"):
        lf.followup_schedule(BOUNDS, "exp_range", step_size_up=10)
    with pytest.raises(ValueError, match="step_size_up"):
        lf.followup_schedule(BOUNDS, "triangular", step_size_up=0)
    with pytest.raises(ValueError, match="unknown policy"):
        lf.followup_schedule(BOUNDS, "cosine")  # type: ignore[arg-type]
