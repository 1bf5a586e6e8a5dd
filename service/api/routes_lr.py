"""The workers' calls: the LR (and momentum) of a window of steps, which extends the run's horizon; the run's
plan, which lets a worker evaluate steps itself through a server outage; and the report of steps it applied so."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.limits import MAX_SERVED_STEP
from lrserve.schemas.wire import MAX_LEASE, AppliedIn, AppliedResult, LrWindow, RunPlan
from lrserve.service.api.deps import AppSettings, Reader, RunIdPath, Service, Trainer
from lrserve.service.api.encoding import JSON, lease_json
from lrserve.service.api.problems import documented

router = APIRouter(prefix="/v1/runs", tags=["lr"])


@router.get(
    "/{run_id}/lr",
    response_model=LrWindow,
    responses=documented(404, 409, 422),
    summary="Values of steps step .. step+count-1 (a lease: they are frozen from now on)",
)
async def get_lr(
    run_id: RunIdPath,
    service: Service,
    settings: AppSettings,
    _caller: Trainer,
    step: Annotated[int, Query(ge=0, le=MAX_SERVED_STEP, description="first step of the window")],
    count: Annotated[int, Query(ge=1, le=MAX_LEASE, description="steps in the window (capped by the server)")] = 1,
    incarnation: Annotated[int | None, Query(ge=1, description="the caller's incarnation (409 if stale)")] = None,
) -> Response:
    if count > settings.limits.max_lease:
        raise InvalidInput(
            detail=f"count {count} is above this server's limit of {settings.limits.max_lease}",
            errors=[FieldError(("query", "count"), f"must be <= {settings.limits.max_lease}")],
        )
    if step + count - 1 > MAX_SERVED_STEP:
        # horizon + 1 must stay a valid from_step, or no change could ever be made to the run again
        raise InvalidInput(
            detail=f"the window ends at step {step + count - 1}; the last step a run may serve is {MAX_SERVED_STEP}",
            errors=[FieldError(("query", "count"), f"step + count - 1 must be <= {MAX_SERVED_STEP} (the step domain)")],
        )
    # Frozen steps held in memory were answered ahead of this route (api.fastpath); what reaches it may touch
    # the store, so it runs in the threadpool.
    data = await run_in_threadpool(service.lease, run_id, step, count, incarnation)
    return Response(lease_json(data), media_type=JSON)


@router.get(
    "/{run_id}/plan",
    response_model=RunPlan,
    responses=documented(404),
    summary="Everything needed to evaluate the run's LRs locally (kept by clients for outages)",
)
def get_plan(run_id: RunIdPath, service: Service, _caller: Reader) -> RunPlan:
    return service.plan(run_id)


@router.post(
    "/{run_id}/applied",
    response_model=AppliedResult,
    responses=documented(404, 409, 422),
    summary="After an outage: steps start..stop were applied with the plan as of last_seq (they become served)",
)
def post_applied(run_id: RunIdPath, body: AppliedIn, service: Service, caller: Trainer) -> AppliedResult:
    return service.applied(run_id, body, caller.name)
