"""The schedule union: every dialect's spec classes, dispatched on ``type``.

Each dialect module exports ``SPECS``, the classes (or, for Caffe, a nested union discriminated by
``lr_policy``) it contributes. Composites (SequentialLR, ChainedScheduler) hold nested ``ScheduleSpec``s, so
their forward references are resolved here, once every member is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter

from lrserve.schemas.specs import caffe, compose, keras, rangetest, torch
from lrserve.schemas.specs.base import ScheduleSpecBase
from lrserve.schemas.specs.plateau import ReduceLROnPlateau

_MEMBERS: tuple[Any, ...] = (
    *torch.SPECS,
    ReduceLROnPlateau,
    *compose.SPECS,
    *keras.SPECS,
    *caffe.SPECS,
    *rangetest.SPECS,
)

if TYPE_CHECKING:
    ScheduleSpec = ScheduleSpecBase
else:
    ScheduleSpec = Annotated[Union[_MEMBERS], Field(discriminator="type")]  # noqa: UP007

for _composite in compose.SPECS:
    _composite.model_rebuild(_types_namespace={"ScheduleSpec": ScheduleSpec})

SCHEDULE_ADAPTER: TypeAdapter[ScheduleSpecBase] = TypeAdapter(ScheduleSpec)


def schedule_type_names() -> list[str]:
    """Every accepted value of ``type`` (for docs, the CLI and the web page)."""
    names: list[str] = []
    for member in _MEMBERS:
        for cls in _classes(member):
            name = cls.model_fields["type"].default
            if name not in names:
                names.append(name)
    return names


def _classes(member: Any) -> list[type[ScheduleSpecBase]]:
    if isinstance(member, type):
        return [member]
    args = getattr(member, "__args__", ())
    return [c for a in args for c in _classes(a)] if args else []
