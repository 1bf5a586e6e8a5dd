"""``lrserve serve`` failing as a new user makes it fail: one line (or the settings table) on stderr, an exit code
from ``cli.output``, never a traceback; "ready" only once the port is held."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lrserve.cli.output import EXIT_INVALID, EXIT_UNREACHABLE, EXIT_USAGE
from tests.cli.conftest import Run
from tests.e2e.server import ServerProcess, free_port, lrserve_command


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No LRSERVE_* from the calling shell; serve's SIGTERM handler is put back; a working directory of its own."""
    for var in [v for v in os.environ if v.upper().startswith("LRSERVE_")]:
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def serve(lrserve: Run, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = lrserve("serve", "--port", str(free_port()), *args, env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ---- the store --------------------------------------------------------------------------------------------------


def test_sqlite_in_a_missing_directory(lrserve: Run) -> None:
    code, err = serve(lrserve, "--store", "sqlite:////nonexistent/dir/x.db")
    assert code == EXIT_UNREACHABLE
    assert one_line(err) == (
        "lrserve: cannot open the store sqlite:////nonexistent/dir/x.db: unable to open database file "
        "(does the directory /nonexistent/dir exist and is it writable?)"
    )


@pytest.mark.parametrize(
    ("name", "hint"),
    [("a-dir", "is a directory: name a file in it"), ("not-a-db", "is not an SQLite database")],
)
def test_sqlite_on_a_directory_or_another_file(lrserve: Run, tmp_path: Path, name: str, hint: str) -> None:
    target = tmp_path / name
    if name == "a-dir":
        target.mkdir()
    else:
        target.write_bytes(b"\x00\x01 not sqlite " * 100)
    code, err = serve(lrserve, "--store", f"sqlite:///{target}")
    assert code == EXIT_UNREACHABLE
    assert one_line(err).startswith(f"lrserve: cannot open the store sqlite:///{target}: ")
    assert hint in err


def test_postgres_port_with_nothing_listening(lrserve: Run) -> None:
    port = free_port()
    code, err = serve(lrserve, "--store", f"postgresql+psycopg://me:hunter2pw@127.0.0.1:{port}/test")
    assert code == EXIT_UNREACHABLE
    line = one_line(err)
    assert line.startswith(f"lrserve: cannot open the store postgresql+psycopg://me:***@127.0.0.1:{port}/test: ")
    assert "Connection refused" in line
    assert f"is PostgreSQL running and listening on 127.0.0.1:{port}?" in line
    assert "hunter2pw" not in err


@pytest.mark.postgres
def test_postgres_role_that_does_not_exist(lrserve: Run, pg_admin_url: str) -> None:
    from sqlalchemy.engine import make_url

    admin = make_url(pg_admin_url)
    url = admin.set(username="nosuchrole", password="hunter2pw").render_as_string(hide_password=False)
    code, err = serve(lrserve, "--store", url)
    assert code == EXIT_UNREACHABLE
    line = one_line(err)
    assert 'role "nosuchrole" does not exist' in line
    assert "createuser nosuchrole" in line
    assert "hunter2pw" not in err and "nosuchrole:***@" in line


def test_store_url_that_does_not_parse(lrserve: Run) -> None:
    code, err = serve(lrserve, "--store", "not a url")
    assert code == EXIT_USAGE
    assert "cannot parse the store URL" in one_line(err)


# ---- settings -------------------------------------------------------------------------------------------------


def test_bad_flag_value_is_a_settings_table(lrserve: Run) -> None:
    code, err = serve(lrserve, "--log-level", "loud")
    assert code == EXIT_INVALID
    lines = err.splitlines()
    assert lines[0] == "lrserve: invalid settings (1 error(s))"
    assert lines[1].split() == ["field", "problem"]
    assert lines[2].split()[:2] == ["log_level", "(--log-level)"]
    assert "(got 'loud')" in lines[2]
    assert "pydantic.dev" not in err and "[type=" not in err


def test_bad_environment_values_name_the_variable(lrserve: Run) -> None:
    code, err = serve(lrserve, env={"LRSERVE_WORKERS": "many", "LRSERVE_LIMITS__MAX_LEASE": "0"})
    assert code == EXIT_INVALID
    assert "invalid settings (2 error(s))" in err
    assert "workers (LRSERVE_WORKERS)" in err
    assert "limits.max_lease (LRSERVE_LIMITS__MAX_LEASE)" in err


def test_bad_config_file_values_name_the_file(lrserve: Run, tmp_path: Path) -> None:
    config = tmp_path / "lrserve.yaml"
    config.write_text("workers: high\nprot: 8000\n")  # (the port comes from --port)
    code, err = serve(lrserve, "--config", str(config))
    assert code == EXIT_INVALID
    assert f"workers ({config})" in err and "(got 'high')" in err
    assert f"prot ({config})" in err and "unknown setting; the settings are" in err


@pytest.mark.parametrize(
    ("content", "code", "problem"),
    [
        (None, EXIT_USAGE, "does not exist"),
        (b"\x00\xff\xfe binary", EXIT_USAGE, "is not UTF-8 text"),
        (b"port: [8000\n", EXIT_INVALID, "is not valid YAML: line 2, column 1"),
        (b"- store\n- port\n", EXIT_INVALID, "holds a list, not a mapping of settings"),
    ],
)
def test_config_file_that_cannot_be_used(
    lrserve: Run, tmp_path: Path, content: bytes | None, code: int, problem: str
) -> None:
    config = tmp_path / "lrserve.yaml"
    if content is not None:
        config.write_bytes(content)
    got, err = serve(lrserve, "--config", str(config))
    assert got == code
    assert err.splitlines()[0] == f"lrserve: cannot use the config file {config}"
    assert "config (--config)" in err and problem in err


def test_config_from_the_environment_that_is_a_directory(lrserve: Run, tmp_path: Path) -> None:
    code, err = serve(lrserve, env={"LRSERVE_CONFIG": str(tmp_path)})
    assert code == EXIT_USAGE
    assert "config (LRSERVE_CONFIG)" in err and "is a directory, not a file" in err


# ---- the port (real processes) --------------------------------------------------------------------------------


def test_port_in_use_is_said_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*lrserve_command(), "serve", "--port", str(port), "--store", f"sqlite:///{tmp_path / 'x.db'}"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            check=False,
        )
    assert result.returncode == EXIT_UNREACHABLE
    output = result.stdout + result.stderr
    assert "ready" not in output and "Traceback" not in output
    assert one_line(result.stderr).startswith(f"lrserve: port {port} on 127.0.0.1 is in use")


def test_ready_is_logged_once_the_port_is_bound(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path / 'x.db'}")
    with server:
        pass
    messages = [json.loads(line)["message"] for line in server.log().splitlines() if line.startswith("{")]
    bound = next(
        i for i, m in enumerate(messages) if m.startswith(f"Uvicorn running on http://127.0.0.1:{server.port}")
    )
    ready = next(i for i, m in enumerate(messages) if " ready: store " in m)
    assert bound < ready, messages
