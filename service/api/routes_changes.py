"""Mid-run changes by an operator, and resumes of a training job from a checkpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from lrserve.schemas.wire import ChangeIn, ChangeResult, ResumeIn, ResumeResult
from lrserve.service.api.deps import Admin, IfMatch, RunIdPath, Service, Trainer
from lrserve.service.api.problems import documented

router = APIRouter(prefix="/v1/runs", tags=["changes"])


@router.post(
    "/{run_id}/changes",
    response_model=ChangeResult,
    responses=documented(404, 409, 412, 422),
    summary="Replace, scale, set or re-plateau the schedule from the first unserved step (or from_step)",
)
def post_change(
    run_id: RunIdPath, change: Annotated[ChangeIn, Body()], service: Service, caller: Admin, revision: IfMatch
) -> ChangeResult:
    return service.change(run_id, change, caller.name, if_match=revision)


@router.post(
    "/{run_id}/resume",
    response_model=ResumeResult,
    responses=documented(404, 422),
    summary="Declare a restart from a checkpoint: a new incarnation; steps from `step` on are planned anew",
)
def post_resume(run_id: RunIdPath, body: ResumeIn, service: Service, caller: Trainer) -> ResumeResult:
    return service.resume(run_id, body, caller.name)
