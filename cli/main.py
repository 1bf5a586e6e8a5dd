"""The ``lrserve`` command.

    lrserve serve [--config FILE] [--host H] [--port P] [--store URL] [--workers N]
    lrserve token new NAME --scopes read,train     # a fresh token and the config entry holding its hash
    lrserve token hash [TOKEN]                     # the sha256 of an existing token (read from stdin if omitted)

Server imports happen inside the commands, so the command loads with the base install (client side).
Further command groups (validate, preview, runs) are added as sub-apps with ``app.add_typer``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lrserve.cli import preview, runs, validate

app = typer.Typer(name="lrserve", help="Learning-rate schedules as a service.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: make one, or hash one for the config.", no_args_is_help=True)
app.add_typer(token_app, name="token")
# Client-side commands (no server imports): cli/validate.py, cli/preview.py, cli/runs.py.
app.command("validate")(validate.validate)
app.command("preview")(preview.preview)
app.add_typer(runs.app, name="runs")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"lrserve: {message}", err=True)
    return typer.Exit(2)


def _exit_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM outside uvicorn's graceful shutdown (which raises it again when done, for the handler it found):
    exit 0, which is how a supervisor (Docker, systemd, Kubernetes) tells a clean stop from a crash. Further
    SIGTERMs are ignored from here: Python restores the default action of handled signals while it finalizes, and
    one arriving then would kill the process (exit 143)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (also $LRSERVE_CONFIG)", dir_okay=False)
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    store: Annotated[str | None, typer.Option(help="database URL (default sqlite:///./lrserve.db)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (PostgreSQL only above 1)")] = None,
    log_level: Annotated[str | None, typer.Option(help="critical, error, warning, info or debug")] = None,
) -> None:
    """Run the server (uvicorn). SIGTERM or Ctrl-C: stop accepting, finish requests in flight, close the store."""
    signal.signal(signal.SIGTERM, _exit_cleanly)  # before uvicorn runs: a plain exit 0; while it runs: graceful
    from pydantic import ValidationError

    from lrserve.service.logs import lean_records, log_config
    from lrserve.service.settings import CONFIG_ENV, load_settings
    from lrserve.service.store.engines import normalize_url

    try:
        settings = load_settings(config, host=host, port=port, store=store, workers=workers, log_level=log_level)
        backend = normalize_url(settings.store).get_backend_name()
    except (ValidationError, FileNotFoundError, ValueError) as e:
        raise _fail(f"bad settings: {e}") from None
    refusal = settings.bind_problem()
    if refusal is not None:
        raise _fail(refusal)
    if settings.workers > 1 and backend == "sqlite":
        # Each worker is a process with its own cache of run state; on SQLite (store.shared is False) those
        # caches assume one writer process. Several processes on one database need PostgreSQL.
        raise _fail(
            f"--workers {settings.workers} needs PostgreSQL: on SQLite run one worker (it serves thousands of "
            "requests a second), or use --store postgresql+psycopg://..."
        )

    import uvicorn

    lean_records()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_level, settings.log_format),
        "log_level": settings.log_level,
        "access_log": False,  # INFO access lines cost ~24 % of throughput; settings.request_log is ours
        "timeout_graceful_shutdown": settings.shutdown_timeout,
        "server_header": False,
    }
    if settings.workers == 1:
        from lrserve.service.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    # Worker processes rebuild the app from the environment: pass on what the command line said.
    overrides = {"STORE": store, "HOST": host, "PORT": port, "WORKERS": workers, "LOG_LEVEL": log_level}
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"LRSERVE_{key}"] = str(value)
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    uvicorn.run("lrserve.service.app:app_from_env", factory=True, workers=settings.workers, **common)


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Argument(help="the token's name (recorded as the actor of its writes)")],
    scopes: Annotated[str, typer.Option(help="comma-separated: read, train, admin")] = "read",
) -> None:
    """Print a fresh token (give it to the client) and the config entry with its hash (give it to the server)."""
    from lrserve.service.auth import GRANTS, hash_token, new_token

    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in GRANTS]
    if unknown or not wanted:
        raise _fail(f"unknown scopes {unknown}; choose from {', '.join(GRANTS)}")
    token = new_token()
    typer.echo(f"token (shown once; the server keeps only its hash):\n  {token}\n")
    typer.echo("config entry (under `tokens:`):")
    typer.echo(f"  - {{name: {name}, sha256: {hash_token(token)}, scopes: [{', '.join(wanted)}]}}")


@token_app.command("hash")
def token_hash(
    token: Annotated[str | None, typer.Argument(help="the token; omit to read it from stdin")] = None,
) -> None:
    """Print the sha256 digest of a token, as the config's ``tokens[].sha256`` wants it."""
    from lrserve.service.auth import hash_token

    value = token if token is not None else sys.stdin.readline().strip()
    if not value:
        raise _fail("no token given")
    typer.echo(hash_token(value))


if __name__ == "__main__":
    app()
