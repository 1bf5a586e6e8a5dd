"""The web page (``/``) and the few JSON answers it draws from (``/ui/api/...``).

The page is one HTML file, one stylesheet and one script of our own (``index.html``, ``app.css``, ``app.js``
next to this module, shipped as package data): no third-party code, no build step. Charts are SVG drawn by the
script from curves the server has already reduced to two points per pixel column (``downsample``), so a run of a
million steps costs the browser a few thousand points.

The ``/ui/api`` routes are the page's own (left out of the OpenAPI document; the public API is ``/v1``). They take
the same bearer tokens and scopes as ``/v1``: reading needs ``read``, a change preview needs ``admin`` like the
dry run it wraps. Writes (apply a change, delete) go to ``/v1`` itself.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from lrserve.schemas.errors import FieldError, InvalidInput, RunNotFound, SpecInvalid
from lrserve.schemas.limits import MAX_STEP
from lrserve.schemas.validation import check_values, validate_run_spec
from lrserve.schemas.wire import ChangeIn, MetricIn
from lrserve.schemas.yamlio import load_yaml
from lrserve.service.api.deps import Admin, AppSettings, Reader, RunIdPath, Service
from lrserve.service.api.routes_runs import parse_labels
from lrserve.service.auth import TokenAuth
from lrserve.service.web import data

router = APIRouter(include_in_schema=False)

_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
MAX_WIDTH = 4000
MAX_TEXT = 200_000
Width = Annotated[int, Query(ge=10, le=MAX_WIDTH, description="drawing width in pixels (buckets)")]


@cache
def _asset(name: str) -> tuple[bytes, str]:
    body = resources.files("lrserve.service.web").joinpath(name).read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def _json(payload: Any) -> Response:
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(body, media_type="application/json")


def _file(request: Request, name: str, media_type: str) -> Response:
    body, etag = _asset(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


# ---- the page ---------------------------------------------------------------------------------------------------


@router.get("/")
async def page(request: Request) -> Response:
    return _file(request, "index.html", "text/html; charset=utf-8")


@router.get("/ui/{name}")
async def asset(request: Request, name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        return Response(status_code=404)
    return _file(request, name, media_type)


# ---- the page's data --------------------------------------------------------------------------------------------


def _metrics(request: Request) -> data.MetricSeries:
    state = request.app.state
    series: data.MetricSeries | None = getattr(state, "web_metric_series", None)
    if series is None:
        series = state.web_metric_series = data.MetricSeries()
    return series


@router.get("/ui/api/whoami")
async def whoami(request: Request) -> Response:
    """Whether the server wants tokens, and what the one sent (if any) may do. 401 for an unknown token."""
    auth: TokenAuth = request.app.state.auth
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if not auth.open and not token:
        return _json({"open": False, "name": None, "scopes": []})
    principal = auth.authenticate(token)
    return _json({"open": auth.open, "name": principal.name, "scopes": sorted(principal.scopes)})


@router.get("/ui/api/runs")
def runs(
    service: Service,
    _caller: Reader,
    label: Annotated[list[str], Query(max_length=32)] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The runs list with what each row shows (current LR per group, last metric...), one page."""
    page = service.list_runs(parse_labels(label), limit, cursor)
    rows = []
    for summary in page.runs:
        try:
            rows.append(data.run_row(service.get_run(summary.run_id)))
        except RunNotFound:  # pragma: no cover - deleted between the two reads
            continue
    return _json({"runs": rows, "next_cursor": page.next_cursor})


@router.get("/ui/api/runs/{run_id}/plot")
def plot(
    request: Request,
    run_id: RunIdPath,
    service: Service,
    settings: AppSettings,
    _caller: Reader,
    width: Width = 1000,
    start: Annotated[int, Query(ge=0, le=MAX_STEP - 1)] = 0,
    stop: Annotated[int | None, Query(ge=1, le=MAX_STEP)] = None,
) -> Response:
    """The run page in one answer: the LR (and momentum) curve reduced to ``width`` columns, markers, metrics."""
    if stop is not None and stop <= start:
        raise InvalidInput(detail="stop must be > start", errors=[FieldError(("query", "stop"), "must be > start")])
    payload = data.run_plot(
        service,
        _metrics(request),
        run_id,
        start=start,
        stop=stop,
        width=width,
        max_points=settings.limits.max_curve_points,
    )
    return _json(payload)


@router.post("/ui/api/runs/{run_id}/preview")
def preview(
    run_id: RunIdPath,
    change: Annotated[ChangeIn, Body()],
    service: Service,
    caller: Admin,
    width: Width = 1000,
    stop: Annotated[int | None, Query(ge=1, le=MAX_STEP)] = None,
) -> Response:
    """A dry run of a change (whatever ``dry_run`` says), the current and proposed curves reduced for drawing."""
    return _json(data.change_preview(service, run_id, change, caller.name, stop=stop, width=width))


class TextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_TEXT, description="YAML or JSON")


class PlaygroundIn(TextIn):
    start: int = Field(0, ge=0, le=MAX_STEP - 1)
    stop: int | None = Field(None, ge=1, le=MAX_STEP)
    width: int = Field(800, ge=10, le=MAX_WIDTH)
    metrics: list[MetricIn] = Field(default_factory=list, max_length=100_000)


def parse_text(text: str) -> Any:
    """YAML (a superset of JSON) text as data (``lrserve.schemas.yamlio``); a refusal is a 422 naming the line."""
    return load_yaml(text, loc=("text",))


def unwrap_spec(value: Any) -> Any:
    """A run spec, or a ``PUT /v1/runs`` body holding one under ``spec``."""
    if isinstance(value, dict) and "spec" in value and "schedule" not in value:
        return value["spec"]
    return value


# Plain ``def``: parsing (and validating) up to MAX_TEXT characters is CPU work, done in the threadpool so that
# it cannot stall the event loop.
@router.post("/ui/api/parse")
def parse(body: TextIn, _caller: Reader) -> Response:
    """YAML or JSON text as JSON (the change form's schedule box accepts either)."""
    return _json({"data": parse_text(body.text)})


@router.post("/ui/api/playground")
def playground(body: PlaygroundIn, service: Service, settings: AppSettings, _caller: Reader) -> Response:
    """Validate a spec given as text; 422 with field paths, or its curve reduced for drawing."""
    value = unwrap_spec(parse_text(body.text))
    if value is None:
        raise SpecInvalid(detail="the spec is empty", errors=[FieldError((), "paste a run spec")])
    spec = validate_run_spec(value)
    check_values(spec)
    payload = data.spec_curve(
        service,
        spec,
        start=body.start,
        stop=body.stop,
        width=body.width,
        max_points=settings.limits.max_curve_points,
        metrics=body.metrics,
    )
    return _json(payload)
