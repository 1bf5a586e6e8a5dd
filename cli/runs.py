"""``lrserve runs ...``: runs on a server, from a terminal.

    lrserve runs list [--label team:vision]           # id, labels, schedule, horizon, current LR, last metric
    lrserve runs show RUN                              # everything GET /v1/runs/{id} says, and the spec
    lrserve runs curve RUN [--start --stop --png F]    # key points, a terminal plot, markers; --csv F for all
    lrserve runs events RUN [--kind change]            # the history
    lrserve runs change RUN --scale 0.5 --dry-run      # preview (current vs proposed), then without --dry-run
    lrserve runs change RUN --set 0.01 --until 5000 | --replace SCHEDULE | --plateau RULES | --no-plateau
    lrserve runs create RUN SPEC.yaml [--label k=v]    # PUT /v1/runs/{id}
    lrserve runs delete RUN [--yes]

Every command takes ``--url`` (``$LRSERVE_URL``, default http://127.0.0.1:8000), ``--token``
(``$LRSERVE_TOKEN``) and ``--json`` (the server's answer as JSON, for scripts). Exit codes: see ``output``.
"""

from __future__ import annotations

import math
import os
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from lrserve.cli.output import EXIT_INVALID, EXIT_USAGE, console, fail, num, print_json, read_text
from lrserve.cli.remote import DEFAULT_URL, Json, Remote, Token, Url, answers_understood

app = typer.Typer(help="Runs on a server: list, show, curve, events, change, create, delete.", no_args_is_help=True)

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="the run's id")]


