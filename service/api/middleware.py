"""Pure ASGI middleware: the loopback guard of an open server, the request body limit, and the request log
(request id, metrics, one JSON line)."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from random import getrandbits as _random_bits

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lrserve.schemas.errors import Forbidden, PayloadTooLarge
from lrserve.service.api.problems import error_response
from lrserve.service.logs import REQUEST_ID, direct_handler
from lrserve.service.observability import UNMATCHED, Telemetry

request_log = logging.getLogger("lrserve.request")


def _ip_is_loopback(host: str) -> bool | None:
    """Whether an address is loopback (an IPv4-mapped IPv6 one judged as its IPv4 address); None if not an IP."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def non_local_address(scope: Scope) -> str | None:
    """The address that makes a request non-local, or None: a client that is not a loopback IP (a client name,
    e.g. a test transport's, counts as non-local), or a server socket bound to a non-loopback IP. No client at
    all, and a server on a unix socket (``(path, None)``) or given as a name (a test transport), are local:
    only a loopback or unix-socket peer can send those."""
    client = scope.get("client")
    if client:
        host = str(client[0])
        if not _ip_is_loopback(host):
            return f"client {host}"
    server = scope.get("server")
    if server and server[1] is not None and _ip_is_loopback(str(server[0])) is False:
        return f"server address {server[0]}"
    return None


class LoopbackOnly:
    """An open server (no tokens) without ``allow_open_non_loopback`` answers loopback requests only: any other
    gets a 403 problem saying why and what to do, ahead of everything else (the fast path included). It judges
    the addresses of each connection, so it holds however the server was started (``lrserve serve``, ``uvicorn
    --factory ... --host 0.0.0.0``, a socket handed over by a process manager), whatever ``host`` says."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            where = non_local_address(scope)
            if where is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})  # policy violation
                    return
                refused = Forbidden(
                    detail=f"no API tokens are configured, so this server answers loopback clients only; this "
                    f"request is not local ({where}). Configure tokens (`lrserve token new NAME`, then the entry "
                    f"under `tokens:`) or, on a trusted network only, set allow_open_non_loopback: true "
                    f"(LRSERVE_ALLOW_OPEN_NON_LOOPBACK=1)",
                    extra={"reason": "open-server-non-loopback"},
                )
                await error_response(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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


_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces: safe in a header and a log
_LEASE_PREFIX, _LEASE_SUFFIX, _LEASE_ROUTE = "/v1/runs/", "/lr", "/v1/runs/{run_id}/lr"


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-ID`` (e.g. set by the load balancer) if it is sane, else a fresh random one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given: str = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
            break
    return f"{_random_bits(64):016x}"  # unique enough to find a request, and no system call


Templates = list[tuple[re.Pattern[str], str]]


def route_of(scope: Scope, templates: Callable[[Scope], Templates]) -> tuple[str, str | None, bool]:
    """The route template that handled the request (a bounded label, never the raw path), its run id, and whether
    ``api.fastpath`` answered it (a frozen lease, from memory, ahead of the router)."""
    route = scope.get("route")
    if route is not None:
        template = getattr(route, "path", None)
        run_id = scope.get("path_params", {}).get("run_id")
        return (
            template if isinstance(template, str) else UNMATCHED,
            run_id if isinstance(run_id, str) else None,
            False,
        )
    path: str = scope["path"]
    if path.startswith(_LEASE_PREFIX) and path.endswith(_LEASE_SUFFIX):
        run_id = path[len(_LEASE_PREFIX) : -len(_LEASE_SUFFIX)]
        if run_id and "/" not in run_id:
            return _LEASE_ROUTE, run_id, True
    # Refused before routing (BodyLimit's 413) or no route (404, 405): the documented template it falls under.
    for pattern, template in templates(scope):
        found = pattern.fullmatch(path)
        if found is not None:
            return template, found.groupdict().get("run_id"), False
    return UNMATCHED, None, False


def path_templates(app: object) -> Templates:
    """The OpenAPI document's path templates as patterns, ``{run_id}`` a named group."""
    openapi = getattr(app, "openapi", None)
    paths: dict[str, object] = openapi()["paths"] if callable(openapi) else {}
    return [(re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(t))), t) for t in sorted(paths)]


class RequestLog:
    """Around every request: its id (``X-Request-ID`` taken or made, returned in the response and set on
    ``logs.REQUEST_ID`` for every line logged meanwhile), its Prometheus counts (``telemetry``), and, with
    ``log_requests``, one line on the ``lrserve.request`` logger with the request id, method, route, run id,
    status and duration: at INFO, except frozen leases answered by the fast path, at DEBUG (most of the traffic;
    a line adds ~6 % to such a lease, ``bench/requestlog.py``). uvicorn's access log stays off (issue: -24 %).
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry | None = None, log_requests: bool = True) -> None:
        self.app = app
        self.telemetry = telemetry
        self.log_requests = log_requests
        self._templates: Templates | None = None

    def _path_templates(self, scope: Scope) -> Templates:
        if self._templates is None:  # only refusals ask: built on the first one
            self._templates = path_templates(scope.get("app"))
        return self._templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        request_id = request_id_of(scope)
        header = (b"x-request-id", request_id.encode("latin-1"))
        token = REQUEST_ID.set(request_id)
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - began
            route, run_id, fast = route_of(scope, self._path_templates)
            if self.telemetry is not None:
                self.telemetry.observe_request(scope["method"], route, status, seconds)
            # Frozen leases answered from memory are most of the traffic and a tenth of a millisecond each: their
            # lines are DEBUG (every other request's INFO), so INFO keeps a line per write, error or store read and
            # the volume follows the writes, not the number of ranks; lrserve_http_requests_total counts them all.
            level = logging.DEBUG if fast else logging.INFO
            if self.log_requests and request_log.isEnabledFor(level):
                self._log(scope, route, run_id, status, seconds, level)
            REQUEST_ID.reset(token)

    @staticmethod
    def _log(scope: Scope, route: str, run_id: str | None, status: int, seconds: float, level: int) -> None:
        method, path, client = scope["method"], scope["path"], scope.get("client")
        message = f"{method} {path} {status}"
        fields = {
            "method": method,
            "route": route,
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "run_id": run_id,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "client": client[0] if client else None,
        }
        handler = direct_handler(request_log, level)
        if handler is not None:
            handler.write_fields(request_log.name, level, message, fields)  # the same line, without a LogRecord
        else:
            request_log.log(level, "%s", message, extra={"fields": fields})
