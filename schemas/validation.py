"""Turning pydantic's errors into ``SpecInvalid`` with plain field paths, and YAML/JSON text into specs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lrserve.schemas.errors import FieldError, SpecInvalid
from lrserve.schemas.specs.run import RunSpec

M = TypeVar("M", bound=BaseModel)


def field_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """pydantic errors as FieldErrors; union-member tags (e.g. ``OneCycleLR``) are dropped from the path."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        msg = err["msg"].removeprefix("Value error, ")
        out.append(FieldError(loc=prefix + loc, msg=msg, type=err["type"]))
    return out


def summarize(errors: Sequence[FieldError], default: str = "invalid") -> str:
    """One line: the first error's path and message, and how many more there are."""
    if not errors:
        return default
    first = errors[0]
    detail = f"{first.path() or '<root>'}: {first.msg}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return detail


def _is_union_tag(part: str | int) -> bool:
    # pydantic inserts the discriminator value (e.g. 'StepLR', 'caffe', 'step') and 'function-after[...]'.
    return isinstance(part, str) and (part[:1].isupper() or part in _TAGS or "[" in part)


_TAGS = {"caffe", "fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "float", "list[float]"}


def validate_model(model: type[M], data: Any, *, prefix: tuple[str | int, ...] = ()) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc, prefix)
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