def _path(run_id: str, suffix: str = "") -> str:
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def _labels(items: list[str] | None) -> dict[str, str]:
    """``KEY:VALUE`` or ``KEY=VALUE`` items as a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        cut = min((item.find(c) for c in ":=" if c in item), default=-1)
        if cut <= 0:
            fail(f"label {item!r}: expected KEY:VALUE or KEY=VALUE", EXIT_USAGE)
        out[item[:cut]] = item[cut + 1 :]
    return out


def _ago(iso: str) -> str:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    sec = max(0.0, (datetime.now(UTC) - then).total_seconds())
    if sec < 60:
        return f"{sec:.0f} s ago"
    if sec < 3600:
        return f"{sec / 60:.0f} min ago"
    if sec < 86400:
        return f"{sec / 3600:.0f} h ago"
    return f"{sec / 86400:.0f} d ago"


def _time(iso: str) -> str:
    """2026-11-23T11:20:37.595396Z -> 2026-11-23 11:20:37 (UTC)."""
    return iso.replace("T", " ")[:19] if len(iso) >= 19 else iso


def _lr_cell(run: dict[str, Any]) -> str:
    return "\n".join(f"{escape(g)} {num(v)}" for g, v in zip(run["group_names"], run["current_lr"], strict=False))


def _metric_cell(metric: dict[str, Any] | None) -> str:
    if not metric:
        return "–"
    return f"{escape(metric['name'])} = {num(_float(metric['value']))} @{metric['step']:,}"


def _float(value: Any) -> float:
    return float(value) if not isinstance(value, str) else float(value.replace("Infinity", "inf"))


# ---- list and show ----------------------------------------------------------------------------------------------


@app.command("list")
@answers_understood
def list_runs(
    url: Url = DEFAULT_URL,
    token: Token = None,
    json_out: Json = False,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY:VALUE (repeatable: all must match)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="runs to list")] = 50,
) -> None:
    """List runs (filtered by labels) with their horizon, current LR per group and last metric."""
    params: dict[str, Any] = {"label": [f"{k}:{v}" for k, v in _labels(label).items()], "limit": limit}
    with Remote(url, token) as remote:
        page = remote.call("GET", "/v1/runs", params=params)
        if json_out:
            print_json(page)
            return
        details = [remote.call("GET", _path(r["run_id"])) for r in page["runs"]]
    if not details:
        console().print("no runs" + (" with these labels" if label else ""))
        return
    table = Table(header_style="bold", padding=(0, 1))
    for col, justify in [
        ("run", "left"),
        ("labels", "left"),
        ("schedule", "left"),
        ("horizon", "right"),
        ("current LR", "left"),
        ("last metric", "left"),
        ("rev", "right"),
        ("updated", "left"),
    ]:
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for run in details:
        total = "" if run["total_steps"] is None else f" / {run['total_steps']:,}"
        table.add_row(
            escape(run["run_id"]),
            escape(" ".join(f"{k}:{v}" for k, v in run["labels"].items())),
            escape(run["schedule_type"]),
            ("–" if run["horizon"] < 0 else f"{run['horizon']:,}") + total,
            _lr_cell(run),
            _metric_cell(run["last_metric"]),
            str(run["revision"]),
            _ago(run["updated_at"]),
        )
    console().print(table)
    if page.get("next_cursor"):
        console().print(f"[dim]more runs: --limit {limit * 2}[/]")


@app.command("show")
@answers_understood
def show(run_id: RunArg, url: Url = DEFAULT_URL, token: Token = None, json_out: Json = False) -> None:
    """A run's state: horizon, revision, incarnation, current LR, plateau, last metric, and its spec."""
    import yaml

    with Remote(url, token) as remote:
        run = remote.call("GET", _path(run_id))
    if json_out:
        print_json(run)
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim")
    table.add_column()
    plateau = run.get("plateau")
    rows = [
        ("run", run["run_id"]),
        ("labels", " ".join(f"{k}:{v}" for k, v in run["labels"].items()) or "–"),
        ("schedule", run["schedule_type"]),
        ("horizon", "none served" if run["horizon"] < 0 else f"{run['horizon']:,} (steps up to it are frozen)"),
        ("total steps", "unbounded" if run["total_steps"] is None else f"{run['total_steps']:,}"),
        ("revision", str(run["revision"])),
        ("incarnation", str(run["incarnation"])),
        ("created", _time(run["created_at"]) + " UTC"),
        ("updated", f"{_time(run['updated_at'])} UTC ({_ago(run['updated_at'])})"),
    ]
    for row in rows:
        table.add_row(row[0], escape(row[1]))
    table.add_row("current LR", _lr_cell(run))
    table.add_row("scale", escape(", ".join(num(s) for s in run["scale"])))
    table.add_row("last metric", _metric_cell(run["last_metric"]))
    if plateau:
        table.add_row(
            "plateau",
            escape(
                f"{plateau['metric']}: best {num(plateau['best'])}, bad {plateau['num_bad']}, "
                f"cooldown {plateau['cooldown_counter']}, reductions {plateau['num_reductions']}"
            ),
        )
    out = console()
    out.print(table)
    out.print("[bold]spec[/]")
    out.print(escape(yaml.safe_dump(run["spec"], sort_keys=False).rstrip()), highlight=False)


# ---- curve ------------------------------------------------------------------------------------------------------


def _markers_table(markers: list[dict[str, Any]]) -> Table:
    table = Table(title="markers", title_justify="left", header_style="bold", padding=(0, 1))
    for col in ("step", "kind", "what", "reason", "actor", "at (UTC)"):
        table.add_column(col, justify="right" if col == "step" else "left")
    for m in markers:
        table.add_row(
            f"{m['step']:,}",
            m["kind"],
            escape(m["detail"]),
            escape(m.get("reason") or ""),
            escape(m.get("actor") or "–"),
            _time(m["at"]),
        )
    return table


def _rows(groups: list[dict[str, Any]], key: str) -> Any:
    import numpy as np

    if any(g.get(key) is None for g in groups):
        return None
    return np.array([[math.nan if v is None else _float(v) for v in g[key]] for g in groups], dtype=np.float64)


