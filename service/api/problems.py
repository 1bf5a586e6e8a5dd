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
  except FastAPI's 400 for a body that is not UTF-8 or nests past the recursion limit: 422 ``invalid-input``,
  as for any malformed JSON;
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


def _unparsable_body(exc: StarletteHTTPException) -> InvalidInput | None:
    """FastAPI's 400 for a body ``json.loads`` could not even start on (not UTF-8; nested past the recursion
    limit): the same 422 ``json_invalid`` problem as any other malformed JSON, or None for other 400s."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, UnicodeDecodeError | RecursionError):
        return None
    reason = "the body is not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else "nested too deeply"
    return InvalidInput(
        detail=f"malformed JSON: {reason}", errors=[FieldError((), f"malformed JSON: {reason}", "json_invalid")]
    )


async def _on_http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    unparsable = _unparsable_body(exc)
    if unparsable is not None:
        return error_response(unparsable)
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
    _document_problems(app)


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_REASONS = {
    401: "no or unknown bearer token",
    403: "the token lacks the scope",
    404: "no such run",
    413: "the body is too large",
    422: "invalid input",
    503: "the database is unavailable (retry)",
}


def _document_problems(app: FastAPI) -> None:
    """Make the OpenAPI document say what the handlers above answer: every error of every operation is
    ``application/problem+json`` with the ``Problem`` schema (FastAPI's default 422 says ``application/json``
    ``HTTPValidationError``), and the statuses any operation of its kind may answer are listed: 422 with
    parameters or a body, 413 with a body, 401/403 where a scope is required, 404 and 503 on a run's routes."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # FastAPI caches it: the edits below are made once and are idempotent anyway
        for path, item in schema.get("paths", {}).items():
            for operation in item.values():
                responses: dict[str, Any] = operation.setdefault("responses", {})
                statuses = set()
                if operation.get("parameters") or "requestBody" in operation:
                    statuses.add(422)
                if "requestBody" in operation:
                    statuses.add(413)
                if operation.get("security"):
                    statuses |= {401, 403}
                if path.startswith("/v1/runs"):
                    statuses.add(503)
                if "{run_id}" in path:
                    statuses.add(404)
                for status in statuses:
                    responses.setdefault(str(status), {"description": _REASONS[status]})
                for code, response in responses.items():
                    if code.isdigit() and int(code) >= 400:
                        response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
