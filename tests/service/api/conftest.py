"""The real app on a real SQLite file, driven through a synchronous httpx client.

``serve(settings)`` starts the app's lifespan (store opened and migrated) on an event loop in a helper thread and
returns an ``httpx.Client`` whose transport hands each request to the app there (httpx's ``ASGITransport`` is
async-only, and Starlette's TestClient warns on this httpx).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from lrserve.service.app import create_app
from lrserve.service.auth import hash_token
from lrserve.service.settings import Settings, TokenConfig

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "StepLR", "step_size": 10, "gamma": 0.5},
    "plateau": {"metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 1},
}
OTHER_SPEC: dict[str, Any] = {**SPEC, "schedule": {"type": "StepLR", "step_size": 20, "gamma": 0.5}}

#: One token per scope (the token text is its name, for readable tests).
TOKENS = {scope: f"token-{scope}" for scope in ("read", "train", "admin")}


def token_configs() -> list[TokenConfig]:
    return [
        TokenConfig(name=f"{scope}-bot", sha256=hash_token(token), scopes=[scope])  # type: ignore[list-item]
        for scope, token in TOKENS.items()
    ]


def bearer(scope: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[scope]}"}


class PortalTransport(httpx.BaseTransport):
    def __init__(self, portal: BlockingPortal, app: Any, *, raise_app_exceptions: bool = True) -> None:
        self._portal = portal
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()  # a streamed (chunked) body keeps its headers: no Content-Length reaches the app

        async def roundtrip() -> httpx.Response:
            inner = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            response = await self._asgi.handle_async_request(inner)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content, request=request)

        return self._portal.call(roundtrip)


Serve = Callable[..., httpx.Client]


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        overrides.setdefault("store", f"sqlite:///{tmp_path / 'lrserve.db'}")
        return Settings(**overrides)

    return make


def start_app(stack: ExitStack, settings: Settings, raise_app_exceptions: bool = True) -> httpx.Client:
    app = create_app(settings)
    portal = stack.enter_context(start_blocking_portal())
    stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
    transport = PortalTransport(portal, app, raise_app_exceptions=raise_app_exceptions)
    client = stack.enter_context(httpx.Client(transport=transport, base_url="http://lrserve.test"))
    client.app = app  # type: ignore[attr-defined]
    return client


@pytest.fixture
def serve(settings_for: Callable[..., Settings]) -> Iterator[Serve]:
    """``serve(settings=None, raise_app_exceptions=True, **overrides)`` -> a client of a started app."""
    with ExitStack() as stack:

        def start(
            settings: Settings | None = None, *, raise_app_exceptions: bool = True, **overrides: Any
        ) -> httpx.Client:
            return start_app(stack, settings or settings_for(**overrides), raise_app_exceptions)

        yield start


@pytest.fixture
def client(serve: Serve) -> httpx.Client:
    """An open server (no tokens) on a fresh SQLite file."""
    return serve()


def create_run(
    client: httpx.Client,
    run_id: str = "run-1",
    spec: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    response = client.put(f"/v1/runs/{run_id}", json={"spec": spec or SPEC, **body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
