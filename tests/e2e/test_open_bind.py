"""``uvicorn --factory lrserve.service.app:app_from_env --host 0.0.0.0`` with no tokens: the settings say
127.0.0.1, the socket listens everywhere, and a request that arrives on a non-loopback address gets a 403
problem, while loopback keeps working. (``lrserve serve --host 0.0.0.0`` is refused at start:
tests/e2e/test_server_process.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port


def non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine other than loopback (``ip -4 addr``), or None."""
    if shutil.which("ip") is None:
        return None
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=False).stdout
    for line in shown.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = fields[fields.index("inet") + 1].split("/")[0]
            if not address.startswith("127."):
                return address
    return None


ADDRESS = non_loopback_ipv4()


@pytest.fixture
def uvicorn_open(tmp_path: Path) -> Iterator[int]:
    """The factory under uvicorn on 0.0.0.0 and a free port, no tokens; yields the port once it answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRSERVE_")}
    env["LRSERVE_STORE"] = f"sqlite:///{tmp_path / 'x.db'}"
    command = [sys.executable, "-m", "uvicorn", "--factory", "lrserve.service.app:app_from_env"]
    command += ["--host", "0.0.0.0", "--port", str(port)]
    log = (tmp_path / "uvicorn.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"uvicorn exited {proc.returncode}:\n{(tmp_path / 'uvicorn.log').read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"uvicorn not ready in 120 s:\n{(tmp_path / 'uvicorn.log').read_text()}")
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


@pytest.mark.skipif(ADDRESS is None, reason="no non-loopback IPv4 address here (tests/service/api covers the scopes)")
def test_factory_on_all_interfaces_refuses_non_loopback(uvicorn_open: int, tmp_path: Path) -> None:
    local = f"http://127.0.0.1:{uvicorn_open}"
    far = f"http://{ADDRESS}:{uvicorn_open}"
    spec = {"param_groups": [{"name": "all", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 10}}
    assert httpx.put(f"{local}/v1/runs/r", json={"spec": spec}, timeout=30).status_code == 201
    assert httpx.get(f"{local}/v1/runs/r/lr", params={"step": 0, "count": 5}, timeout=30).status_code == 200

    for path, params in (("/v1/runs", {}), ("/v1/runs/r/lr", {"step": 0, "count": 5})):  # a route, the fast path
        refused = httpx.get(f"{far}{path}", params=params, timeout=30)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        body = json.loads(refused.text)
        assert body["type"] == "forbidden" and body["reason"] == "open-server-non-loopback", body
        assert f"client {ADDRESS}" in body["detail"] and "allow_open_non_loopback" in body["detail"], body
        assert httpx.get(f"{local}{path}", params=params, timeout=30).status_code == 200
    log = (tmp_path / "uvicorn.log").read_text()
    assert "only loopback clients are served" in log, log