@app.command("curve")
@answers_understood
def curve(
    run_id: RunArg,
    url: Url = DEFAULT_URL,
    token: Token = None,
    json_out: Json = False,
    start: Annotated[int, typer.Option(min=0, help="first step")] = 0,
    stop: Annotated[int | None, typer.Option(min=1, help="step after the last (default: the schedule's end)")] = None,
    stride: Annotated[int | None, typer.Option(min=1, help="every Nth step (default: about --points points)")] = None,
    points: Annotated[int, typer.Option(min=2, help="points to fetch when no --stride")] = 5000,
    csv: Annotated[str | None, typer.Option("--csv", help="write the curve as CSV to this file (- for stdout)")] = None,
    png: Annotated[str | None, typer.Option("--png", help="write a PNG plot (needs the \\[plot] extra)")] = None,
    log: Annotated[bool | None, typer.Option("--log/--linear", help="y scale (default: log for wide ranges)")] = None,
) -> None:
    """A run's LR curve (served past and planned future), with its change and plateau markers."""
    import numpy as np

    from lrserve.cli.preview import auto_log, key_table, save_png, term_chart

    with Remote(url, token) as remote:
        if stop is None:
            run = remote.call("GET", _path(run_id))
            bound = run["total_steps"] if run["total_steps"] is not None else run["horizon"] + 1001
            stop = max(bound, run["horizon"] + 2, start + 1)
        if stop <= start:
            fail("--stop must be greater than --start", EXIT_USAGE)
        step = stride or max(1, math.ceil((stop - start) / points))
        params = {"start": start, "stop": stop, "stride": step}
        if csv is not None:
            text = remote.call("GET", _path(run_id, "/curve"), params={**params, "format": "csv"}, text=True)
            if csv == "-":
                typer.echo(text, nl=False)
            else:
                try:
                    with open(csv, "w", encoding="utf-8") as f:
                        f.write(text)
                except OSError as e:
                    fail(f"cannot write {csv}: {e.strerror or e}", EXIT_USAGE)
                console().print(f"wrote {escape(csv)}")
            if not png and not json_out:
                return
        data = remote.call("GET", _path(run_id, "/curve"), params=params)
    if json_out:
        print_json(data)
        return
    xs = np.asarray(data["steps"], dtype=np.int64)
    names = [g["name"] for g in data["groups"]]
    lr = _rows(data["groups"], "lr")
    momentum = _rows(data["groups"], "momentum")
    use_log = auto_log(lr) if log is None else log
    out = console()
    horizon = data["horizon"]
    out.print(
        f"[bold]{escape(run_id)}[/]: steps {start:,}..{stop - 1:,} every {step}, horizon {horizon:,}, "
        f"revision {data['revision']}",
        highlight=False,
    )
    out.print(key_table(xs, names, lr, momentum))
    out.print(term_chart(xs, names, lr, log=use_log))
    if data["markers"]:
        out.print(_markers_table(data["markers"]))
    if png:
        save_png(png, xs, names, lr, log=use_log, momentum=momentum, horizon=horizon, title=run_id)
        out.print(f"wrote {escape(png)}")


# ---- events -----------------------------------------------------------------------------------------------------


def describe(event: dict[str, Any]) -> str:
    p = event.get("payload") or {}
    kind = event["kind"]
    if kind == "created":
        spec = p.get("spec") or {}
        groups = ", ".join(g.get("name", "?") for g in spec.get("param_groups") or [])
        return f"{(spec.get('schedule') or {}).get('type', '?')} · groups {groups}"
    if kind == "metric":
        return f"{p.get('name')} = {num(_float(p.get('value', 'nan')))} at step {p.get('step')}"
    if kind == "change":
        c = p.get("change") or {}
        op = c.get("op")
        what = {
            "scale": f"scale ×{c.get('factor')}",
            "set": f"set lr={c.get('lr')}" + (f" until {c['until_step']}" if c.get("until_step") is not None else ""),
            "replace": f"replace: {(c.get('schedule') or {}).get('type')} ({c.get('origin')})",
            "plateau": f"plateau: watch {(c.get('plateau') or {}).get('metric')}"
            if c.get("plateau")
            else "plateau: off",
        }.get(str(op), str(op))
        return f"{what} from step {p.get('from_step')} → revision {p.get('revision')}"
    if kind == "reduction":
        return f"plateau ×{p.get('multipliers')} from step {p.get('from_step')} (metric at step {p.get('metric_step')})"
    if kind == "resume":
        return f"resumed at step {p.get('step')} → incarnation {p.get('incarnation')}"
    if kind == "applied":
        return f"steps {p.get('start')}..{p.get('stop')} applied offline (plan as of #{p.get('as_of')})"
    return str(p)[:200]


