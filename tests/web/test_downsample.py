"""Min/max per pixel column: the drawing keeps every extreme, in order, and respects forced bucket edges."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrserve.service.web.downsample import bucket_starts, minmax, sampling_stride


def test_short_series_come_back_unchanged() -> None:
    steps = np.arange(10, dtype=np.int64)
    values = np.linspace(0, 1, 10)[None, :]
    small = minmax(steps, values, buckets=5)
    assert small.x.tolist() == steps.tolist()
    assert np.array_equal(small.y, values)


def test_a_one_step_spike_in_a_million_survives() -> None:
    steps = np.arange(1_000_000, dtype=np.int64)
    values = np.full((2, steps.size), 0.1)
    values[0, 654_321] = 5.0  # e.g. a one-step `set`
    values[1, 123_456] = -1.0
    small = minmax(steps, values, buckets=800)
    assert small.x.size <= 2 * 800
    assert small.y[0].max() == 5.0
    assert small.y[1].min() == -1.0
    spike = int(np.argmax(small.y[0]))
    assert abs(int(small.x[spike]) - 654_321) <= 1_000_000 // 800  # drawn in its own pixel column


def test_order_follows_the_curve_so_a_drop_is_drawn_downwards() -> None:
    steps = np.arange(100, dtype=np.int64)
    falling = np.linspace(1.0, 0.0, 100)[None, :]
    small = minmax(steps, falling, buckets=10)
    assert np.all(np.diff(small.y[0]) <= 0)
    assert np.all(np.diff(small.x) >= 0)


def test_cut_steps_become_bucket_edges() -> None:
    steps = np.arange(0, 10_000, dtype=np.int64)
    values = np.where(steps < 4321, 1.0, 0.5)[None, :]
    small = minmax(steps, values, buckets=7, cut_steps=[4321])
    # no bucket mixes the two levels: the step of the drop starts a bucket
    assert 4321 in small.x.tolist()
    assert 4320 in small.x.tolist()
    for x, y in zip(small.x.tolist(), small.y[0].tolist(), strict=True):
        assert y == (1.0 if x < 4321 else 0.5)


def test_nan_rows_stay_nan() -> None:
    steps = np.arange(1000, dtype=np.int64)
    values = np.vstack([np.ones(1000), np.full(1000, np.nan)])
    small = minmax(steps, values, buckets=10)
    assert np.all(small.y[0] == 1.0)
    assert np.all(np.isnan(small.y[1]))


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="columns"):
        minmax(np.arange(5, dtype=np.int64), np.zeros((1, 6)), buckets=1)


def test_stride_and_bucket_starts() -> None:
    assert sampling_stride(1_000_000, 250_000) == 4
    assert sampling_stride(100, 250_000) == 1
    assert sampling_stride(1_000_001, 250_000) == 5
    assert bucket_starts(0, 10).size == 0
    assert bucket_starts(10, 100).tolist() == list(range(10))
    assert bucket_starts(100, 4, cuts=[10, 0, 100, 250]).tolist() == [0, 10, 25, 50, 75]


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=400),
    buckets=st.integers(1, 50),
    cuts=st.lists(st.integers(0, 450), max_size=5),
)
def test_every_bucket_keeps_its_extremes(values: list[float], buckets: int, cuts: list[int]) -> None:
    steps = np.arange(len(values), dtype=np.int64) * 3  # strided steps
    arr = np.asarray(values)[None, :]
    small = minmax(steps, arr, buckets, cut_steps=[c * 3 for c in cuts])
    assert small.y.min() == arr.min()
    assert small.y.max() == arr.max()
    assert set(small.y[0].tolist()) <= set(values)
    assert set(small.x.tolist()) <= set(steps.tolist())
    assert small.x[0] == 0
    assert small.x[-1] == steps[-1]
    assert small.x.size <= max(len(values), 2 * (buckets + len(cuts)))
