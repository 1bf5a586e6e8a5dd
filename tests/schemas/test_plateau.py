"""ReduceLROnPlateau: parity with the real torch scheduler and Keras callback, and properties of the layering.

The reference is driven as a training loop drives it: at each step s the LR in force is recorded, then the
metrics reported for s (if any) are fed, so a reduction caused by the metric at step m shows from m + 1 on.
"""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrserve.schemas import evaluate, parse_spec, replay_plateau
from lrserve.schemas.core import plateau as core
from lrserve.schemas.errors import SpecInvalid
from lrserve.schemas.evaluate import build
from lrserve.schemas.specs.plateau import PlateauSpec
from tests.schemas.strategies_plateau import History, base_lrs, histories, keras_plateau, torch_plateau

PARITY = settings(max_examples=150, deadline=None)


def _by_step(history: History) -> dict[int, list[float]]:
    out: dict[int, list[float]] = defaultdict(list)
    for step, value in history:
        out[step].append(value)
    return out


def _horizon(history: History) -> int:
    return max(s for s, _ in history) + 3


def torch_lrs(lrs: Sequence[float], kwargs: dict[str, Any], history: History) -> np.ndarray:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs, strict=True)])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    n, feed = _horizon(history), _by_step(history)
    out = np.empty((len(lrs), n))
    for s in range(n):
        out[:, s] = [g["lr"] for g in opt.param_groups]
        for value in feed.get(s, []):
            sched.step(value)
    return out


def ours(lrs: Sequence[float], plateau: dict[str, Any], history: History, metric: str = "loss") -> np.ndarray:
    spec = parse_spec(
        {
            "param_groups": [{"name": f"g{i}", "lr": lr} for i, lr in enumerate(lrs)],
            "schedule": {"type": "ReduceLROnPlateau", "metric": metric, **plateau},
        }
    )
    steps = np.arange(_horizon(history))
    return evaluate(spec, steps, metrics=[(s, metric, v) for s, v in history])


# ---- torch -----------------------------------------------------------------------------------------------------


@PARITY
@given(st.data(), base_lrs, st.booleans())
def test_torch_parity_positive_metrics(data: st.DataObject, lrs: list[float], rel: bool) -> None:
    kwargs = data.draw(torch_plateau(len(lrs), threshold_mode="rel" if rel else "abs"))
    history = data.draw(histories(positive=True))
    np.testing.assert_allclose(ours(lrs, kwargs, history), torch_lrs(lrs, kwargs, history), rtol=1e-12, atol=0)


@PARITY
@given(st.data(), base_lrs)
def test_torch_parity_abs_threshold_any_sign(data: st.DataObject, lrs: list[float]) -> None:
    """In ``abs`` mode the sign of the metric does not matter: torch's rule is ours."""
    kwargs = data.draw(torch_plateau(len(lrs), threshold_mode="abs"))
    history = data.draw(histories(positive=False))
    np.testing.assert_allclose(ours(lrs, kwargs, history), torch_lrs(lrs, kwargs, history), rtol=1e-12, atol=0)


def test_torch_parity_examples() -> None:
    """Hand-written cases: patience counted from the baseline, cooldown, eps, a group held at min_lr."""
    cases: list[tuple[list[float], dict[str, Any], list[float]]] = [
        ([0.1], {"patience": 0}, [1.0, 1.0, 1.0, 0.5, 0.6, 0.6]),
        ([0.1, 1.0], {"patience": 2, "cooldown": 2, "min_lr": [0.05, 0.0]}, [1.0] * 20),
        ([1e-7], {"patience": 0, "eps": 1e-8}, [1.0] * 5),
        ([0.1], {"mode": "max", "patience": 1, "threshold": 0.1}, [1.0, 1.05, 1.09, 1.2, 1.2, 1.2]),
        ([0.1], {"patience": 1}, [math.nan, 1.0, math.nan, math.nan, 0.5, math.inf, math.inf]),
        ([0.1], {"patience": 1, "threshold": 1.0}, [1.0, 0.5, 0.1, 0.0, -1.0]),
    ]
    for lrs, kwargs, values in cases:
        history = list(enumerate(values))
        np.testing.assert_allclose(ours(lrs, kwargs, history), torch_lrs(lrs, kwargs, history), rtol=1e-12)


