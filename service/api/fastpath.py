"""The fast path of the hottest call: ``GET /v1/runs/{run_id}/lr`` of frozen steps, answered ahead of FastAPI.

Every rank of every training job asks for its steps' values, and most asks are for steps already served (other
ranks asked first). FastAPI's routing, dependency solving and parameter validation cost about as much per
request as a whole bare route, so this ASGI middleware answers exactly the requests that

1. are ``GET /v1/runs/{run_id}/lr`` with a valid run id and a plain query (``step``, ``count``, ``incarnation``
   as decimal integers within the route's bounds, nothing else),
2. carry a bearer token with the ``train`` scope (or the server has no tokens), and
3. ``RunService.lease_cached`` answers from memory (every step frozen; no store I/O).

Everything else (an odd query, a missing or weak token, a step past the horizon, any error) goes on unchanged
to the regular route (``routes_lr``), which validates, authorizes, answers and maps errors as documented. So this
is an optimization only: the answer it gives is the route's, byte for byte (``tests/service/api`` checks it).
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from lrserve.schemas.errors import LrserveError
from lrserve.schemas.limits import MAX_SERVED_STEP
from lrserve.schemas.wire import MAX_LEASE, RUN_ID_PATTERN
from lrserve.service.api.encoding import lease_json
from lrserve.service.auth import TokenAuth

_PREFIX, _SUFFIX = "/v1/runs/", "/lr"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_INT = re.compile(rb"[0-9]{1,16}")
_HEADERS = [(b"content-type", b"application/json")]


def _query(raw: bytes) -> dict[bytes, int] | None:
    """``step``/``count``/``incarnation`` as ints, or None for anything the route should judge."""
    out: dict[bytes, int] = {}
    for pair in raw.split(b"&"):
        key, sep, value = pair.partition(b"=")
        if not sep or key not in (b"step", b"count", b"incarnation") or key in out or not _INT.fullmatch(value):
            return None
        out[key] = int(value)
    return out


class FastLease:
    def __init__(self, app: ASGIApp, auth: TokenAuth, max_lease: int) -> None:
        self.app = app
        self.auth = auth
        self.max_lease = min(max_lease, MAX_LEASE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                body = self._answer(scope, path[len(_PREFIX) : -len(_SUFFIX)])
                if body is not None:
                    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, run_id: str) -> bytes | None:
        query = _query(scope["query_string"])
        if query is None or b"step" not in query or not _RUN_ID.match(run_id):
            return None
        step, count, incarnation = query[b"step"], query.get(b"count", 1), query.get(b"incarnation")
        if not 1 <= count <= self.max_lease or step + count - 1 > MAX_SERVED_STEP or incarnation == 0:
            return None
        if not self._may_train(scope):
            return None
        service = getattr(scope["app"].state, "service", None)
        if service is None:
            return None
        try:
            data = service.lease_cached(run_id, step, count, incarnation, evaluate=False)
        except LrserveError:
            return None  # the route raises it again and maps it
        return None if data is None else lease_json(data)

    def _may_train(self, scope: Scope) -> bool:
        if self.auth.open:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token:
                    return False
                try:
                    return "train" in self.auth.authenticate(token).scopes
                except LrserveError:
                    return False
        return False
