"""The ``lrserve`` command.

    lrserve serve [--config FILE] [--host H] [--port P] [--store URL] [--workers N]
    lrserve token new NAME --scopes read,train     # a fresh token and the config entry holding its hash
    lrserve token hash [TOKEN]                     # the sha256 of an existing token (read from stdin if omitted)

Server imports happen inside the commands, so the command loads with the base install (client side).
Further command groups (validate, preview, runs) are added as sub-apps with ``app.add_typer``.

``serve`` checks what it can before uvicorn starts, so each problem is one line (or one table) on stderr and an
exit code (see ``output``), never a traceback in a log line: the settings, the config file, the port (bound here
and handed to uvicorn, so "ready" is only said once it is held) and the store (opened and migrated once).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from lrserve.cli import preview, runs, validate
from lrserve.cli.output import EXIT_INVALID, EXIT_UNREACHABLE, EXIT_USAGE, fail, fail_table

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.engine import URL

    from lrserve.service.settings import Settings

app = typer.Typer(name="lrserve", help="Learning-rate schedules as a service.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens: make one, or hash one for the config.", no_args_is_help=True)
app.add_typer(token_app, name="token")
# Client-side commands (no server imports): cli/validate.py, cli/preview.py, cli/runs.py.
app.command("validate")(validate.validate)
app.command("preview")(preview.preview)
app.add_typer(runs.app, name="runs")

#: uvicorn's default listen backlog.
BACKLOG = 2048


def _exit_cleanly(signum: int, _frame: object) -> None:
    """SIGTERM outside uvicorn's graceful shutdown (which raises it again when done, for the handler it found):
    exit 0, which is how a supervisor (Docker, systemd, Kubernetes) tells a clean stop from a crash. Further
    SIGTERMs are ignored from here: Python restores the default action of handled signals while it finalizes, and
    one arriving then would kill the process (exit 143)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


# ---- settings and config file -----------------------------------------------------------------------------------