def test_negative_metrics_rel_threshold_differ_from_torch_by_design() -> None:
    """torch's ``best * (1 - threshold)`` loosens the bar for a negative best (pytorch#47513): a flat negative
    loss never plateaus there, and a worsening one counts as improving. We require a real improvement."""
    kwargs = {"mode": "min", "patience": 2, "threshold": 1e-2, "threshold_mode": "rel"}
    flat = [(s, -1.0) for s in range(10)]
    theirs, mine = torch_lrs([0.1], kwargs, flat), ours([0.1], kwargs, flat)
    assert np.all(theirs == 0.1)  # torch: -1 < -1 * 0.99 = -0.99 is "better", every time
    assert mine[0, 4] == pytest.approx(0.01)  # ours: baseline, 3 bad values, reduced from step 4
    # The flat negative loss plateaus exactly as a flat positive one does in torch.
    flat_positive = [(s, 1.0) for s in range(10)]
    np.testing.assert_allclose(mine, torch_lrs([0.1], kwargs, flat_positive), rtol=1e-12)
    # Worsening negative values: torch takes each as an improvement (best ratchets up); we do not.
    worse = [(s, -1.0 + 0.005 * s) for s in range(10)]
    assert np.all(torch_lrs([0.1], kwargs, worse) == 0.1)
    assert ours([0.1], kwargs, worse)[0, -1] < 0.1


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(["min", "max"]), st.floats(0.0, 0.9))
def test_rel_threshold_is_sign_symmetric(data: st.DataObject, mode: str, threshold: float) -> None:
    """Minimizing x is maximizing -x, whatever the sign of x: the rule torch documents, for every metric."""
    history = data.draw(histories(positive=False))
    other = "max" if mode == "min" else "min"
    a = ours([0.1], {"mode": mode, "threshold": threshold, "patience": 1}, history)
    b = ours([0.1], {"mode": other, "threshold": threshold, "patience": 1}, [(s, -v) for s, v in history])
    np.testing.assert_array_equal(a, b)


# ---- Keras -----------------------------------------------------------------------------------------------------


def keras_reference(lr: float, kwargs: dict[str, Any], history: History, num_groups: int = 1) -> np.ndarray:
    """Keras 3.15's callback, rewritten from its source (``on_epoch_end``, ``MonitorCallback._is_improvement``):
    float32 LR variables, comparisons in float32, the first value always an improvement."""
    lrs = [np.float32(lr)] * num_groups
    min_lr, factor = kwargs["min_lr"], kwargs["factor"]
    less = kwargs["mode"] == "min"
    delta = -abs(kwargs["min_delta"]) if less else abs(kwargs["min_delta"])
    best: float | None = None
    wait = cooldown_counter = 0
    n, feed = _horizon(history), _by_step(history)
    out = np.empty((num_groups, n))
    with np.errstate(over="ignore"):
        for s in range(n):
            out[:, s] = lrs
            for current in feed.get(s, []):
                if cooldown_counter > 0:
                    cooldown_counter -= 1
                    wait = 0
                moved = np.float32(current - delta)
                if best is None or (moved < np.float32(best) if less else moved > np.float32(best)):
                    best, wait = current, 0
                elif cooldown_counter <= 0:
                    wait += 1
                    if wait >= kwargs["patience"]:
                        reduced = False
                        for g, old in enumerate(lrs):
                            if float(old) > np.float32(min_lr):
                                lrs[g] = np.float32(max(float(old) * factor, min_lr))
                                reduced = True
                        if reduced:
                            cooldown_counter, wait = kwargs["cooldown"], 0
    return out


def _ours_keras(lr: float, kwargs: dict[str, Any], history: History, num_groups: int = 1) -> np.ndarray:
    return ours([lr] * num_groups, {"style": "keras", **kwargs}, history, metric="val_loss")


