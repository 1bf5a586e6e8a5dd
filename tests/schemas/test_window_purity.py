"""The value served at step s is a pure function of (history, s), bit for bit: no window changes it.

Two leases of the same run may ask for different windows (offsets, sizes, one step, a shuffled batch), on two
replicas that each built the plan afresh. Every path of the numeric core is anchored at points the schedule
fixes (its restarts, milestones, chunk edges from the scan's anchor), never at the query; these properties
check it on every schedule type, on histories with changes, reductions and pins, comparing float64 bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lrserve.schemas import evaluate, parse_spec
from lrserve.schemas.core.combinators import CHUNK, scan_product
from lrserve.schemas.errors import InvalidInput
from lrserve.schemas.evaluate import estimate_work
from lrserve.schemas.plan import Plan, schedule_builder
from lrserve.schemas.specs.union import schedule_type_names
from tests.schemas import strategies as lrst

REPRO = {
    "param_groups": [{"name": "all", "lr": 0.1}],
    "schedule": {
        "type": "ChainedScheduler",
        "schedulers": [
            {"type": "StepLR", "step_size": 30, "gamma": 0.97},
            {"type": "CosineAnnealingLR", "T_max": 1000},
        ],
    },
}
KINDS = sorted(lrst.ALL_SCHEDULES)
# derandomized in CI; ~25 kinds x these examples keep the module well under a minute on the shared machine
PURITY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

Values = np.ndarray[Any, np.dtype[np.float64]]


def bits(values: Values) -> np.ndarray[Any, np.dtype[np.int64]]:
    """The float64 bit patterns: equality is exact, and a NaN equals only the same NaN."""
    return np.ascontiguousarray(values, dtype=np.float64).view(np.int64)


def fresh_plan(history: lrst.History) -> Plan:
    """A plan built from the records alone, as a replica that never saw another request builds it."""
    spec = parse_spec(history.run)
    return Plan(spec, history.changes, history.reductions, schedule_builder(spec.base_lrs()), history.pins)


def values(history: lrst.History, steps: np.ndarray[Any, np.dtype[np.int64]]) -> tuple[Values, Values] | None:
    """``(lr, momentum)`` from a fresh plan (momentum NaN where none is cycled); None where it refuses."""
    try:
        lr, mom = fresh_plan(history).values(steps)
    except InvalidInput:
        return None
    return lr, np.full(lr.shape, np.nan) if mom is None else mom


def window(start: int, count: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.arange(start, start + count, dtype=np.int64)


def assert_same(a: Values, b: Values, steps: np.ndarray[Any, np.dtype[np.int64]], what: str) -> None:
    differ = (bits(a) != bits(b)).any(axis=0)
    if differ.any():
        i = int(np.argmax(differ))
        g = int(np.argmax(bits(a[:, i]) != bits(b[:, i])))
        raise AssertionError(
            f"{what}: {int(differ.sum())} steps differ; first step {int(steps[i])}, group {g}: "
            f"{a[g, i]!r} != {b[g, i]!r}"
        )


def check_windows(history: lrst.History, first: tuple[int, int], second: tuple[int, int]) -> None:
    a_steps, b_steps = window(*first), window(*second)
    a, b = values(history, a_steps), values(history, b_steps)
    assume(a is not None and b is not None)
    assert a is not None and b is not None
    common, ia, ib = np.intersect1d(a_steps, b_steps, assume_unique=True, return_indices=True)
    for k, what in enumerate(("lr", "momentum")):
        assert_same(a[k][:, ia], b[k][:, ib], common, f"{what}: window {first} vs {second}")


def check_shuffled(history: lrst.History, steps: np.ndarray[Any, np.dtype[np.int64]], seed: int) -> None:
    """One shuffled array with repeats equals each of its steps evaluated alone (each by a fresh plan)."""
    rng = np.random.default_rng(seed)
    picked = rng.permutation(steps)[:40]
    batch = np.concatenate([picked, picked[:5]])
    together = values(history, batch)
    assume(together is not None)
    assert together is not None
    for i in rng.choice(batch.size, size=min(12, batch.size), replace=False):
        alone = values(history, batch[i : i + 1])
        assert alone is not None
        for k, what in enumerate(("lr", "momentum")):
            assert_same(together[k][:, i : i + 1], alone[k], batch[i : i + 1], f"{what}: batch vs alone")


# ---- the reported bug --------------------------------------------------------------------------------------------


def test_chain_below_the_cosine_restart_is_the_same_in_every_window() -> None:
    # reported: steps 32..63 differed by 1-2 ulp between a window below the restart (closed form) and one
    # crossing it (then a scan from step 0)
    spec = parse_spec(REPRO)
    below = evaluate(spec, np.arange(64))
    crossing = evaluate(spec, np.arange(32, 2032))
    assert np.array_equal(bits(below[:, 32:]), bits(crossing[:, :32]))


def test_chain_past_the_restart_does_not_depend_on_where_the_window_starts() -> None:
    spec = parse_spec(REPRO)
    full = evaluate(spec, np.arange(0, 5000))
    for start in (1000, 1001, 1002, 2999, 3001, 4000):
        part = evaluate(spec, np.arange(start, 5000))
        assert np.array_equal(bits(part), bits(full[:, start:]))


# ---- every schedule type ------------------------------------------------------------------------------------------


def test_every_schedule_type_is_drawn() -> None:
    assert set(KINDS) == set(schedule_type_names())


@pytest.mark.parametrize("kind", KINDS)
@PURITY
@given(data=st.data())
def test_two_windows_agree_on_their_common_steps(kind: str, data: st.DataObject) -> None:
    history = lrst.History(data.draw(lrst.any_run_specs(kind), label="run"), (), (), ())
    points = history.points()
    first = data.draw(lrst.windows(points), label="first")
    second = data.draw(lrst.windows(points), label="second")
    check_windows(history, first, second)
    check_shuffled(history, np.union1d(window(*first), window(*second)), data.draw(st.integers(0, 2**32 - 1)))


@pytest.mark.parametrize("kind", KINDS)
@settings(PURITY, max_examples=15)
@given(data=st.data())
def test_histories_agree_across_windows(kind: str, data: st.DataObject) -> None:
    """Changes (replace absolute/restart, scale, set until, plateau), reductions and pins: still one value."""
    history = data.draw(lrst.histories(kind), label="history")
    points = history.points()
    first = data.draw(lrst.windows(points), label="first")
    second = data.draw(lrst.windows(points), label="second")
    check_windows(history, first, second)
    check_shuffled(history, np.union1d(window(*first), window(*second)), data.draw(st.integers(0, 2**32 - 1)))


# ---- the scans' chunks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "MultiplicativeLR", "lr_lambda": "1 - 1e-6 * (step % 5)"},
        REPRO["schedule"],
        {
            "type": "SequentialLR",
            "milestones": [700],
            "schedulers": [
                {"type": "StepLR", "step_size": 9, "gamma": 0.9},
                {"type": "MultiplicativeLR", "lr_lambda": "0.99999"},
            ],
        },
    ],
    ids=["multiplicative", "chain", "continued"],
)
def test_windows_across_a_chunk_edge(schedule: dict[str, Any]) -> None:
    # a scan's last chunk is cut at the largest step asked for: the cut must not change any value
    spec = parse_spec({"param_groups": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.3}], "schedule": schedule})
    edges = [CHUNK - 1, CHUNK, 1001 + CHUNK, 700 + CHUNK]
    steps = np.array(sorted({e + d for e in edges for d in (-2, -1, 0, 1, 2)}), dtype=np.int64)
    together = evaluate(spec, steps)
    for i, s in enumerate(steps):
        assert np.array_equal(bits(evaluate(spec, [s])), bits(together[:, i : i + 1])), int(s)
    wide = evaluate(spec, np.arange(CHUNK - 50, CHUNK + 50))
    at = np.searchsorted(steps, CHUNK - 2)
    assert np.array_equal(bits(wide[:, 48:53]), bits(together[:, at : at + 5]))


def test_scan_values_do_not_depend_on_the_last_step_asked() -> None:
    ratio = lambda u: 1.0 - 1e-7 * np.cos(u.astype(np.float64))  # noqa: E731
    init = np.array([[0.5], [2.0]])
    full = scan_product(np.arange(3 * CHUNK // 2, dtype=np.int64), init, ratio)
    for last in (0, 1, 63, 64, 65, CHUNK - 1, CHUNK, CHUNK + 7):
        part = scan_product(np.arange(last + 1, dtype=np.int64), init, ratio)
        assert np.array_equal(bits(part), bits(full[:, : last + 1])), last
    # anchored at 500: the chunks start there, and the values are those of the same walk from 500
    anchored = scan_product(np.arange(500, 900, dtype=np.int64), init, ratio, start=500)
    shifted = scan_product(np.arange(400, dtype=np.int64), init, lambda u: ratio(u + 500))
    assert np.array_equal(bits(anchored), bits(shifted))


@pytest.mark.parametrize("name", ["cos", "sin", "tan", "tanh", "exp", "log", "log2", "log10", "sqrt", "power"])
def test_elementwise_functions_do_not_depend_on_the_array(name: str) -> None:
    """numpy's SIMD loops (and their tails) give each element the bits it gets alone, on this machine: what lets
    a closed form evaluated over any window give the same value at each step."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.arange(1, 2000) * np.pi / 1000.0, rng.uniform(1e-3, 50.0, 2000), rng.uniform(0, 1e6, 500)])
    fn = getattr(np, name)
    call = (lambda a: fn(0.97, a)) if name == "power" else fn
    with np.errstate(all="ignore"):
        full = call(x)
        for size in (1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 65):
            for offset in (0, 1, 5):
                part = call(x[offset : offset + size].copy())
                assert np.array_equal(bits(part), bits(full[offset : offset + size])), (size, offset)
        assert np.array_equal(bits(call(x[::3])), bits(full[::3]))


