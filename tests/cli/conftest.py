"""The CLI through typer's runner (and a few real subprocesses), against a real server in a thread."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from lrserve.cli.main import app
from lrserve.service.auth import hash_token
from lrserve.service.settings import Settings, TokenConfig
from tests.web.live import LiveServer

ADMIN_TOKEN = "cli-admin-secret"

Run = Callable[..., Result]


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("cli") / "lrserve.db"
    with LiveServer(Settings(store=f"sqlite:///{db}")) as server:
        yield server


@pytest.fixture(scope="session")
def cli_token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db = tmp_path_factory.mktemp("cli-tokens") / "lrserve.db"
    tokens = [TokenConfig(name="ops", sha256=hash_token(ADMIN_TOKEN), scopes=["admin"])]
    with LiveServer(Settings(store=f"sqlite:///{db}", tokens=tokens)) as server:
        yield server


@pytest.fixture
def closed_url() -> str:
    """A URL nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def lrserve(monkeypatch: pytest.MonkeyPatch) -> Run:
    """``lrserve(*args, input=None, env=None)``: the command's Result (stdout, stderr, exit_code, exception)."""
    for var in ("LRSERVE_URL", "LRSERVE_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(app, list(args), input=input, env={"COLUMNS": "120", **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback a user would have seen
        return result

    return invoke


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], str]:
    def make(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return make
