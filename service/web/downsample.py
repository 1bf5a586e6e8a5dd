"""Min/max downsampling of curves for drawing: a million steps become two points per pixel column.

A line chart ``width`` pixels wide cannot show more than one vertical stroke per column, and the stroke of a
column spans the smallest and the largest value in it. So each bucket of steps is reduced to two points, its
minimum and its maximum, in the order they come (when the bucket's last value is below its first, the maximum
comes first): drawn as one polyline, the result is the picture of the full curve, spikes included — averaging
or plain striding would lose a one-step ``set`` or a short warm-up.

Bucket edges can be forced (``cuts``): the horizon (so no bucket mixes served and planned steps) and the steps
where changes and reductions begin (so a drop is drawn at its exact step).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Downsampled:
    """``x`` (steps) shared by every row of ``y`` (rows: groups or fields), shape ``(R, len(x))``."""

    x: Int64s
    y: Floats


def bucket_starts(n: int, buckets: int, cuts: Iterable[int] = ()) -> Int64s:
    """Indices where buckets start: ``buckets`` equal slices of ``range(n)``, plus the ``cuts`` (indices)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    even = np.linspace(0, n, max(1, min(buckets, n)) + 1)[:-1].astype(np.int64)
    extra = np.fromiter((c for c in cuts if 0 < c < n), dtype=np.int64)
    return np.unique(np.concatenate([even, extra]))


def minmax(steps: Int64s, values: Floats, buckets: int, cut_steps: Iterable[int] = ()) -> Downsampled:
    """Reduce ``values`` (shape ``(R, N)``, one row per series, all sampled at ``steps``) to at most two points
    per bucket (``buckets`` equal buckets, plus a bucket edge at each of ``cut_steps``).

    Series of at most ``2 * buckets`` points come back unchanged. NaN values (a group without cycled momentum)
    stay NaN; a bucket holding a NaN is NaN.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    steps = np.asarray(steps, dtype=np.int64)
    n = steps.shape[0]
    if values.shape[1] != n:
        raise ValueError(f"values have {values.shape[1]} columns for {n} steps")
    if n <= 2 * buckets:
        return Downsampled(x=steps.copy(), y=values.copy())
    cuts = np.searchsorted(steps, np.fromiter(cut_steps, dtype=np.int64))
    starts = bucket_starts(n, buckets, cuts.tolist())
    ends = np.append(starts[1:], n) - 1  # last index of each bucket
    lo = np.minimum.reduceat(values, starts, axis=1)
    hi = np.maximum.reduceat(values, starts, axis=1)
    falling = values[:, ends] < values[:, starts]
    first = np.where(falling, hi, lo)
    second = np.where(falling, lo, hi)
    x = np.empty(2 * starts.shape[0], dtype=np.int64)
    x[0::2] = steps[starts]
    x[1::2] = steps[ends]
    y = np.empty((values.shape[0], x.shape[0]), dtype=np.float64)
    y[:, 0::2] = first
    y[:, 1::2] = second
    return Downsampled(x=x, y=y)


def sampling_stride(span: int, budget: int) -> int:
    """The stride that evaluates at most ``budget`` steps of a ``span``-step range (1 when it fits)."""
    return max(1, -(-span // max(1, budget)))
