"""What the client-side commands share: consoles, failing with a message, human numbers, JSON for scripts.

Exit codes of ``validate``, ``preview`` and ``runs``: 0 done; 1 the spec is invalid or the server refused the
request (its problem is printed); 2 bad usage or an unreadable file; 3 the server could not be reached.
``serve`` follows them: 1 invalid settings (flags, ``LRSERVE_*`` or the config file's values), 2 bad usage, a
refused configuration or an unreadable config file, 3 what the server needs cannot be had (the store cannot be
opened, the port is in use; uvicorn's own startup failure is 3 too).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


def console() -> Console:
    return Console(highlight=False, soft_wrap=True)  # long lines stay whole (tables still fit the width)


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_INVALID, details: Iterable[str] = ()) -> NoReturn:
    """Print ``lrserve: message`` (and indented details) on stderr and exit with ``code``; no traceback."""
    err = err_console()
    err.print(f"[bold red]lrserve:[/] {escape(message)}", highlight=False, soft_wrap=True)
    for line in details:
        err.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def error_table(errors: Iterable[Mapping[str, str]], root: str = "(spec)") -> Table:
    """The field/problem table ``lrserve validate`` prints for an invalid spec: one row per ``{"path", "msg"}``."""
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    table.add_column("field")
    table.add_column("problem")
    for e in errors:
        table.add_row(escape(e["path"] or root), escape(e["msg"]))
    return table


def fail_table(message: str, errors: list[dict[str, str]], code: int = EXIT_INVALID, root: str = "") -> NoReturn:
    """``lrserve: message`` and the errors' field/problem table on stderr, then exit with ``code``; no traceback.
    Off a terminal (a log file, a supervisor) rows are not wrapped, so each error stays on one line."""
    err = err_console()
    if not err.is_terminal:
        err = Console(stderr=True, highlight=False, width=1000)
    err.print(f"[bold red]lrserve:[/] {escape(message)}", highlight=False, soft_wrap=True)
    err.print(error_table(errors, root))
    raise typer.Exit(code)


def print_json(data: Any) -> None:
    """JSON on stdout, for scripts (NaN/inf as the strings the API uses)."""
    typer.echo(json.dumps(_jsonable(data), indent=2, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def num(value: float | None) -> str:
    """A learning rate or metric as people read it: 0.1, 0.0025, 3.2e-06."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == 0:
        return "0"
    a = abs(value)
    if 1e-3 <= a < 1e5:
        return f"{value:.4g}"
    mant, exp = f"{value:.2e}".split("e")
    return f"{float(mant):g}e{int(exp)}"


def steps(value: int | None) -> str:
    """A step count: 1,000,000."""
    return "–" if value is None else f"{value:,}"


def read_text(path: str) -> str:
    """A file's text, or stdin for ``-``; an unreadable file exits 2 with the reason."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}", EXIT_USAGE)
    except UnicodeDecodeError:
        fail(f"cannot read {path}: not UTF-8 text", EXIT_USAGE)
