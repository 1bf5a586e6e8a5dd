"""``lrserve serve`` as a real process: HTTP on a free port, config file and tokens, refusals, clean SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lrserve.service.auth import hash_token
from tests.e2e.server import ServerProcess, free_port, lrserve_command

SPEC = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5}}
ONE_MILLION = {"stop": 1_000_000, "format": "csv"}

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> ServerProcess:
    return ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path / 'lrserve.db'}")


def test_serves_http_and_survives_a_restart(server: ServerProcess) -> None:
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.put("/v1/runs/job", json={"spec": SPEC}).status_code == 201
        served = http.get("/v1/runs/job/lr", params={"step": 0, "count": 25}).json()
        assert http.post("/v1/runs/job/metrics", json={"step": 0, "name": "loss", "value": 1.0}).status_code == 200
        assert http.get("/v1/runs/nope").headers["content-type"] == "application/problem+json"
    assert "lrserve stopped" in server.log()
    with server.start(), httpx.Client(base_url=server.url, timeout=30) as http:
        again = http.get("/v1/runs/job/lr", params={"step": 0, "count": 25}).json()
        assert again["groups"] == served["groups"]
        assert http.get("/v1/runs/job").json()["horizon"] == 24


def test_sigterm_finishes_the_request_in_flight(server: ServerProcess) -> None:
    with server, httpx.Client(base_url=server.url, timeout=60) as http:
        http.put("/v1/runs/job", json={"spec": SPEC})
        with http.stream("GET", "/v1/runs/job/curve", params=ONE_MILLION) as response:
            assert response.status_code == 200  # headers are in: the request is in flight
            server.signal(signal.SIGTERM)
            lines = sum(chunk.count(b"\n") for chunk in response.iter_bytes())
        assert lines == 1_000_001
        code = server.wait(timeout=30)
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    log = server.log()
    assert "lrserve stopped" in log
    assert "Application shutdown complete" in log
    assert "Traceback" not in log


def test_sigterm_refuses_new_connections_then_exits(server: ServerProcess) -> None:
    server.start()
    server.signal(signal.SIGTERM)
    assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_config_file_tokens_and_env_override(tmp_path: Path) -> None:
    config = tmp_path / "lrserve.yaml"
    config.write_text(
        f"store: sqlite:///{tmp_path / 'from-file.db'}\n"
        "tokens:\n"
        f"  - {{name: trainer, sha256: {hash_token('t0ken')}, scopes: [train]}}\n"
        f"presets:\n  steps: {json.dumps(SPEC)}\n"  # JSON is YAML
    )
    env_db = tmp_path / "from-env.db"
    server = ServerProcess(tmp_path, "--config", str(config), env={"LRSERVE_STORE": f"sqlite:///{env_db}"})
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/v1/runs").status_code == 401
        auth = {"Authorization": "Bearer t0ken"}
        assert http.put("/v1/runs/job", json={"preset": "steps"}, headers=auth).status_code == 201
        assert http.post("/v1/runs/job/changes", json={"op": "scale", "factor": 2}, headers=auth).status_code == 403
        assert http.get("/v1/runs/job/events", headers=auth).json()["events"][0]["actor"] == "trainer"
    assert env_db.exists()  # LRSERVE_STORE beat the file's store
    assert not (tmp_path / "from-file.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "no API tokens"),
        (["--workers", "2"], "needs PostgreSQL"),
        (["--config", "/no/such/file.yaml"], "does not exist"),
        (["--store", "mysql://db/x"], "unsupported database URL"),
    ],
)
def test_refusals_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    command = [*lrserve_command(), "serve", "--port", str(free_port()), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_open_non_loopback_with_the_flag(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path,
        "--host",
        "0.0.0.0",
        "--store",
        f"sqlite:///{tmp_path / 'x.db'}",
        env={"LRSERVE_ALLOW_OPEN_NON_LOOPBACK": "true"},
    )
    with server:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    assert "open to anyone" in server.log()


def test_token_commands() -> None:
    made = subprocess.run(
        [*lrserve_command(), "token", "new", "ci", "--scopes", "read,train"], capture_output=True, text=True, check=True
    )
    token = made.stdout.split("\n")[1].strip()
    assert token.startswith("lrs_")
    assert f"sha256: {hash_token(token)}, scopes: [read, train]" in made.stdout
    hashed = subprocess.run(
        [*lrserve_command(), "token", "hash"], input=token + "\n", capture_output=True, text=True, check=True
    )
    assert hashed.stdout.strip() == hash_token(token)
    bad = subprocess.run(
        [*lrserve_command(), "token", "new", "x", "--scopes", "root"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2


def test_concurrent_clients(server: ServerProcess) -> None:
    """Several threads leasing, posting metrics and reading at once: every answer 2xx, the horizon is the max."""
    errors: list[str] = []
    with server, httpx.Client(base_url=server.url, timeout=30) as setup:
        setup.put("/v1/runs/job", json={"spec": SPEC})

        def worker(k: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for i in range(30):
                    step = k * 100 + i
                    for response in (
                        http.get("/v1/runs/job/lr", params={"step": step}),
                        http.post("/v1/runs/job/metrics", json={"step": step, "name": "loss", "value": 1.0}),
                        http.get("/v1/runs/job"),
                    ):
                        if response.status_code >= 300:
                            errors.append(response.text)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert setup.get("/v1/runs/job").json()["horizon"] == 529
        assert time.monotonic() - began < 60


@pytest.mark.postgres
def test_several_workers_on_postgres(tmp_path: Path, pg_database: Callable[[], str]) -> None:
    """--workers 2 rebuilds the app in each worker process from the environment (store from the command line)."""
    server = ServerProcess(tmp_path, "--store", pg_database(), "--workers", "2")
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.put("/v1/runs/job", json={"spec": SPEC}).status_code == 201
        windows = [http.get("/v1/runs/job/lr", params={"step": s, "count": 5}).json() for s in range(0, 100, 5)]
        assert [w["start"] for w in windows] == list(range(0, 100, 5))
        assert http.get("/v1/runs/job").json()["horizon"] == 99
    assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    assert server.log().count("lrserve stopped") == 2  # both workers closed their store
