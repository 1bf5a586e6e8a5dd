"""Graceful shutdown of ``lrserve serve``: SIGTERM lets a request in flight finish (200), refuses new connections,
and the process exits 0 within seconds; ``shutdown_timeout`` bounds the wait for a request that never ends."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess

SPEC = {"param_groups": [{"name": "g", "lr": 0.1}], "schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5}}

pytestmark = pytest.mark.slow


def begin_post(port: int, path: str, body: bytes, sent: int) -> socket.socket:
    """A POST whose headers and first ``sent`` body bytes are on the wire; the rest is still to come."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: slow-1\r\n\r\n"
    )
    sock.sendall(head.encode() + body[:sent])
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path, "--store", f"sqlite:///{tmp_path / 'lrserve.db'}", "--log-level", "info")
    server.start()
    try:
        httpx.put(f"{server.url}/v1/runs/job", json={"spec": SPEC}, timeout=30).raise_for_status()
        yield server
    finally:
        server.kill()  # only if a failed test left it running


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(server: ServerProcess) -> None:
    metrics = [{"step": s, "name": "loss", "value": 1.0 / (s + 1)} for s in range(1000)]
    body = json.dumps({"metrics": metrics}).encode()
    sock = begin_post(server.port, "/v1/runs/job/metrics", body, sent=len(body) // 2)
    time.sleep(0.3)  # the server has parsed the headers: the request is in flight, waiting for its body
    server.signal(signal.SIGTERM)
    deadline = time.monotonic() + 30  # no longer accepting: polled, however long the signal takes to land
    while True:
        try:
            httpx.get(f"{server.url}/healthz", timeout=2)
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "still accepting connections 30 s after SIGTERM"
        time.sleep(0.05)
    assert server.proc is not None and server.proc.poll() is None  # still finishing the request
    sock.sendall(body[len(body) // 2 :])
    status, headers, answer = read_response(sock)
    sock.close()
    assert status == 200, answer
    assert len(json.loads(answer)["accepted"]) == 1000
    assert headers["x-request-id"] == "slow-1"
    began = time.monotonic()
    assert server.wait(timeout=10) == 0
    assert time.monotonic() - began < 5
    lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    posted = [x for x in lines if x["logger"] == "lrserve.request" and x.get("request_id") == "slow-1"]
    assert [(x["route"], x["status"]) for x in posted] == [("/v1/runs/{run_id}/metrics", 200)]
    assert [x["message"] for x in lines if x["logger"] == "lrserve.server"][-1] == "lrserve stopped"
    # Nothing was lost: a new process on the same file has every metric.
    server.start()
    page = httpx.get(f"{server.url}/v1/runs/job/events", params={"after": 1, "limit": 1000}, timeout=30).json()
    assert [e["kind"] for e in page["events"]] == ["metric"] * 1000
    server.stop()


def test_shutdown_timeout_bounds_a_request_that_never_ends(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path, "--store", f"sqlite:///{tmp_path / 'lrserve.db'}", env={"LRSERVE_SHUTDOWN_TIMEOUT": "1"}
    )
    server.start()
    try:
        sock = begin_post(server.port, "/v1/curves", b'{"spec": ' + json.dumps(SPEC).encode() + b"}", sent=5)
        time.sleep(0.3)
        began = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=20) == 0
        assert 0.9 < time.monotonic() - began < 6  # waited about shutdown_timeout for it, not the default 30 s
        sock.close()
    finally:
        server.kill()
    assert "timeout graceful shutdown exceeded" in server.log()


def test_sigterm_repeated_until_it_exits_still_exits_0(server: ServerProcess) -> None:
    """An impatient supervisor: SIGTERM every 50 ms. One landing while Python finalizes would kill the process
    (143) unless the first one made the rest harmless."""
    assert server.proc is not None
    server.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while server.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            server.signal(signal.SIGTERM)
        except ProcessLookupError:
            break
    assert server.wait(timeout=10) == 0
