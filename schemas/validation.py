"""Turning pydantic's errors into ``SpecInvalid`` with plain field paths, and YAML/JSON text into specs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lrserve.schemas.errors import FieldError, SpecInvalid
from lrserve.schemas.specs.run import RunSpec

M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError, data: Any, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """pydantic errors as FieldErrors whose paths lead into ``data`` (the input that was validated)."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        loc = strip_union_tags(tuple(err["loc"]), data, err["type"])
        out.append(FieldError(loc=prefix + loc, msg=msg, type=err["type"]))
    return out


def strip_union_tags(loc: tuple[str | int, ...], data: Any, error_type: str = "") -> tuple[str | int, ...]:
    """Drop the tags pydantic puts into ``loc`` for the union member it tried (``StepLR``, ``replace``, ``float``).

    A part that leads into the input is a field; a part equal to a value of the object it would index (the
    discriminator, e.g. ``type: StepLR``) or naming a type (``float``, ``list[float]``, ``function-after[...]``)
    is a tag; anything else is a field absent from the input (missing, or checked with its default).
    """
    out: list[str | int] = []
    node = data
    for part in loc:
        out.append(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node.__getitem__(part)
        elif isinstance(part, str) and (_is_type_tag(part) or (isinstance(node, dict) and part in node.values())):
            out.pop()  # a union tag, not a field
        else:
            node = None
    return tuple(out)


_TYPE_TAGS = frozenset({"float", "int", "str", "bool", "list", "dict", "none", "tuple"})


def _is_type_tag(part: str) -> bool:
    return part in _TYPE_TAGS or "[" in part


def summarize(errors: Sequence[FieldError], default: str = "invalid") -> str:
    """One line: the first error's path and message, and how many more there are."""
    if not errors:
        return default
    first = errors[0]
    detail = f"{first.path() or '<root>'}: {first.msg}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail


def validate_model(model: type[M], data: Any, *, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, data, prefix)
        raise SpecInvalid(detail=summarize(errors), errors=errors) from None


def validate_run_spec(data: Any) -> RunSpec:
    return validate_model(RunSpec, data)


def load_spec_text(text: str) -> RunSpec:
    """Parse YAML (a superset of JSON) text into a RunSpec."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecInvalid(detail=f"not valid YAML/JSON: {exc}") from None
    return validate_run_spec(data)
