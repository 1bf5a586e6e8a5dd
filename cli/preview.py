"""``lrserve preview SPEC.yaml --steps N [--png FILE]``: a spec's curve, locally (no server).

Prints a table of key points (start, end, peaks and lows, the largest jumps, and evenly spaced steps between) and
a terminal plot; ``--png`` also writes a PNG with matplotlib (``pip install 'lrserve[plot]'``). ``--metric
STEP:VALUE`` (repeatable) feeds the plateau's metric, to see when it would reduce the LR.

The table and plots are shared with ``lrserve runs curve`` and ``runs change --dry-run``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.markup import escape
from rich.table import Table

from lrserve.cli import termplot
from lrserve.cli.output import EXIT_INVALID, EXIT_USAGE, console, fail, num, print_json, read_text

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
#: Steps evaluated at most for a preview; longer ranges are strided (key points are then approximate).
MAX_EVAL = 2_000_000


def key_points(values: Floats, max_rows: int = 14) -> list[tuple[int, str]]:
    """Indices worth a row, with a note: start, end, each group's peak and low, the largest jumps, then fill."""
    n = values.shape[1]
    notes: dict[int, list[str]] = {}

    def add(i: int, note: str = "") -> None:
        notes.setdefault(int(i), [])
        if note and note not in notes[int(i)]:
            notes[int(i)].append(note)

    add(0, "start")
    add(n - 1, "end")
    if n > 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.nanargmax(np.where(np.isfinite(values), values, -np.inf), axis=1)
            low = np.nanargmin(np.where(np.isfinite(values), values, np.inf), axis=1)
        for i in set(peak.tolist()):
            if 0 < i < n - 1:
                add(i, "peak")
        for i in set(low.tolist()):
            if 0 < i < n - 1:
                add(i, "lowest")
        with np.errstate(invalid="ignore", divide="ignore"):
            prev = values[:, :-1]
            rel = np.abs(np.diff(values, axis=1)) / np.maximum(np.abs(prev), 1e-300)
        rel = np.nan_to_num(rel, nan=0.0, posinf=1e300)
        worst = rel.max(axis=0)  # per step, the largest relative change of any group
        # A jump stands out from its neighbours (a StepLR drop), unlike the steep end of a smooth anneal.
        padded = np.concatenate([[0.0], worst, [0.0]])
        around = np.maximum(padded[:-2], padded[2:])
        jumps = np.flatnonzero((worst > 0.05) & (worst > 5 * around))
        for j in jumps[np.argsort(-worst[jumps], kind="stable")][:6]:
            ratio = values[:, j + 1] / np.where(values[:, j] != 0, values[:, j], np.nan)
            finite = ratio[np.isfinite(ratio)]
            add(j + 1, f"jump ×{num(float(finite[0]))}" if finite.size else "jump")
    for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.05, 0.4, 0.6, 0.95):
        if len(notes) >= max_rows:
            break
        add(round(q * (n - 1)))
    return [(i, ", ".join(notes[i])) for i in sorted(notes)]


def key_table(
    steps: Ints,
    names: Sequence[str],
    lr: Floats,
    momentum: Floats | None = None,
    *,
    proposed: Floats | None = None,
    title: str | None = None,
) -> Table:
    table = Table(title=title, header_style="bold", title_justify="left", padding=(0, 1))
    table.add_column("step", justify="right")
    for name in names:
        table.add_column(f"{escape(name)} lr", justify="right")
        if proposed is not None:
            table.add_column(f"{escape(name)} proposed", justify="right", style="yellow")
    has_momentum = momentum is not None and bool(np.isfinite(momentum).any())
    if has_momentum:
        for name in names:
            table.add_column(f"{escape(name)} momentum", justify="right", style="dim")
    table.add_column("note", style="cyan")
    rows = np.vstack([lr, proposed]) if proposed is not None else lr
    for i, note in key_points(rows):
        cells = [f"{int(steps[i]):,}"]
        for g in range(len(names)):
            cells.append(num(float(lr[g, i])))
            if proposed is not None:
                cells.append(num(float(proposed[g, i])))
        if has_momentum and momentum is not None:
            cells.extend(num(float(momentum[g, i])) for g in range(len(names)))
        cells.append(note)
        table.add_row(*cells)
    return table


def auto_log(values: Floats) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 50)


def term_chart(
    steps: Ints, names: Sequence[str], lr: Floats, *, log: bool, proposed: Floats | None = None, title: str = ""
) -> Any:
    width = min(console().width, 120)
    series = [termplot.Series(n, steps, lr[g]) for g, n in enumerate(names)]
    if proposed is not None:
        series += [termplot.Series(f"{n} (proposed)", steps, proposed[g]) for g, n in enumerate(names)]
    return termplot.plot(series, width=width, height=12, log=log, title=title)