def _check_config_file(path: Path, via: str) -> None:
    """Exit with a table row unless ``path`` holds a YAML mapping (or nothing): 2 if it cannot be read, 1 if it is
    not YAML. pydantic-settings would raise bare OSError, UnicodeDecodeError, YAMLError or TypeError."""
    import yaml

    def bad(problem: str, code: int) -> NoReturn:
        fail_table(
            f"cannot use the config file {path}", [{"path": f"config ({via})", "msg": f"{path} {problem}"}], code
        )

    if path.is_dir():
        bad("is a directory, not a file", EXIT_USAGE)
    if not path.exists():
        bad("does not exist", EXIT_USAGE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        bad(f"cannot be read: {e.strerror or e}", EXIT_USAGE)
    except UnicodeDecodeError:
        bad("is not UTF-8 text (a YAML file?)", EXIT_USAGE)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        bad(f"is not valid YAML: {where}{getattr(e, 'problem', None) or str(e).splitlines()[0]}", EXIT_INVALID)
    if data is not None and not isinstance(data, dict):
        bad(f"holds a {type(data).__name__}, not a mapping of settings (store: ..., port: ...)", EXIT_INVALID)


def _source(field: str, given: dict[str, Any], config: Path | None) -> str:
    """Where a setting's value came from: the flag, the environment variable, else the config file."""
    if given.get(field) is not None:
        return f"--{field.replace('_', '-')}"
    name = f"LRSERVE_{field}".upper()
    for var in os.environ:
        if var.upper() == name or var.upper().startswith(name + "__"):
            return var
    return str(config) if config is not None else ""


def _settings_errors(error: ValidationError, given: dict[str, Any], config: Path | None) -> list[dict[str, str]]:
    """pydantic's errors as ``validate``'s rows: the field (and where its value came from), the rule it broke."""
    from lrserve.service.settings import Settings

    rows = []
    for e in error.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        source = _source(loc[0], given, config) if loc else ""
        msg = e["msg"]
        if e["type"] == "extra_forbidden" and len(loc) == 1:
            msg = f"unknown setting; the settings are {', '.join(sorted(Settings.model_fields))}"
        elif loc[:1] != ["store"] and e["type"] != "missing" and isinstance(e.get("input"), str | int | float):
            msg += f" (got {e['input']!r})"  # never the store URL: it may hold a password
        rows.append({"path": ".".join(loc) + (f" ({source})" if source else ""), "msg": msg, "type": e["type"]})
    return rows


def _load_settings(config: Path | None, given: dict[str, Any]) -> Settings:
    from pydantic import ValidationError

    from lrserve.service.settings import CONFIG_ENV, load_settings

    path = config if config is not None else (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is not None:
        _check_config_file(path, "--config" if config is not None else CONFIG_ENV)
    try:
        return load_settings(config, **given)
    except ValidationError as e:
        rows = _settings_errors(e, given, path)
        fail_table(f"invalid settings ({len(rows)} error(s))", rows, EXIT_INVALID)
    except (OSError, ValueError, TypeError) as e:  # the file changed since it was checked
        fail(f"cannot load the settings: {e}", EXIT_USAGE)


# ---- the port and the store ---------------------------------------------------------------------------------------


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (bound as uvicorn would bind it), or exit with what is wrong."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except socket.gaierror as e:
        sock.close()
        fail(f"cannot listen on {host}: unknown host ({e.strerror}); use an address such as 127.0.0.1", EXIT_USAGE)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            fail(
                f"port {port} on {host} is in use (another lrserve? `ss -ltnp 'sport = :{port}'` names the program); "
                "stop it or choose another --port",
                EXIT_UNREACHABLE,
            )
        if e.errno == errno.EACCES:
            fail(f"port {port} on {host} needs privileges: choose a port above 1023", EXIT_USAGE)
        if e.errno == errno.EADDRNOTAVAIL:
            fail(f"cannot listen on {host}: not an address of this machine (e.g. 127.0.0.1 or 0.0.0.0)", EXIT_USAGE)
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}", EXIT_UNREACHABLE)
    sock.set_inheritable(True)  # worker processes serve on it
    return sock


def _store_hint(url: URL, reason: str) -> str:
    """What to check, for the usual reasons a store does not open."""
    if url.get_backend_name() == "sqlite":
        path = os.path.abspath(url.database or "")
        directory = os.path.dirname(path)
        if os.path.isdir(path):
            return f"{path} is a directory: name a file in it, e.g. sqlite:///{os.path.join(path, 'lrserve.db')}"
        if "unable to open" in reason:
            return f"does the directory {directory} exist and is it writable?"
        if "readonly" in reason:
            return f"are {path} and its directory {directory} writable?"
        if "not a database" in reason:
            return f"{path} is not an SQLite database: point --store at another file"
        if "full" in reason or "disk I/O" in reason:
            return f"is the disk holding {directory} full or failing?"
        return ""
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    hints = [
        ("Connection refused", f"is PostgreSQL running and listening on {where}?"),
        ("role", f"create the role with `createuser {url.username}`, or name an existing user in the URL"),
        ("password authentication failed", "check the user name and password in the URL"),
        ("does not exist", f"create the database with `createdb {url.database}`, or name an existing one"),
        ("no pg_hba.conf entry", "the server's pg_hba.conf does not let this user connect from here"),
        ("timeout expired", f"nothing answered at {where}: is the host reachable, the port right?"),
        ("translate host name", "check the host name in the URL"),
    ]
    return next((hint for needle, hint in hints if needle in reason), "")


def _store_problem(url: URL, error: BaseException) -> str:
    """One line: which store (password hidden), the driver's reason, what to check."""
    reason = " ".join(str(error).split())
    for prefix in ("the database is unavailable: ", "database error: ", "connection failed: "):
        reason = reason.removeprefix(prefix)
    if url.password:
        reason = reason.replace(str(url.password), "***")
    hint = _store_hint(url, reason)
    return f"cannot open the store {url.render_as_string(hide_password=True)}: {reason}" + (
        f" ({hint})" if hint else ""
    )


def _check_store(store_url: str) -> None:
    """Open and migrate the store once, as each worker's startup will: a store that cannot be opened is said here,
    in one line, rather than as a traceback of the application's failed startup."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from lrserve.schemas.errors import LrserveError
    from lrserve.service.store.sql import SqlStore

    url = make_url(store_url)
    try:
        store = SqlStore(store_url)
    except ImportError as e:
        fail(
            f"cannot open the store {url.render_as_string(hide_password=True)}: its driver is missing ({e})", EXIT_USAGE
        )
    try:
        store.migrate()
    except (LrserveError, SQLAlchemyError) as e:
        fail(_store_problem(url, e), EXIT_UNREACHABLE)
    finally:
        store.close()


# ---- serve --------------------------------------------------------------------------------------------------------


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
    from sqlalchemy.exc import ArgumentError

    from lrserve.service.logs import lean_records, log_config
    from lrserve.service.settings import CONFIG_ENV
    from lrserve.service.store.engines import normalize_url

    given = {"host": host, "port": port, "store": store, "workers": workers, "log_level": log_level}
    settings = _load_settings(config, given)
    try:
        backend = normalize_url(settings.store).get_backend_name()
    except ArgumentError:
        fail(
            "cannot parse the store URL: use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db", EXIT_USAGE
        )
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    refusal = settings.bind_problem()
    if refusal is not None:
        fail(refusal, EXIT_USAGE)
    if settings.workers > 1 and backend == "sqlite":
        # Each worker is a process with its own cache of run state; on SQLite (store.shared is False) those
        # caches assume one writer process. Several processes on one database need PostgreSQL.
        fail(
            f"--workers {settings.workers} needs PostgreSQL: on SQLite run one worker (it serves thousands of "
            "requests a second), or use --store postgresql+psycopg://...",
            EXIT_USAGE,
        )
    sock = _listen(settings.host, settings.port)
    try:
        _check_store(settings.store)

        import uvicorn
        from uvicorn.supervisors import Multiprocess

        lean_records()
        common: dict[str, Any] = {
            "host": settings.host,
            "port": sock.getsockname()[1],
            "log_config": log_config(settings.log_level, settings.log_format),
            "log_level": settings.log_level,
            "access_log": False,  # INFO access lines cost ~24 % of throughput; settings.request_log is ours
            "timeout_graceful_shutdown": settings.shutdown_timeout,
            "server_header": False,
            "backlog": BACKLOG,
        }
        if settings.workers == 1:
            from lrserve.service.app import create_app

            server_config = uvicorn.Config(create_app(settings), **common)
        else:
            # Worker processes rebuild the app from the environment: pass on what the command line said.
            for key, value in given.items():
                if value is not None:
                    os.environ[f"LRSERVE_{key.upper()}"] = str(value)
            if config is not None:
                os.environ[CONFIG_ENV] = str(config.resolve())
            server_config = uvicorn.Config(
                "lrserve.service.app:app_from_env", factory=True, workers=settings.workers, **common
            )
        # uvicorn logs this when it binds; given a socket, it does not (the log config is in place from here).
        scheme_host = f"[{settings.host}]" if ":" in settings.host else settings.host
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on http://%s:%d (Press CTRL+C to quit)", scheme_host, common["port"]
        )
        if settings.workers > 1:
            Multiprocess(server_config, sockets=[sock]).run()
            return
        server = uvicorn.Server(server_config)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn shut down gracefully, then raised it again
            server.run(sockets=[sock])
        if not server.started:  # the application's startup failed (uvicorn said why)
            raise typer.Exit(3)
    finally:
        sock.close()


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
        fail(f"unknown scopes {unknown}; choose from {', '.join(GRANTS)}", EXIT_USAGE)
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
        fail("no token given", EXIT_USAGE)
    typer.echo(hash_token(value))


if __name__ == "__main__":
    app()
