"""LR range tests: what a finished (or diverged) test suggests, and the training run that follows it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from lrserve.schemas.core.lrfinder import UpperRule
from lrserve.schemas.wire import FollowupIn, RunPublic, SuggestionPublic
from lrserve.service.api.deps import Reader, RunIdPath, Service, Trainer
from lrserve.service.api.problems import documented

router = APIRouter(prefix="/v1/runs", tags=["range tests"])


@router.get(
    "/{run_id}/suggestion",
    response_model=SuggestionPublic,
    responses=documented(404, 409),
    summary="Suggested LRs of an LRRangeTest run (steepest, valley, minimum/10, CLR bounds) and its plot data",
)
def get_suggestion(
    run_id: RunIdPath,
    service: Service,
    _caller: Reader,
    upper_rule: Annotated[UpperRule, Query(description="rule giving the CLR upper bound")] = "valley",
    lower_div: Annotated[float, Query(gt=1, le=1e6, description="lower bound = upper / lower_div")] = 6.0,
) -> SuggestionPublic:
    return service.suggestion(run_id, upper_rule, lower_div)


@router.post(
    "/{run_id}/followup",
    response_model=RunPublic,
    responses={201: {"model": RunPublic, "description": "created"}, **documented(404, 409, 422)},
    summary="Create the training run a range test suggests (CyclicLR or OneCycleLR between its bounds)",
)
def post_followup(
    run_id: RunIdPath, body: FollowupIn, service: Service, caller: Trainer, response: Response
) -> RunPublic:
    run, created = service.followup(run_id, body, caller.name)
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/runs/{body.run_id}"
    return run
