"""The schedule union: every dialect's spec classes, dispatched on ``type``.

Each dialect module exports ``SPECS``, the classes (or, for Caffe, a nested union discriminated by
``lr_policy``) it contributes. Composites (SequentialLR, ChainedScheduler) hold nested ``ScheduleSpec``s, so
their forward references are resolved here, once every member is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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


class _StringMappingOnly:
    """JSON schema fix: pydantic writes a nested union (Caffe's, by ``lr_policy``) into the outer discriminator's
    ``mapping`` as a schema, where OpenAPI allows only references, so FastAPI could not build /openapi.json.
    The entry is dropped (a mapping is optional: readers then match the ``oneOf`` members themselves)."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        mapping = target.get("discriminator", {}).get("mapping")
        if mapping:
            target["discriminator"]["mapping"] = {k: v for k, v in mapping.items() if isinstance(v, str)}
        return schema


if TYPE_CHECKING:
    ScheduleSpec = ScheduleSpecBase
else:
    ScheduleSpec = Annotated[Union[_MEMBERS], Field(discriminator="type"), _StringMappingOnly()]  # noqa: UP007

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