@app.command("events")
@answers_understood
def events(
    run_id: RunArg,
    url: Url = DEFAULT_URL,
    token: Token = None,
    json_out: Json = False,
    after: Annotated[int, typer.Option(min=0, help="events after this seq")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="events to show at most")] = 200,
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="only these kinds: created, metric, change, reduction, resume"),
    ] = None,
) -> None:
    """A run's history: who changed what, when and why; metrics; plateau reductions; resumes."""
    found: list[dict[str, Any]] = []
    cursor: int | None = after
    with Remote(url, token) as remote:
        while cursor is not None and len(found) < limit:
            page = remote.call("GET", _path(run_id, "/events"), params={"after": cursor, "limit": 1000})
            found.extend(e for e in page["events"] if not kind or e["kind"] in kind)
            cursor = page["next_after"]
    found = found[:limit]
    if json_out:
        print_json({"events": found, "more": cursor is not None})
        return
    table = Table(header_style="bold", padding=(0, 1))
    for col in ("#", "at (UTC)", "kind", "actor", "reason", "what"):
        table.add_column(col, justify="right" if col == "#" else "left")
    for e in found:
        table.add_row(
            str(e["seq"]),
            _time(e["at"]),
            e["kind"],
            escape(e.get("actor") or "–"),
            escape(e.get("reason") or ""),
            escape(describe(e)),
        )
    out = console()
    out.print(table)
    if cursor is not None:
        out.print(f"[dim]more events: --after {found[-1]['seq'] if found else after}[/]")


# ---- change -----------------------------------------------------------------------------------------------------


def _structured(value: str, what: str) -> Any:
    """A file's content (or stdin for -) or inline YAML/JSON text, parsed (``schemas.yamlio``'s rules)."""
    from lrserve.schemas.errors import InvalidInput
    from lrserve.schemas.yamlio import load_yaml

    text = read_text(value) if value == "-" or os.path.isfile(value) else value
    try:
        return load_yaml(text)
    except InvalidInput as e:
        fail(f"{what}: {e.detail}", EXIT_USAGE)


def _lr_value(text: str) -> float | list[float] | str:
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        fail(f"--set {text!r}: expected a number, or one per group separated by commas", EXIT_USAGE)
    if not values:
        fail("--set needs a value", EXIT_USAGE)
    return values[0] if len(values) == 1 else values


