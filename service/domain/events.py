"""The kinds of event in a run's history and their payloads.

``created``   {"spec": RunSpec JSON, "labels": {...}}
``metric``    {"step", "name", "value", "incarnation", "applies_from"}: ``applies_from`` is
              ``max(step + 1, horizon + 1)`` at the time it was recorded, the first step a reduction it
              triggers may touch.
``change``    {"change": ChangeIn JSON (op, ...), "from_step", "revision"}
``resume``    {"step", "incarnation", "previous_horizon", "key"}: the job restarted from a checkpoint and
              will train ``step`` next; metrics of earlier incarnations at steps >= ``step`` stop counting.
``applied``   {"start", "stop", "as_of", "incarnation"}: a worker applied steps start..stop offline with the
              plan as of event ``as_of``; those steps keep that plan's values (``schemas.plan.Pin``).
``reduction`` {"metric_seq", "metric_step", "from_step", "multipliers"}: derived from metrics and recorded
              for the audit trail only; the fold recomputes reductions, it never reads these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from lrserve.schemas.plan import ChangeRec, Pin
from lrserve.schemas.wire import ChangeIn, PlateauChange, ReplaceChange, ScaleChange, SetChange
from lrserve.service.store.base import EventRecord

CREATED = "created"
METRIC = "metric"
CHANGE = "change"
RESUME = "resume"
APPLIED = "applied"
REDUCTION = "reduction"

CHANGE_ADAPTER: TypeAdapter[ReplaceChange | ScaleChange | SetChange | PlateauChange] = TypeAdapter(ChangeIn)


@dataclass(frozen=True)
class MetricRec:
    seq: int
    step: int
    name: str
    value: float
    incarnation: int
    applies_from: int
    at: datetime

    def same_value(self, value: float) -> bool:
        return self.value == value or (math.isnan(self.value) and math.isnan(value))


@dataclass(frozen=True)
class ResumeRec:
    seq: int
    step: int
    incarnation: int
    key: str | None
    at: datetime
    actor: str | None


def encode_float(value: float) -> float | str:
    """JSON has no NaN/inf: store them as the strings the wire uses ("NaN", "Infinity", "-Infinity")."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def decode_float(value: float | str) -> float:
    return float(value)


def metric_payload(step: int, name: str, value: float, incarnation: int, applies_from: int) -> dict[str, Any]:
    return {
        "step": step,
        "name": name,
        "value": encode_float(value),
        "incarnation": incarnation,
        "applies_from": applies_from,
    }


def change_payload(
    change: ReplaceChange | ScaleChange | SetChange | PlateauChange, from_step: int, revision: int
) -> dict[str, Any]:
    body = change.model_dump(mode="json", exclude={"dry_run", "expected_revision", "preview_steps", "reason"})
    body["from_step"] = from_step
    return {"change": body, "from_step": from_step, "revision": revision}


def parse(event: EventRecord) -> MetricRec | ChangeRec | ResumeRec | Pin | None:
    """The domain record of an event, or None for kinds the fold does not read (created, reduction)."""
    p = event.payload
    if event.kind == METRIC:
        return MetricRec(
            seq=event.seq,
            step=int(p["step"]),
            name=str(p["name"]),
            value=decode_float(p["value"]),
            incarnation=int(p["incarnation"]),
            applies_from=int(p["applies_from"]),
            at=event.at,
        )
    if event.kind == CHANGE:
        return ChangeRec(
            seq=event.seq,
            from_step=int(p["from_step"]),
            revision=int(p["revision"]),
            change=CHANGE_ADAPTER.validate_python(p["change"]),
            at=event.at,
            actor=event.actor,
            reason=event.reason,
        )
    if event.kind == RESUME:
        return ResumeRec(
            seq=event.seq,
            step=int(p["step"]),
            incarnation=int(p["incarnation"]),
            key=p.get("key"),
            at=event.at,
            actor=event.actor,
        )
    if event.kind == APPLIED:
        return Pin(seq=event.seq, start=int(p["start"]), stop=int(p["stop"]), as_of=int(p["as_of"]))
    return None
