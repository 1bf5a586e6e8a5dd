"""What the domain hands the HTTP layer for the two hot answers: numpy arrays, encoded without Python lists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lrserve.schemas.wire import GroupValues, Marker


@dataclass(frozen=True)
class LeaseData:
    """Values of steps ``start .. start+count-1`` (JSON shape: ``wire.LrWindow``)."""

    run_id: str
    start: int
    count: int
    revision: int
    incarnation: int
    horizon: int
    group_names: list[str]
    lr: npt.NDArray[np.float64]  # (G, count)
    momentum: npt.NDArray[np.float64] | None  # (G, count)
    done: bool
    total_steps: int | None
    last_seq: int

    def groups(self) -> list[GroupValues]:
        return groups_of(self.group_names, self.lr, self.momentum)


@dataclass(frozen=True)
class CurveData:
    """A curve over ``range(start, stop, stride)`` (JSON shape: ``wire.Curve``)."""

    run_id: str | None
    start: int
    stop: int
    stride: int
    steps: npt.NDArray[np.int64]
    group_names: list[str]
    lr: npt.NDArray[np.float64]  # (G, N)
    momentum: npt.NDArray[np.float64] | None
    horizon: int
    revision: int
    markers: list[Marker]

    def groups(self) -> list[GroupValues]:
        return groups_of(self.group_names, self.lr, self.momentum)


def groups_of(
    names: list[str], lr: npt.NDArray[np.float64], momentum: npt.NDArray[np.float64] | None
) -> list[GroupValues]:
    return [
        GroupValues(
            name=name,
            lr=lr[g].tolist(),
            momentum=None if momentum is None else momentum[g].tolist(),
        )
        for g, name in enumerate(names)
    ]