def save_png(
    path: str,
    steps: Ints,
    names: Sequence[str],
    lr: Floats,
    *,
    log: bool,
    momentum: Floats | None = None,
    proposed: Floats | None = None,
    horizon: int | None = None,
    title: str = "",
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("--png needs matplotlib: pip install 'lrserve[plot]'", EXIT_USAGE)
    with_momentum = momentum is not None and bool(np.isfinite(momentum).any())
    rows = 2 if with_momentum else 1
    fig, axes = plt.subplots(rows, 1, figsize=(9, 4.5 if rows == 1 else 6.5), sharex=True, squeeze=False)
    ax = axes[0][0]
    for g, name in enumerate(names):
        ax.plot(steps, lr[g], label=name, linewidth=1.4)
        if proposed is not None:
            ax.plot(steps, proposed[g], label=f"{name} (proposed)", linewidth=1.4, linestyle="--")
    if horizon is not None and horizon >= 0:
        ax.axvline(horizon, color="grey", linestyle=":", linewidth=1, label="horizon")
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("learning rate")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if with_momentum and momentum is not None:
        mx = axes[1][0]
        for g, name in enumerate(names):
            mx.plot(steps, momentum[g], label=name, linewidth=1.2)
        mx.set_ylabel("momentum")
        mx.grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}", EXIT_USAGE)
    except ValueError as e:  # matplotlib: a suffix it has no writer for
        fail(f"cannot write {path}: {e}", EXIT_USAGE)
    finally:
        plt.close(fig)


def parse_metric(text: str) -> tuple[int, float]:
    step, sep, value = text.partition(":")
    if not sep:
        step, sep, value = text.partition("=")
    try:
        return int(step), float(value)
    except ValueError:
        fail(f"--metric {text!r}: expected STEP:VALUE, e.g. 1000:0.42", EXIT_USAGE)


def preview(
    spec_file: Annotated[str, typer.Argument(metavar="SPEC", help="run spec file (YAML or JSON); - for stdin")],
    steps: Annotated[
        int | None,
        typer.Option("--steps", "-n", min=1, help="steps to evaluate (default: the schedule's length, or 1000)"),
    ] = None,
    start: Annotated[int, typer.Option(min=0, help="first step")] = 0,
    png: Annotated[
        str | None, typer.Option("--png", help="also write the plot to this PNG file (needs the \\[plot] extra)")
    ] = None,
    log: Annotated[bool | None, typer.Option("--log/--linear", help="y scale (default: log for wide ranges)")] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="STEP:VALUE of the plateau's metric (repeatable)"),
    ] = None,
    no_plot: Annotated[bool, typer.Option("--no-plot", help="only the table")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print the key points as JSON")] = False,
) -> None:
    """Evaluate a spec locally: a table of key points and a terminal plot (PNG with --png)."""
    from lrserve.cli.validate import load_or_exit
    from lrserve.schemas.errors import InvalidInput
    from lrserve.schemas.evaluate import build, evaluate

    spec = load_or_exit(spec_file, read_text(spec_file))
    total = build(spec).total_steps
    count = steps if steps is not None else (max(1, total - start) if total is not None else 1000)
    stride = max(1, math.ceil(count / MAX_EVAL))
    xs = np.arange(start, start + count, stride, dtype=np.int64)
    metrics = None
    if metric:
        name = spec.plateau.metric if spec.plateau is not None else "metric"
        metrics = [(s, name, v) for s, v in map(parse_metric, metric)]
    try:
        lr = evaluate(spec, xs, metrics=metrics)
        momentum = evaluate(spec, xs, field="momentum")
    except InvalidInput as exc:  # e.g. an expression infinite at a step past the check grid: no traceback
        fail(f"{spec_file}: {exc.detail}", EXIT_INVALID)
    has_momentum = bool(np.isfinite(momentum).any())
    names = spec.group_names
    use_log = auto_log(lr) if log is None else log
    if json_out:
        print_json(
            {
                "schedule_type": str(getattr(spec.schedule, "type", "")),
                "param_groups": names,
                "total_steps": total,
                "start": start,
                "stop": start + count,
                "stride": stride,
                "key_points": [
                    {
                        "step": int(xs[i]),
                        "lr": lr[:, i].tolist(),
                        "momentum": momentum[:, i].tolist() if has_momentum else None,
                        "note": note,
                    }
                    for i, note in key_points(lr)
                ],
            }
        )
    else:
        out = console()
        kind = str(getattr(spec.schedule, "type", ""))
        span = f"steps {start:,}..{start + count - 1:,}" + (f" (every {stride})" if stride > 1 else "")
        out.print(f"[bold]{escape(kind)}[/], {len(names)} param group(s), {span}", highlight=False)
        out.print(key_table(xs, names, lr, momentum if has_momentum else None))
        if not no_plot:
            out.print(term_chart(xs, names, lr, log=use_log))
    if png:
        save_png(
            png,
            xs,
            names,
            lr,
            log=use_log,
            momentum=momentum if has_momentum else None,
            title=str(getattr(spec.schedule, "type", "")),
        )
        if not json_out:
            console().print(f"wrote {escape(png)}", highlight=False)
