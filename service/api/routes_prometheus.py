"""``GET /metrics``: the Prometheus exposition of this process's counters (``service.observability``).

It needs the ``read`` scope when tokens are configured (Prometheus sends one: ``authorization: {credentials_file:
...}`` in its scrape config). It is left out of the OpenAPI document, with the web page: it is for Prometheus, not
for API clients; ``tests/ops/test_metrics.py`` checks it against every credential as ``test_auth`` does the API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from lrserve.service.api.deps import Reader
from lrserve.service.observability import CONTENT_TYPE, Telemetry

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, _caller: Reader) -> Response:
    telemetry: Telemetry = request.app.state.telemetry
    # Rendering counts the runs in the store (a query): off the event loop.
    body = await run_in_threadpool(telemetry.render)
    return Response(body, media_type=CONTENT_TYPE)
