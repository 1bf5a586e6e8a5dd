"""Runs: create (idempotent by id), read, list by label, delete; and a run's history (events)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from lrserve.schemas.errors import FieldError, InvalidInput
from lrserve.schemas.limits import MAX_SEQ
from lrserve.schemas.wire import EventPage, RunCreate, RunPage, RunPublic
from lrserve.service.api.deps import Admin, Reader, RunIdPath, Service, Trainer
from lrserve.service.api.problems import documented

router = APIRouter(prefix="/v1/runs", tags=["runs"])
MAX_PAGE = 1000


def parse_labels(labels: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, item in enumerate(labels):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise InvalidInput(
                detail=f"label filter {item!r} is not key:value",
                errors=[FieldError(("query", "label", i), "expected key:value")],
            )
        out[key] = value
    return out


@router.put(
    "/{run_id}",
    response_model=RunPublic,
    responses={201: {"model": RunPublic, "description": "created"}, **documented(409, 422)},
    summary="Create a run (idempotent: 200 if it exists with the same spec)",
)
def put_run(run_id: RunIdPath, body: RunCreate, service: Service, caller: Trainer, response: Response) -> RunPublic:
    run, created = service.ensure_run(run_id, body, caller.name)
    if created:
        response.status_code = status.HTTP_201_CREATED
        response.headers["Location"] = f"/v1/runs/{run_id}"
    return run


@router.get("", response_model=RunPage, summary="List runs, filtered by labels, by id")
def list_runs(
    service: Service,
    _caller: Reader,
    label: Annotated[list[str], Query(description="key:value; repeat to require several", max_length=32)] = [],  # noqa: B006
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> RunPage:
    return service.list_runs(parse_labels(label), limit, cursor)


@router.get("/{run_id}", response_model=RunPublic, responses=documented(404))
def get_run(run_id: RunIdPath, service: Service, _caller: Reader) -> RunPublic:
    return service.get_run(run_id)


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses=documented(404))
def delete_run(run_id: RunIdPath, service: Service, caller: Admin) -> Response:
    service.delete_run(run_id, caller.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{run_id}/events", response_model=EventPage, responses=documented(404), summary="The run's history")
def list_events(
    run_id: RunIdPath,
    service: Service,
    _caller: Reader,
    # Bounded by the seq column (BIGINT): a larger value would overflow the driver, not just match nothing.
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="return events with seq > after")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EventPage:
    return service.events(run_id, after, limit)
