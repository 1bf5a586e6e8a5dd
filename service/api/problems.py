"""Errors -> ``application/problem+json`` (RFC 9457): the one place where an exception becomes a response.

Every error answer has the shape of ``wire.Problem``::

    {"type": "run-not-found", "title": "Run not found", "status": 404, "detail": "no run 'x'",
     "errors": [{"loc": ["query", "count"], "path": "query.count", "msg": "...", "type": "less_than_equal"}]}

``type`` is the stable ``problem_type`` of the ``LrserveError`` class (the client maps it back to the class);
extra members (e.g. ``horizon`` of a horizon conflict) come from the error's ``extra``. Field paths (``loc``)
are relative to the JSON body; parameters elsewhere start with ``query``, ``path`` or ``header``.

What maps to what:

- ``LrserveError`` subclasses: their own status and type (the domain's and the store's errors);
- ``RequestValidationError`` (a body, query, path or header that fails its model, or malformed JSON): 422
  ``invalid-input``, or ``spec-invalid`` when every error lies inside the ``spec``;
- Starlette's ``HTTPException`` (no such route 404, method not allowed 405, body too large 413): that status;
- anything else: 500 ``internal``, logged with its traceback (a bug: no client input should get here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from lrserve.schemas.errors import (
    FieldError,
    InvalidInput,
    LrserveError,
    NotFound,
    PayloadTooLarge,
    SpecInvalid,
)
from lrserve.schemas.validation import strip_union_tags, summarize
from lrserve.schemas.wire import Problem

PROBLEM_JSON = "application/problem+json"

# Locations FastAPI puts first in a parameter's loc; "body" is dropped (paths are body-relative).
_PARAM_SOURCES = ("query", "path", "header", "cookie")
_HTTP_TYPES: dict[int, tuple[str, str]] = {
    404: (NotFound.problem_type, NotFound.title),
    405: ("method-not-allowed", "Method not allowed"),
    413: (PayloadTooLarge.problem_type, PayloadTooLarge.title),
}


def problem(
    status: int,
    type_: str,
    title: str,
    detail: str,
    errors: Iterable[FieldError] = (),
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = dict(extra or {})
    body.update(type=type_, title=title, status=status, detail=detail, errors=[e.as_dict() for e in errors])
    content = orjson.dumps(body, default=str, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_HEADERS: dict[int, dict[str, str]] = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "1"}}


def error_response(exc: LrserveError) -> Response:
    headers = _HEADERS.get(exc.status)
    return problem(exc.status, exc.problem_type, exc.title, exc.detail, exc.errors, exc.extra, headers)


def request_errors(details: Sequence[Mapping[str, Any]], body: Any = None) -> list[FieldError]:
    """FastAPI's validation errors as FieldErrors: body paths relative to the body, without union tags;
    malformed JSON as one error at the root."""
    out: list[FieldError] = []
    for err in details:
        loc, type_ = tuple(err.get("loc", ())), str(err.get("type", "value_error"))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if type_ == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            out.append(FieldError((), f"malformed JSON: {reason}{where}", type_))
        elif loc[:1] == ("body",):
            out.append(FieldError(strip_union_tags(loc[1:], body, type_), msg, type_))
        else:
            out.append(FieldError(loc, msg, type_))
    return out


def validation_error(exc: RequestValidationError) -> LrserveError:
    errors = request_errors(exc.errors(), exc.body)
    in_spec = bool(errors) and all(e.loc[:1] == ("spec",) for e in errors)
    cls = SpecInvalid if in_spec else InvalidInput
    return cls(detail=summarize(errors), errors=errors)


async def _on_lrserve_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LrserveError)
    return error_response(exc)


async def _on_validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc))


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    type_, title = _HTTP_TYPES.get(exc.status_code, (f"http-{exc.status_code}", "HTTP error"))
    return problem(exc.status_code, type_, title, str(exc.detail), headers=exc.headers)


async def _on_unexpected(_request: Request, _exc: Exception) -> Response:
    # Starlette re-raises the exception after this response is sent, so the server logs it with its traceback.
    return problem(500, LrserveError.problem_type, LrserveError.title, "internal error; the server logged it")


def install(app: FastAPI) -> None:
    app.add_exception_handler(LrserveError, _on_lrserve_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


#: For ``responses=`` in route decorators: the problem statuses a route may answer, documented in OpenAPI.
def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": Problem,
            "description": "problem details",
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
