"""An open server (no tokens) answers loopback connections only, judged per request from the ASGI scope's ``client``
and ``server`` addresses, whatever ``host`` says: ahead of the frozen-lease fast path and of every route."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from lrserve.service.app import create_app
from lrserve.service.settings import Settings
from tests.service.api.conftest import SPEC, bearer, token_configs

Address = tuple[str, int | None] | None
LEASE = ("/v1/runs/run-1/lr", b"step=0&count=4")  # frozen below: the fast path's answer
LIST = ("/v1/runs", b"")  # a route through FastAPI


class App:
    """A started app, called with hand-made ASGI scopes on its lifespan's event loop."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self.app = app
        self.portal = portal

    def call(
        self,
        method: str,
        path: str,
        query: bytes = b"",
        body: bytes = b"",
        client: Address = ("127.0.0.1", 50000),
        server: Address = ("127.0.0.1", 8000),
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "root_path": "",
            "headers": [
                (b"host", b"lrserve"),
                (b"content-length", str(len(body)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
            ],
            "client": client,
            "server": server,
        }
        if body:
            scope["headers"].append((b"content-type", b"application/json"))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def roundtrip() -> None:
            await self.app(scope, receive, send)

        self.portal.call(roundtrip)
        start = next(m for m in sent if m["type"] == "http.response.start")
        content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        names = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
        return start["status"], names, content


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``started(**settings)`` -> an app (its own SQLite file) with run-1 created and steps 0..9 frozen, by a
    loopback client."""
    with start_blocking_portal() as portal:
        apps: list[Any] = []

        def start(**overrides: Any) -> App:
            app = create_app(Settings(store=f"sqlite:///{tmp_path / f'lrserve-{len(apps)}.db'}", **overrides))
            lifespan = portal.wrap_async_context_manager(app.router.lifespan_context(app))
            lifespan.__enter__()
            apps.append(lifespan)
            on = App(app, portal)
            auth = bearer("admin") if overrides.get("tokens") else {}
            status, _, text = on.call("PUT", "/v1/runs/run-1", body=json.dumps({"spec": SPEC}).encode(), headers=auth)
            assert status == 201, text
            status, _, text = on.call("GET", LEASE[0], b"step=0&count=10", headers=auth)
            assert status == 200, text
            return on

        try:
            yield start
        finally:
            for lifespan in reversed(apps):
                lifespan.__exit__(None, None, None)


def assert_refused(status: int, headers: dict[str, str], content: bytes, where: str) -> None:
    assert status == 403, content
    assert headers["content-type"] == "application/problem+json"
    body = json.loads(content)
    assert (body["type"], body["status"], body["reason"]) == ("forbidden", 403, "open-server-non-loopback"), body
    assert where in body["detail"], body
    assert "no API tokens are configured" in body["detail"]
    assert "lrserve token new" in body["detail"] and "allow_open_non_loopback" in body["detail"]


@pytest.mark.parametrize("route", [LEASE, LIST], ids=["fast-lease", "route"])
@pytest.mark.parametrize("host", ["10.0.0.5", "::ffff:10.0.0.5", "192.0.2.7", "testclient"])
def test_non_loopback_client_is_refused(started: Callable[..., App], route: tuple[str, bytes], host: str) -> None:
    app = started()
    assert_refused(*app.call("GET", *route, client=(host, 40000)), where=f"client {host}")


@pytest.mark.parametrize("route", [LEASE, LIST], ids=["fast-lease", "route"])
@pytest.mark.parametrize(
    "client",
    [("127.0.0.1", 1), ("::1", 1), ("127.0.0.2", 1), ("::ffff:127.0.0.1", 1), None],
    ids=["127.0.0.1", "::1", "127.0.0.2", "v4-mapped-loopback", "no-client"],
)
def test_loopback_or_unix_client_is_served(
    started: Callable[..., App], route: tuple[str, bytes], client: Address
) -> None:
    app = started()
    status, _, content = app.call("GET", *route, client=client)
    assert status == 200, content
    if route is LEASE:
        assert json.loads(content)["count"] == 4


@pytest.mark.parametrize("route", [LEASE, LIST], ids=["fast-lease", "route"])
def test_non_loopback_server_address_is_not_local(started: Callable[..., App], route: tuple[str, bytes]) -> None:
    app = started()
    refused = app.call("GET", *route, client=("127.0.0.1", 1), server=("192.0.2.2", 8000))
    assert_refused(*refused, where="server address 192.0.2.2")
    # A unix socket: uvicorn gives the server as (path, None) and no client.
    status, _, content = app.call("GET", *route, client=None, server=("/run/lrserve.sock", None))
    assert status == 200, content


def test_writes_are_refused_too(started: Callable[..., App]) -> None:
    app = started()
    metric = json.dumps({"step": 3, "name": "loss", "value": 1.0}).encode()
    refused = app.call("POST", "/v1/runs/run-1/metrics", body=metric, client=("10.0.0.5", 1))
    assert_refused(*refused, where="client 10.0.0.5")
    status, _, content = app.call("POST", "/v1/runs/run-1/metrics", body=metric)
    assert status == 200, content


def test_flag_or_tokens_serve_any_address(started: Callable[..., App]) -> None:
    far = ("10.0.0.5", 40000)
    flagged = started(allow_open_non_loopback=True)
    assert flagged.call("GET", *LEASE, client=far)[0] == 200
    assert flagged.call("GET", *LIST, client=far)[0] == 200
    guarded = started(tokens=token_configs())
    assert guarded.call("GET", *LEASE, client=far, headers=bearer("train"))[0] == 200
    assert guarded.call("GET", *LIST, client=far, headers=bearer("read"))[0] == 200
    assert guarded.call("GET", *LIST, client=far)[0] == 401  # the tokens guard it, not the loopback rule


def test_one_startup_warning_says_loopback_only(started: Callable[..., App], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lrserve.server"):
        started()
    warnings = [r.getMessage() for r in caplog.records if r.name == "lrserve.server" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "only loopback clients are served" in warnings[0]
    assert "allow_open_non_loopback" in warnings[0]
