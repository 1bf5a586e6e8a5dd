"""A line chart in the terminal: Unicode braille dots (2 x 4 per character), one colour per series.

Each column of dots shows the minimum to the maximum of the steps that fall in it, so a million steps draw as
faithfully as a hundred. Log scale skips values <= 0. Our own code; no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.text import Text

from lrserve.cli.output import num

COLORS = ("blue", "red", "green", "magenta", "yellow", "cyan", "bright_blue", "bright_red")
_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] within a cell


@dataclass(frozen=True)
class Series:
    name: str
    x: npt.NDArray[np.int64]
    y: npt.NDArray[np.float64]


def _column_ranges(
    x: npt.NDArray[np.int64], y: npt.NDArray[np.float64], x0: float, x1: float, cols: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per dot column: min and max of the finite values falling in it (NaN where none)."""
    lo = np.full(cols, np.nan)
    hi = np.full(cols, np.nan)
    ok = np.isfinite(y)
    if not ok.any():
        return lo, hi
    span = max(x1 - x0, 1e-12)
    idx = np.clip(((x[ok] - x0) / span * cols).astype(np.int64), 0, cols - 1)
    vals = y[ok]
    np.fmin.at(lo, idx, vals)
    np.fmax.at(hi, idx, vals)
    return lo, hi


def plot(series: Sequence[Series], *, width: int = 72, height: int = 12, log: bool = False, title: str = "") -> Text:
    """The chart as rich Text: y labels on the left, step labels under it, a legend above."""
    label_w = 10
    cols = max(10, width - label_w - 1)
    dot_w, dot_h = cols * 2, height * 4
    xs = [s.x for s in series if s.x.size]
    if not xs:
        return Text("(nothing to plot)")
    x0 = float(min(int(x.min()) for x in xs))
    x1 = float(max(int(x.max()) for x in xs))
    tf = (lambda v: np.log10(np.where(v > 0, v, np.nan))) if log else (lambda v: v)
    with np.errstate(invalid="ignore", divide="ignore"):
        ys = [np.asarray(tf(np.asarray(s.y, dtype=np.float64)), dtype=np.float64) for s in series]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.zeros(0)
    if finite.size == 0:
        return Text("(no finite values to plot)")
    y0, y1 = float(finite.min()), float(finite.max())
    if y1 - y0 < 1e-12:
        pad = abs(y0) * 0.1 or 1.0
        y0, y1 = y0 - pad, y1 + pad
    cells = [[0] * cols for _ in range(height)]
    owner: list[list[int]] = [[-1] * cols for _ in range(height)]
    for k, (s, y) in enumerate(zip(series, ys, strict=True)):
        lo, hi = _column_ranges(s.x, y, x0, x1, dot_w)
        for c in range(dot_w):
            if math.isnan(lo[c]):
                continue
            r_top = round((y1 - hi[c]) / (y1 - y0) * (dot_h - 1))
            r_bot = round((y1 - lo[c]) / (y1 - y0) * (dot_h - 1))
            for r in range(r_top, r_bot + 1):
                cells[r // 4][c // 2] |= _BITS[r % 4][c % 2]
                owner[r // 4][c // 2] = k
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    for k, s in enumerate(series):
        out.append("  ━━ ", style=COLORS[k % len(COLORS)])
        out.append(s.name)
    out.append("\n")

    def ylabel(row: int) -> str:
        # the top row starts at the largest value, the bottom row ends at the smallest
        r = 0.0 if row == 0 else float(dot_h - 1) if row == height - 1 else row * 4 + 1.5
        v = y1 - (y1 - y0) * r / (dot_h - 1)
        if not log and abs(v) < (y1 - y0) * 1e-9:
            v = 0.0  # not -6.9e-18
        return num(10**v if log else v)

    label_rows = {0, height // 2, height - 1}
    for row in range(height):
        label = ylabel(row) if row in label_rows else ""
        out.append(f"{label:>{label_w}}┤" if label else " " * label_w + "│", style="dim")
        for c in range(cols):
            bits = cells[row][c]
            if bits:
                out.append(chr(0x2800 + bits), style=COLORS[owner[row][c] % len(COLORS)])
            else:
                out.append(" ")
        out.append("\n")
    left, right = f"{int(x0):,}", f"{int(x1):,}"
    axis = " " * label_w + "└" + "─" * cols
    out.append(axis + "\n", style="dim")
    gap = max(1, cols + 1 - len(left) - len(right))
    out.append(" " * label_w + left + " " * gap + right + ("  (log y)" if log else "") + "\n", style="dim")
    return out