@PARITY
@given(st.data(), st.sampled_from([0.1, 1.0, 0.01, 3e-4]) | st.floats(1e-4, 1.0), st.integers(1, 3))
def test_keras_rules_parity(data: st.DataObject, lr: float, groups: int) -> None:
    kwargs = data.draw(keras_plateau())
    history = data.draw(histories(positive=data.draw(st.booleans())))
    np.testing.assert_allclose(
        _ours_keras(lr, kwargs, history, groups), keras_reference(lr, kwargs, history, groups), rtol=1e-5, atol=1e-30
    )


@pytest.fixture(scope="module")
def keras_module() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


class _FakeModel:
    """What the callback touches: ``optimizer`` (with ``optimizers`` for several groups) and ``metrics``."""

    def __init__(self, keras: Any, lr: float, num_groups: int) -> None:
        optimizers = [keras.optimizers.SGD(learning_rate=lr) for _ in range(num_groups)]
        self.metrics: list[Any] = []
        self._to_numpy = keras.ops.convert_to_numpy
        if num_groups == 1:
            self.optimizer = optimizers[0]
        else:
            self.optimizer = type("Multi", (), {"optimizers": optimizers})()

    def lrs(self) -> list[float]:
        opts = getattr(self.optimizer, "optimizers", [self.optimizer])
        return [float(self._to_numpy(o.learning_rate)) for o in opts]


def keras_lrs(keras: Any, lr: float, kwargs: dict[str, Any], history: History, num_groups: int = 1) -> np.ndarray:
    model = _FakeModel(keras, lr, num_groups)
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", **kwargs)
    callback.set_model(model)
    callback.on_train_begin()
    n, feed = _horizon(history), _by_step(history)
    out = np.empty((num_groups, n))
    for s in range(n):
        out[:, s] = model.lrs()
        for value in feed.get(s, []):
            callback.on_epoch_end(s, {"val_loss": value})
    return out


# Keras' torch backend reads its LR variable with np.array(variable), which numpy 2 flags; not ours to fix.
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([0.1, 1.0, 0.01, 3e-4]) | st.floats(1e-4, 1.0), st.integers(1, 3))
def test_real_keras_callback_parity(keras_module: Any, data: st.DataObject, lr: float, groups: int) -> None:
    kwargs = data.draw(keras_plateau())
    history = data.draw(histories(positive=data.draw(st.booleans()), max_size=80))
    theirs = keras_lrs(keras_module, lr, kwargs, history, groups)
    np.testing.assert_allclose(_ours_keras(lr, kwargs, history, groups), theirs, rtol=1e-5, atol=1e-30)
    np.testing.assert_array_equal(keras_reference(lr, kwargs, history, groups), theirs)


def test_keras_counts_patience_bad_values_torch_patience_plus_one() -> None:
    history = [(s, 1.0) for s in range(8)]
    keras = _ours_keras(0.1, {"patience": 2, "min_delta": 0.0, "mode": "min"}, history)[0]
    torch_ = ours([0.1], {"patience": 2, "threshold": 0.0}, history)[0]
    assert keras.tolist()[:5] == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])  # reduced by the metric at step 2
    assert torch_.tolist()[:5] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01])  # by the metric at step 3


def test_keras_first_value_is_the_baseline_even_nan() -> None:
    """Keras 3 starts with ``best = None``: its first value, NaN included, becomes the best."""
    history = [(0, math.nan), (1, 0.5), (2, 0.4), (3, 0.3)]
    lrs = _ours_keras(0.1, {"patience": 2, "mode": "min"}, history)[0]
    assert lrs[-1] == pytest.approx(0.01)  # nothing beats NaN: steps 1 and 2 are bad, reduce from 3


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [("val_loss", "min"), ("loss", "min"), ("val_accuracy", "max"), ("acc", "max"), ("val_auc", "max"),
     ("val_mae", "min"), ("mean_squared_error", "min"), ("val_f1_score", "max")],
)  # fmt: skip
def test_keras_auto_mode_follows_keras_metric_directions(monitor: str, mode: str) -> None:
    spec = PlateauSpec.model_validate({"style": "keras", "monitor": monitor})
    assert spec.mode == "auto"
    assert spec.resolved_mode == mode
    assert spec.metric == monitor


