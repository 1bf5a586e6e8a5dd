"""Pure ASGI middleware: the request body limit, and the optional JSON request log."""

from __future__ import annotations

import json
import logging
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrserve.schemas.errors import PayloadTooLarge
from lrserve.service.api.problems import error_response

request_log = logging.getLogger("lrserve.request")


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit. It is an ``HTTPException`` because FastAPI
    re-raises those from body parsing (anything else it turns into a 400); ``problems`` maps it to 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """413 for bodies above ``max_bytes``: at once when Content-Length says so, else when the stream passes it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            too_large = PayloadTooLarge(detail=f"the request body is larger than {self.max_bytes} bytes")
            await error_response(too_large)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class RequestLog:
    """One JSON line per request on the ``lrserve.request`` logger (uvicorn's access log stays off: it is slow)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client")
            request_log.info(
                json.dumps(
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "query": scope.get("query_string", b"").decode("latin-1"),
                        "status": status,
                        "ms": round((time.perf_counter() - began) * 1000, 3),
                        "client": client[0] if client else None,
                    }
                )
            )
