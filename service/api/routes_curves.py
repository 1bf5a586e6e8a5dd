"""Curves: a run's LR over a range of steps (past as applied, future as planned), and previews of a spec."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.limits import MAX_STEP
from lrserve.schemas.wire import Curve, CurveRequest
from lrserve.service.api.deps import AppSettings, Reader, RunIdPath, Service
from lrserve.service.api.encoding import CSV, NPZ, curve_response
from lrserve.service.api.problems import documented
from lrserve.service.settings import Settings

router = APIRouter(tags=["curves"])
Format = Literal["json", "csv", "npy"]
_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "json: a Curve; csv: step and one column per group and field; npy: a NumPy .npz archive "
        "(steps, lr, momentum, group_names, start, stop, stride, horizon, revision, markers)",
        "content": {CSV: {}, NPZ: {}},
    }
}


def check_points(settings: Settings, start: int, stop: int, stride: int, loc: tuple[str, ...]) -> None:
    """The server's limit on points (the domain checks the absolute one and stop > start)."""
    points = -(-(stop - start) // stride)
    limit = settings.limits.max_curve_points
    if points > limit:
        raise InvalidInput(
            detail=f"{points} points asked; this server serves at most {limit} (raise stride)",
            errors=[FieldError((*loc, "stride"), f"too small: {points} points > {limit}")],
        )


@router.get(
    "/v1/runs/{run_id}/curve",
    response_model=Curve,
    responses={**_CONTENT, **documented(404, 422)},
    summary="LR of every group over range(start, stop, stride); never extends the horizon",
)
async def get_curve(
    run_id: RunIdPath,
    service: Service,
    settings: AppSettings,
    _caller: Reader,
    start: Annotated[int, Query(ge=0, le=MAX_STEP - 1)] = 0,
    stop: Annotated[int, Query(ge=1, le=MAX_STEP, description="first step not included")] = 1000,
    stride: Annotated[int, Query(ge=1, le=MAX_STEP)] = 1,
    format: Annotated[Format, Query(description="json, csv, or npy (a NumPy .npz archive)")] = "json",
) -> Response:
    check_points(settings, start, stop, stride, ("query",))
    # Evaluating and encoding 1M points takes a tenth of a second or two: off the event loop, in one hop.
    return await run_in_threadpool(lambda: curve_response(service.curve(run_id, start, stop, stride), format))


@router.post(
    "/v1/curves",
    response_model=Curve,
    responses={**_CONTENT, **documented(422)},
    summary="Preview: the curve of a spec without a run, with simulated metrics for plateau rules",
)
async def preview_curve(
    req: CurveRequest,
    service: Service,
    settings: AppSettings,
    _caller: Reader,
    format: Annotated[Format, Query()] = "json",
) -> Response:
    check_points(settings, req.start, req.stop, req.stride, ())
    return await run_in_threadpool(lambda: curve_response(service.preview_curve(req), format))