def test_keras_auto_mode_refuses_names_keras_cannot_resolve() -> None:
    with pytest.raises(ValueError, match="give mode 'min' or 'max'"):
        PlateauSpec.model_validate({"style": "keras", "monitor": "val_my_score"})
    assert (
        PlateauSpec.model_validate({"style": "keras", "monitor": "val_my_score", "mode": "max"}).resolved_mode == "max"
    )


def test_dialect_defaults_and_names() -> None:
    keras = PlateauSpec.model_validate({"style": "keras"})
    assert (keras.metric, keras.mode, keras.resolved_min_delta) == ("val_loss", "auto", 1e-4)
    torch_ = PlateauSpec.model_validate({})
    assert (torch_.metric, torch_.mode) == ("loss", "min")
    assert PlateauSpec.model_validate({"monitor": "val_loss"}).metric == "val_loss"
    assert "monitor" not in PlateauSpec.model_validate({"monitor": "x"}).model_dump()
    for bad, fragment in [
        ({"metric": "a", "monitor": "b"}, "not both"),
        ({"style": "keras", "threshold": 0.1}, "threshold"),
        ({"style": "keras", "eps": 0.0}, "eps"),
        ({"min_delta": 0.1}, "min_delta"),
        ({"mode": "auto"}, "auto"),
        ({"factor": 1.0}, "factor"),
        ({"factor": 0.0}, "factor"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            PlateauSpec.model_validate(bad)


def test_reduce_lr_on_plateau_schedule_round_trips_its_rules() -> None:
    spec = parse_spec(
        {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "ReduceLROnPlateau", "style": "keras"}}
    )
    plateau = spec.effective_plateau()
    assert plateau is not None
    assert (plateau.style, plateau.metric, plateau.mode) == ("keras", "val_loss", "auto")


# ---- a plateau layered on a non-constant schedule ----------------------------------------------------------------


def _layered(lrs: list[float], plateau: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "param_groups": [{"name": f"g{i}", "lr": lr} for i, lr in enumerate(lrs)],
            "schedule": {"type": "StepLR", "step_size": 7, "gamma": 0.5},
            "plateau": {"metric": "val_loss", **plateau},
        }
    )


layered_cases = st.tuples(
    base_lrs,
    st.fixed_dictionaries(
        {
            "patience": st.integers(0, 4),
            "cooldown": st.integers(0, 3),
            "factor": st.sampled_from([0.1, 0.5, 0.8]),
            "min_lr": st.sampled_from([0.0, 1e-4, 1e-3, 0.01]),
            "mode": st.sampled_from(["min", "max"]),
        }
    ),
    histories(positive=True, max_size=60),
)


@settings(max_examples=100, deadline=None)
@given(layered_cases)
def test_layered_reductions_only_lower_the_curve(case: tuple[list[float], dict[str, Any], History]) -> None:
    lrs, plateau, history = case
    spec = _layered(lrs, plateau)
    steps = np.arange(_horizon(history) + 40)
    plain = evaluate(spec, steps)
    metrics = [(s, "val_loss", v) for s, v in history]
    reduced = evaluate(spec, steps, metrics=metrics)
    assert np.all(reduced <= plain)
    _, reductions, _ = replay_plateau(spec.effective_plateau(), build(spec), metrics)
    # Reductions never push an LR below min_lr, unless the schedule itself is already there.
    min_lr = plateau["min_lr"]
    assert np.all(reduced >= np.minimum(plain, min_lr) * (1 - 1e-12))
    # Before the first reduction the curve is the schedule's own; a reduction shows exactly from m + 1.
    if not reductions:
        np.testing.assert_array_equal(reduced, plain)
        return
    first = reductions[0]
    assert first.from_step == first.metric_step + 1
    np.testing.assert_array_equal(reduced[:, : first.from_step], plain[:, : first.from_step])
    changed = reduced[:, first.from_step] != plain[:, first.from_step]
    assert changed.any() or np.all(plain[:, first.from_step] <= min_lr)
    # Each reduction shows from its own from_step (where the schedule is above min_lr).
    for r in reductions:
        before = evaluate(spec, steps, metrics=[m for m in metrics if m[0] < r.metric_step])
        assert np.all(reduced[:, r.from_step :] <= before[:, r.from_step :] + 1e-15)


