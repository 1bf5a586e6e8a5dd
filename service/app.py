"""``create_app(settings)``: the FastAPI application. Nothing is created at import time.

The store is opened, migrated and wrapped in a ``RunService`` when the application starts (its lifespan) and
closed when it stops; routes reach them through ``app.state`` (``api.deps``). ``app_from_env`` is the factory
``uvicorn --factory`` and ``lrserve serve --workers N`` use: it reads the settings from ``$LRSERVE_CONFIG`` and
``LRSERVE_*``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from lrserve.service.api import (
    problems,
    routes_changes,
    routes_curves,
    routes_health,
    routes_lr,
    routes_metrics,
    routes_prometheus,
    routes_rangetest,
    routes_runs,
)
from lrserve.service.api.fastpath import FastLease
from lrserve.service.api.middleware import BodyLimit, LoopbackOnly, RequestLog
from lrserve.service.auth import TokenAuth
from lrserve.service.observability import Telemetry
from lrserve.service.runs import RunService
from lrserve.service.settings import Settings, load_settings
from lrserve.service.store.sql import SqlStore
from lrserve.service.web import routes as web_routes

log = logging.getLogger("lrserve.server")

ROUTERS = (routes_runs, routes_lr, routes_metrics, routes_changes, routes_curves, routes_rangetest, routes_health)


def _version() -> str:
    try:
        return version("lrserve")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0"


def create_app(settings: Settings) -> FastAPI:
    auth = TokenAuth(settings.tokens)
    telemetry = Telemetry(version=_version())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        refusal = settings.bind_problem()
        if refusal is not None:
            raise RuntimeError(refusal)
        store = SqlStore(settings.store, staleness=settings.replica_staleness)
        try:
            await run_in_threadpool(store.migrate)
            app.state.service = RunService(
                store,
                presets=settings.presets,
                telemetry=telemetry,
                budget=settings.limits.budget(),
                cache_bytes=settings.limits.cache_bytes,
            )
            telemetry.count_runs_with(store.count_runs)
            if auth.open and settings.allow_open_non_loopback:
                log.warning("no API tokens configured: the server is open to anyone who can reach it")
            elif auth.open:
                log.warning(
                    "no API tokens configured: only loopback clients are served, others get 403 "
                    "(configure tokens, or set allow_open_non_loopback on a trusted network)"
                )
            log.info("lrserve %s ready: store %r", _version(), store)
            yield
        finally:
            store.close()
            log.info("lrserve stopped")

    app = FastAPI(
        title="lrserve",
        version=_version(),
        summary="Learning-rate schedules as a service",
        description="Runs, leased steps, metrics and plateau, mid-run changes and curves. "
        "Errors are application/problem+json.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.telemetry = telemetry
    problems.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    if settings.metrics:
        app.include_router(routes_prometheus.router)  # GET /metrics (read scope; not in the OpenAPI document)
    app.include_router(web_routes.router)  # the web page at / and its data under /ui (not in the OpenAPI document)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(FastLease, auth=auth, max_lease=settings.limits.max_lease)
    if settings.request_log or settings.metrics:
        # Outermost: it times and counts everything, the fast path's answers and BodyLimit's 413s included.
        app.add_middleware(
            RequestLog, telemetry=telemetry if settings.metrics else None, log_requests=settings.request_log
        )
    if auth.open and not settings.allow_open_non_loopback:
        # Outermost of all: whatever address the server really listens on, no request from off this machine
        # reaches the fast path or a route of an open server (``host`` alone is judged only by ``lrserve serve``).
        app.add_middleware(LoopbackOnly)
    return app


def app_from_env() -> FastAPI:
    return create_app(load_settings())
