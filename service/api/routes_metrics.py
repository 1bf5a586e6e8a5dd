"""Metrics a training job reports (they drive plateau rules); retries of the same value are no-ops."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import Discriminator, Tag

from lrserve.schemas.wire import MetricBatch, MetricIn, MetricPost, MetricsResult
from lrserve.service.api.deps import RunIdPath, Service, Trainer
from lrserve.service.api.problems import documented

router = APIRouter(prefix="/v1/runs", tags=["metrics"])


# The tags show only in error locations, where ``strip_union_tags`` drops them (it knows type tags by "[").
_ONE, _BATCH = "one[MetricPost]", "batch[MetricBatch]"


def _shape(value: Any) -> str:
    return _BATCH if isinstance(value, dict) and "metrics" in value else _ONE


MetricsBody = Annotated[
    Annotated[MetricPost, Tag(_ONE)] | Annotated[MetricBatch, Tag(_BATCH)],
    Discriminator(_shape),
    Body(
        openapi_examples={
            "one": {"value": {"step": 1000, "name": "val_loss", "value": 0.42, "incarnation": 1}},
            "batch": {"value": {"metrics": [{"step": 1000, "name": "val_loss", "value": 0.42}], "incarnation": 1}},
        }
    ),
]


@router.post(
    "/{run_id}/metrics",
    response_model=MetricsResult,
    responses=documented(404, 409, 422),
    summary="Record one metric {step, name, value, incarnation} or a batch {metrics: [...], incarnation}",
)
def post_metrics(run_id: RunIdPath, body: MetricsBody, service: Service, caller: Trainer) -> MetricsResult:
    if isinstance(body, MetricBatch):
        batch = body
    else:
        one = MetricIn(step=body.step, name=body.name, value=body.value)
        batch = MetricBatch(metrics=[one], incarnation=body.incarnation)
    return service.post_metrics(run_id, batch, caller.name)