# ---- the work estimate ------------------------------------------------------------------------------------------


def _spec(schedule: dict[str, Any], groups: int = 2) -> Any:
    return parse_spec({"param_groups": [{"name": f"g{i}", "lr": 0.1} for i in range(groups)], "schedule": schedule})


def test_work_of_a_scan_grows_with_the_step() -> None:
    spec = _spec({"type": "MultiplicativeLR", "lr_lambda": "0.999"})
    works = [estimate_work(spec, [s]) for s in (10, 1000, 100_000)]
    assert works == [(s + 1) * 2 + 2 for s in (10, 1000, 100_000)]  # walk 0..s for 2 groups, then one gather


def test_work_grows_with_the_expressions_node_count() -> None:
    small = _spec({"type": "MultiplicativeLR", "lr_lambda": "0.999"})
    large = _spec({"type": "MultiplicativeLR", "lr_lambda": "0.999 if step % 7 == 0 else min(1.0, 0.9 + step / 1e6)"})
    assert estimate_work(large, [5000]) > 5 * estimate_work(small, [5000])
    lam_small = _spec({"type": "LambdaLR", "lr_lambda": "0.9"})
    lam_large = _spec({"type": "LambdaLR", "lr_lambda": "0.9 ** (step // 10) * min(1, step / 5)"})
    assert estimate_work(lam_small, np.arange(100)) == 100 * 2
    assert estimate_work(lam_large, np.arange(100)) > 5 * estimate_work(lam_small, np.arange(100))


