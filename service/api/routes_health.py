"""Liveness and readiness, unauthenticated (for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from lrserve.service.api.deps import Service
from lrserve.service.api.problems import documented

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses=documented(503), summary="Readiness: the store answers (503 problem if not)")
async def readyz(service: Service) -> dict[str, str]:
    await run_in_threadpool(service.ready)
    return {"status": "ready"}
