"""Real servers for the client tests: the app under uvicorn in a thread (fast), or ``lrserve serve`` as a child
process (for kill/restart), each on a real SQLite file; and small training set-ups on CPU."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, free_port

ONECYCLE_SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.01}, {"name": "head", "lr": 0.1}],
    "schedule": {"type": "OneCycleLR", "max_lr": [0.1, 1.0], "total_steps": 400, "cycle_momentum": True},
}


class ThreadServer:
    """``create_app(settings)`` served by uvicorn in a daemon thread."""

    def __init__(self, db: Path, port: int | None = None) -> None:
        import uvicorn

        from lrserve.service.app import create_app
        from lrserve.service.settings import Settings

        self.port = port or free_port()
        settings = Settings(store=f"sqlite:///{db}", port=self.port, log_level="warning")
        config = uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    srv = ThreadServer(tmp_path_factory.mktemp("srv") / "lrserve.db").start()
    yield srv
    srv.stop()


@pytest.fixture
def run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path / 'lrserve.db'}", "--log-level", "warning")
    proc.start()
    yield proc
    proc.stop()


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.01)