@settings(max_examples=100, deadline=None)
@given(layered_cases, st.randoms(use_true_random=False))
def test_layered_metric_order_and_other_names_do_not_matter(
    case: tuple[list[float], dict[str, Any], History], rnd: random.Random
) -> None:
    lrs, plateau, history = case
    spec = _layered(lrs, plateau)
    steps = np.arange(_horizon(history) + 10)
    metrics = [(s, "val_loss", v) for s, v in history]
    expected = evaluate(spec, steps, metrics=metrics)
    # Shuffled input (two metrics at one step keep their order: the sort is stable) with metrics under other
    # names anywhere in it: the same curve.
    chunks: list[list[tuple[int, str, float]]] = [
        [(s, "val_loss", v) for v in values] for s, values in _by_step(history).items()
    ]
    chunks += [
        [(rnd.randrange(steps.size), rnd.choice(["loss", "val_acc", "VAL_LOSS"]), rnd.random())] for _ in range(30)
    ]
    rnd.shuffle(chunks)
    shuffled = [m for chunk in chunks for m in chunk]
    np.testing.assert_array_equal(evaluate(spec, steps, metrics=shuffled), expected)


def test_metric_at_step_m_applies_from_m_plus_one() -> None:
    spec = _layered([1.0], {"patience": 0, "factor": 0.5})
    steps = np.arange(10)
    lr = evaluate(spec, steps, metrics=[(2, "val_loss", 1.0), (4, "val_loss", 2.0)])[0]
    plain = evaluate(spec, steps)[0]
    np.testing.assert_array_equal(lr[:5], plain[:5])
    np.testing.assert_allclose(lr[5:], plain[5:] * 0.5)


def test_min_lr_floor_never_raises_the_schedule() -> None:
    """Once reduced, a group is floored at min_lr, but where StepLR itself decays below min_lr it follows."""
    spec = _layered([1.0], {"patience": 0, "factor": 0.1, "min_lr": 0.2})
    steps = np.arange(30)
    lr = evaluate(spec, steps, metrics=[(0, "val_loss", 1.0), (1, "val_loss", 1.0), (2, "val_loss", 1.0)])[0]
    plain = evaluate(spec, steps)[0]
    assert lr[2] == pytest.approx(0.2)  # 1.0 * 0.1 floored at 0.2
    assert np.all(lr <= plain)
    np.testing.assert_allclose(lr[14:21], 0.2)  # StepLR at 0.25: 0.025 floored at min_lr
    np.testing.assert_allclose(lr[21:], plain[21:])  # StepLR at 0.125 < min_lr: its own value


def test_plateau_state_is_a_value() -> None:
    spec = PlateauSpec.model_validate({"patience": 0})
    state = core.initial_state(spec)
    lr = np.array([0.1])
    s1, m1 = core.observe(spec, state, 1.0, lr)
    s2, m2 = core.observe(spec, s1, 2.0, lr)
    assert state == core.initial_state(spec)  # untouched
    assert (s1.best, s1.num_bad, m1.tolist()) == (1.0, 0, [1.0])
    assert (s2.best, s2.num_reductions, s2.last_value, m2.tolist()) == (1.0, 1, 2.0, [0.1])
    with pytest.raises(SpecInvalid):
        parse_spec({"schedule": {"type": "StepLR", "step_size": 1}, "plateau": {"factor": 2}})