@pytest.mark.parametrize(
    "schedule",
    [
        {"type": "StepLR", "step_size": 10},
        {"type": "ExponentialDecay", "initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5},
        {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 1000},
        {"type": "caffe", "lr_policy": "step", "base_lr": 0.1, "gamma": 0.5, "stepsize": 10},
    ],
    ids=lambda s: s.get("type"),
)
def test_work_of_a_closed_form_is_points_times_groups(schedule: dict[str, Any]) -> None:
    spec = _spec(schedule, groups=3)
    assert estimate_work(spec, [0, 5, 10**12]) == 3 * 3  # however large the step
    assert estimate_work(spec, np.arange(1000)) == 1000 * 3


def test_work_of_a_chain_walks_from_its_first_restart() -> None:
    spec = parse_spec(REPRO)
    assert estimate_work(spec, np.arange(1000)) == 2 * 1000  # two closed-form links below the restart
    past = estimate_work(spec, [1000, 51_000])
    assert past == 2 * 1 + (51_000 - 1001 + 1) * 2 + 1  # the links at 1000; the scan from 1001; the gather


def test_work_of_a_plan_counts_its_layers_and_pins() -> None:
    history = lrst.History(REPRO, (), (), ())
    plan = fresh_plan(history)
    assert plan.work(np.arange(10, dtype=np.int64)) == 2 * 10 + 10  # the schedule's work, then the scale
    assert estimate_work(plan, np.arange(10)) == plan.work(np.arange(10, dtype=np.int64))