@app.command("change")
@answers_understood
def change(
    run_id: RunArg,
    url: Url = DEFAULT_URL,
    token: Token = None,
    json_out: Json = False,
    scale: Annotated[float | None, typer.Option("--scale", help="multiply every group's LR by this factor")] = None,
    set_lr: Annotated[str | None, typer.Option("--set", help="hold this LR (or one per group: 0.01,0.1)")] = None,
    until: Annotated[
        int | None, typer.Option("--until", min=0, help="with --set: first step of the plan again")
    ] = None,
    replace: Annotated[
        str | None, typer.Option("--replace", help="new schedule: a YAML/JSON file, - for stdin, or inline text")
    ] = None,
    origin: Annotated[str, typer.Option(help="with --replace: absolute or restart")] = "absolute",
    plateau: Annotated[str | None, typer.Option("--plateau", help="new plateau rules: file, - or inline")] = None,
    no_plateau: Annotated[bool, typer.Option("--no-plateau", help="remove the plateau rules")] = False,
    from_step: Annotated[
        int | None, typer.Option("--from-step", min=0, help="default: the first unserved step")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="why (kept in the history)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="preview: current vs proposed, nothing recorded")] = False,
    preview_steps: Annotated[int | None, typer.Option(min=1, help="dry run: steps to preview")] = None,
    expected_revision: Annotated[
        int | None, typer.Option(help="refuse if the run's revision is not this (someone changed it first)")
    ] = None,
    log: Annotated[bool | None, typer.Option("--log/--linear", help="dry run plot: y scale")] = None,
) -> None:
    """Change a run's schedule from the first unserved step: --scale, --set, --replace, --plateau or --no-plateau.

    Preview it first with --dry-run (a table and plot of the current and proposed curves)."""
    chosen = [
        n
        for n, v in [("--scale", scale), ("--set", set_lr), ("--replace", replace), ("--plateau", plateau)]
        if v is not None
    ]
    if no_plateau:
        chosen.append("--no-plateau")
    if len(chosen) != 1:
        fail(
            "give exactly one of --scale, --set, --replace, --plateau, --no-plateau"
            + (f" (got {', '.join(chosen)})" if chosen else ""),
            EXIT_USAGE,
        )
    body: dict[str, Any]
    if scale is not None:
        body = {"op": "scale", "factor": scale}
    elif set_lr is not None:
        body = {"op": "set", "lr": _lr_value(set_lr)}
        if until is not None:
            body["until_step"] = until
    elif replace is not None:
        body = {"op": "replace", "schedule": _structured(replace, "--replace"), "origin": origin}
    elif plateau is not None:
        body = {"op": "plateau", "plateau": _structured(plateau, "--plateau")}
    else:
        body = {"op": "plateau", "plateau": None}
    if until is not None and set_lr is None:
        fail("--until goes with --set", EXIT_USAGE)
    for key, value in (("from_step", from_step), ("reason", reason), ("expected_revision", expected_revision)):
        if value is not None:
            body[key] = value
    with Remote(url, token) as remote:
        if dry_run:
            body["dry_run"] = True
            if preview_steps is None:
                run = remote.call("GET", _path(run_id))
                first = from_step if from_step is not None else run["horizon"] + 1
                remaining = (run["total_steps"] - first) if run["total_steps"] is not None else 1000
                preview_steps = min(max(remaining, 100), 200_000)
            body["preview_steps"] = preview_steps
        result = remote.call("POST", _path(run_id, "/changes"), json=body)
    if json_out:
        print_json(result)
        return
    out = console()
    if not dry_run:
        out.print(
            f"[green]applied[/]: revision {result['revision']}, from step {result['from_step']:,} "
            f"(event #{result['event_seq']})",
            highlight=False,
        )
        return
    import numpy as np

    from lrserve.cli.preview import auto_log, key_table, term_chart

    xs = np.asarray(result["current"]["steps"], dtype=np.int64)
    names = [g["name"] for g in result["current"]["groups"]]
    current = _rows(result["current"]["groups"], "lr")
    proposed = _rows(result["proposed"]["groups"], "lr")
    use_log = auto_log(np.vstack([current, proposed])) if log is None else log
    out.print(
        f"[yellow]dry run[/] (nothing recorded): takes effect from step {result['from_step']:,}; "
        f"applying makes revision {result['revision'] + 1}",
        highlight=False,
    )
    out.print(key_table(xs, names, current, proposed=proposed))
    out.print(term_chart(xs, names, current, proposed=proposed, log=use_log))
    out.print(f"[dim]apply: the same command without --dry-run (add --expected-revision {result['revision']})[/]")


# ---- create and delete ------------------------------------------------------------------------------------------


@app.command("create")
@answers_understood
def create(
    run_id: RunArg,
    spec_file: Annotated[str, typer.Argument(metavar="SPEC", help="run spec file (YAML or JSON); - for stdin")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    json_out: Json = False,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE or KEY:VALUE (repeatable)")
    ] = None,
) -> None:
    """Create a run from a spec file (idempotent: the same id and spec again is fine)."""
    from lrserve.cli.validate import load_or_exit

    spec = load_or_exit(spec_file, read_text(spec_file))
    labels = _labels(label)
    with Remote(url, token) as remote:
        run = remote.call("PUT", _path(run_id), json={"spec": spec.model_dump(mode="json"), "labels": labels})
    if json_out:
        print_json(run)
        return
    facts = f"{escape(run['schedule_type'])}, revision {run['revision']}, horizon {run['horizon']}"
    console().print(f"run {escape(run['run_id'])}: {facts}")


@app.command("delete")
@answers_understood
def delete(
    run_id: RunArg,
    url: Url = DEFAULT_URL,
    token: Token = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete a run and its whole history (asks first unless --yes)."""
    if not yes and not typer.confirm(f"Delete run {run_id} and its whole history?", default=False):
        fail("not deleted", EXIT_INVALID)
    with Remote(url, token) as remote:
        remote.call("DELETE", _path(run_id))
    console().print(f"deleted {escape(run_id)}")
