"""``lrserve validate SPEC.yaml [MORE.yaml ...]``: check run specs locally (no server), errors with field paths.

A file holds a run spec (``param_groups``, ``schedule``, ``plateau``) in YAML or JSON, or a ``PUT /v1/runs/{id}``
body with the spec under ``spec`` (its error paths then start with ``spec.``). ``-`` reads stdin.
Exit 0 when every spec is valid, 1 when one is not, 2 when a file cannot be read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lrserve.cli.output import EXIT_INVALID, console, fail, print_json, read_text, steps

if TYPE_CHECKING:
    from lrserve.schemas.specs.run import RunSpec


def _unwrap(data: Any) -> tuple[Any, tuple[str, ...]]:
    if isinstance(data, dict) and "spec" in data and "schedule" not in data:
        return data["spec"], ("spec",)
    return data, ()


def parse(text: str) -> tuple[RunSpec | None, dict[str, Any]]:
    """The spec in ``text``, or None and ``{"summary", "errors": [{"path", "msg", "type"}]}``.

    Checked as the server checks it: the YAML rules of ``schemas.yamlio``, the spec's fields, and its values on the
    check grid (``schemas.validation.check_values``: a non-finite or negative LR at a step the schedule defines).
    """
    from lrserve.schemas.errors import InvalidInput, SpecInvalid
    from lrserve.schemas.validation import check_values, validate_run_spec
    from lrserve.schemas.yamlio import load_yaml

    try:
        data = load_yaml(text)
    except InvalidInput as exc:
        return None, {"summary": exc.detail, "errors": [{"path": "", "msg": exc.detail, "type": "syntax"}]}
    spec_data, prefix = _unwrap(data)
    if spec_data is None:
        return None, {"summary": "empty file", "errors": [{"path": "", "msg": "the file is empty", "type": "missing"}]}
    try:
        spec = validate_run_spec(spec_data)
        check_values(spec)
        return spec, {}
    except SpecInvalid as e:
        errors = [
            {"path": ".".join(str(p) for p in (*prefix, *err.loc)), "msg": err.msg, "type": err.type}
            for err in e.errors
        ] or [{"path": "", "msg": e.detail, "type": "invalid"}]
        return None, {"summary": e.detail, "errors": errors}


def load_or_exit(label: str, text: str) -> RunSpec:
    """The spec, or exit 1 printing every error with its path."""
    spec, problem = parse(text)
    if spec is None:
        fail(
            f"{label}: invalid spec", EXIT_INVALID, [f"{e['path'] or '(spec)'}: {e['msg']}" for e in problem["errors"]]
        )
    return spec


def check_text(text: str) -> dict[str, Any]:
    """``{"valid", "summary", "errors": [{"path", "msg", "type"}], ...}`` for one spec's text."""
    from lrserve.schemas.evaluate import build

    spec, problem = parse(text)
    if spec is None:
        return {"valid": False, **problem}
    total = build(spec).total_steps
    return {
        "valid": True,
        "summary": "ok",
        "errors": [],
        "schedule_type": str(getattr(spec.schedule, "type", type(spec.schedule).__name__)),
        "param_groups": spec.group_names,
        "total_steps": total,
        "plateau_metric": None if spec.plateau is None else spec.plateau.metric,
    }


def validate(
    files: Annotated[list[str], typer.Argument(help="spec files (YAML or JSON); - for stdin", show_default=False)],
    json_out: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
) -> None:
    """Check run specs (YAML or JSON) without a server: every error with its field path. Exit 1 if one is invalid."""
    results = []
    for path in files:
        result = check_text(read_text(path))
        results.append({"file": path, **result})
    if json_out:
        print_json(results)
    else:
        out = console()
        for r in results:
            if r["valid"]:
                plateau = f", plateau on {r['plateau_metric']}" if r["plateau_metric"] else ""
                total = "unbounded" if r["total_steps"] is None else f"{steps(r['total_steps'])} steps"
                groups = ", ".join(r["param_groups"])
                out.print(
                    f"[green]✓[/] {escape(r['file'])}: {r['schedule_type']}, {len(r['param_groups'])} param group(s) "
                    f"({escape(groups)}), {total}{escape(plateau)}",
                    highlight=False,
                    soft_wrap=True,
                )
                continue
            out.print(
                f"[red]✗[/] {escape(r['file'])}: invalid spec ({len(r['errors'])} error(s))",
                highlight=False,
                soft_wrap=True,
            )
            table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
            table.add_column("field")
            table.add_column("problem")
            for e in r["errors"]:
                table.add_row(escape(e["path"] or "(spec)"), escape(e["msg"]))
            out.print(table)
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_INVALID)
