"""The error hierarchy: one stable problem type per class, an HTTP status per class, drawn in the docstring."""

from __future__ import annotations

import inspect
import re

import pytest

import lrserve.schemas
from lrserve.schemas import errors
from lrserve.schemas.errors import FieldError, LrserveError, SpecInvalid, all_error_classes

CLASSES = all_error_classes()


def test_all_error_classes_lists_every_class_of_the_module() -> None:
    defined = {obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, LrserveError)}
    assert set(CLASSES) == defined
    assert CLASSES[0] is LrserveError


def test_problem_types_are_distinct_slugs() -> None:
    types = [cls.problem_type for cls in CLASSES]
    assert len(set(types)) == len(types), types
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", t) for t in types), types


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_each_class_has_a_status_and_a_title(cls: type[LrserveError]) -> None:
    assert 400 <= cls.status < 600
    assert cls.title
    # A subclass refines its parent's problem without changing the class of HTTP answer.
    for base in cls.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, LrserveError) and base is not LrserveError:
            assert cls.status == base.status, (cls, base)


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_the_docstring_tree_shows_each_class_with_its_status(cls: type[LrserveError]) -> None:
    assert errors.__doc__ is not None
    assert re.search(rf"\b{cls.__name__}\s+{cls.status}\b", errors.__doc__), cls.__name__


def test_client_errors_are_4xx_and_only_internal_or_unavailable_are_5xx() -> None:
    five = {cls for cls in CLASSES if cls.status >= 500}
    assert five == {LrserveError} | {cls for cls in CLASSES if issubclass(cls, errors.Unavailable)}


def test_field_errors_render_their_paths() -> None:
    err = SpecInvalid(detail="bad", errors=[FieldError(("schedule", "max_lr", 1), "too big"), FieldError((), "x")])
    assert str(err) == "bad\n  schedule.max_lr.1: too big\n  <root>: x"
    assert err.errors[0].as_dict() == {
        "loc": ["schedule", "max_lr", 1],
        "path": "schedule.max_lr.1",
        "msg": "too big",
        "type": "value_error",
    }
    assert isinstance(err, Exception)
    assert err.args == ("bad",)


def test_schemas_all_lists_only_existing_names() -> None:
    names = lrserve.schemas.__all__
    assert len(set(names)) == len(names)
    missing = [n for n in names if not hasattr(lrserve.schemas, n)]
    assert missing == []
