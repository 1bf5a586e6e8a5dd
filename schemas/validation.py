"""Turning pydantic's errors into ``SpecInvalid`` with plain field paths, YAML/JSON text into specs, and the check
that a spec's values are finite LRs at every step it defines (``check_values``)."""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ValidationError

from lrserve.schemas.core.schedule import Schedule
from lrserve.schemas.errors import FieldError, InvalidInput, SpecInvalid
from lrserve.schemas.limits import CHECK_DENSE_STEPS, CHECK_MAX_POINTS, CHECK_MAX_WORK, MAX_STEP
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.yamlio import load_yaml

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
    """Parse YAML (a superset of JSON) text into a RunSpec (``lrserve.schemas.yamlio``'s rules and budgets)."""
    return validate_run_spec(load_yaml(text, error=SpecInvalid))


# ---- the value check --------------------------------------------------------------------------------------------

_SAMPLE = 2048  # log-spaced steps of the sample beyond the dense part
_CHUNK = 8192  # steps evaluated at once (a failure is then located within a chunk)
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?")


def check_values(spec: RunSpec) -> None:
    """Refuse a spec whose LR (or cycled momentum) is not a finite number >= 0 somewhere on the check grid.

    The grid (``check_grid``): every step below ``min(total_steps, CHECK_DENSE_STEPS)``, then log-spaced steps up
    to ``total_steps`` (the step domain's end for an endless schedule) and each integer the spec names (step-valued
    parameters, milestones, numbers in expressions; for SequentialLR also offset by the milestones) and its
    neighbours; thinned to ``CHECK_MAX_WORK``. Pure and cheap (tens of ms), so every entry point can call it before
    a run exists: ``lrserve validate``/``preview``, a run's creation and a ``replace`` change.

    Raises ``SpecInvalid`` with a FieldError naming ``schedule`` (the phase of a SequentialLR, ``lr_lambda`` for an
    expression) and the step.
    """
    schedule = build_schedule(spec)
    steps = check_grid(spec, schedule)
    names = spec.group_names
    for lo in range(0, steps.size, _CHUNK):
        chunk = steps[lo : lo + _CHUNK]
        failure = _evaluation_failure(schedule, chunk)
        if failure is not None:
            # The error's own step may be relative to a phase: find the first absolute step that fails.
            ok, bad = 0, chunk.size
            while bad - ok > 1:
                mid = (ok + bad) // 2
                ok, bad = (ok, mid) if _evaluation_failure(schedule, chunk[:mid]) is not None else (mid, bad)
            step = int(chunk[bad - 1])
            _refuse(spec, step, f"cannot be evaluated at step {step}: {failure}")
        with np.errstate(all="ignore"):
            lr = np.asarray(schedule.lr(chunk), dtype=np.float64)
            mom = None if schedule.momentum is None else np.asarray(schedule.momentum(chunk), dtype=np.float64)
        for what, values in (("LR", lr), ("momentum", mom)):
            if values is None:
                continue
            bad_values = ~(np.isfinite(values) & (values >= 0))
            if bad_values.any():
                g, i = np.unravel_index(int(np.argmax(bad_values)), bad_values.shape)
                group = names[g] if g < len(names) else str(g)
                _refuse(
                    spec,
                    int(chunk[i]),
                    f"the {what} of param group {group!r} is {values[g, i]} at step {int(chunk[i])}: every step's "
                    f"{what} must be a finite number >= 0",
                )


def _evaluation_failure(schedule: Schedule, steps: npt.NDArray[np.int64]) -> str | None:
    """Why evaluating ``steps`` raises (an expression giving inf, a scan refused...), or None."""
    try:
        with np.errstate(all="ignore"):
            schedule.lr(steps)
            if schedule.momentum is not None:
                schedule.momentum(steps)
    except InvalidInput as exc:
        return exc.detail
    except (ArithmeticError, ValueError) as exc:
        return str(exc)
    return None


def build_schedule(spec: RunSpec) -> Schedule:
    """The numeric schedule of a spec (without plateau); a build failure is a ``SpecInvalid`` naming ``schedule``."""
    try:
        return spec.schedule.to_schedule(spec.base_lrs())
    except (ValueError, ArithmeticError) as exc:
        raise SpecInvalid(detail=f"schedule: {exc}", errors=[FieldError(("schedule",), str(exc))]) from None


def check_grid(spec: RunSpec, schedule: Schedule) -> npt.NDArray[np.int64]:
    """The steps ``check_values`` evaluates (sorted, unique, within ``[0, MAX_STEP]`` and the work budget)."""
    total = schedule.total_steps
    end = MAX_STEP if total is None else max(0, min(int(total), MAX_STEP))
    dense = np.arange(min(end + 1, CHECK_DENSE_STEPS), dtype=np.int64)
    named = {s + d for s in _named_steps(spec.schedule.model_dump(mode="json")) for d in (-1, 0, 1)}
    sample = np.unique(np.round(np.geomspace(1, max(end, 1), _SAMPLE)).astype(np.int64))
    extra = np.array(sorted(s for s in named if 0 <= s <= end), dtype=np.int64)
    tail = np.union1d(np.union1d(sample, extra), [end])
    tail = tail[tail >= dense.size]
    if dense.size + tail.size > CHECK_MAX_POINTS:
        keep = np.linspace(0, tail.size - 1, CHECK_MAX_POINTS - dense.size).round().astype(np.int64)
        tail = tail[np.unique(keep)]
    steps = np.concatenate([dense, tail])
    # Thin the dense part until the work fits; then, for a scan (whose work grows with the largest step), drop the
    # largest steps.
    stride = 1
    while schedule.work(steps) > CHECK_MAX_WORK and stride < dense.size:
        stride *= 2
        steps = np.union1d(np.union1d(dense[::stride], extra[extra < dense.size]), tail)
    if schedule.work(steps) > CHECK_MAX_WORK:
        lo, hi = 1, steps.size
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if schedule.work(steps[:mid]) <= CHECK_MAX_WORK else (lo, mid - 1)
        steps = steps[:lo]
    return steps


def _named_steps(node: Any, depth: int = 0) -> set[int]:
    """Integers a schedule's dump names (and numbers in its expressions), offset by SequentialLR's milestones."""
    out: set[int] = set()
    if depth > 8:
        return out
    if isinstance(node, bool):
        return out
    if isinstance(node, int):
        out.add(node)
    elif isinstance(node, str):
        for match in _NUMBER.findall(node)[:64]:
            value = float(match)
            if math.isfinite(value) and value <= MAX_STEP:
                out.add(round(value))
    elif isinstance(node, list):
        for item in node[:1024]:
            out |= _named_steps(item, depth + 1)
    elif isinstance(node, dict):
        children = node.get("schedulers")
        milestones = node.get("milestones")
        for key, value in node.items():
            if key != "schedulers":
                out |= _named_steps(value, depth + 1)
        if isinstance(children, list):
            offsets = [0, *milestones] if node.get("type") == "SequentialLR" and isinstance(milestones, list) else [0]
            for i, child in enumerate(children):
                base = offsets[i] if i < len(offsets) else 0
                out |= {base + s for s in _named_steps(child, depth + 1)}
    return out


def _refuse(spec: RunSpec, step: int, msg: str) -> NoReturn:
    loc: tuple[str | int, ...] = ("schedule",)
    node: Any = spec.schedule
    milestones = getattr(node, "milestones", None)
    if getattr(node, "type", None) == "SequentialLR" and isinstance(milestones, list):
        phase = bisect.bisect_right(milestones, step)
        loc, node = (*loc, "schedulers", phase), node.schedulers[phase]
    if hasattr(node, "lr_lambda"):
        loc = (*loc, "lr_lambda")
    detail = f"{'.'.join(map(str, loc))}: {msg}"
    raise SpecInvalid(detail=detail, errors=[FieldError(loc, msg, "value_not_finite")], extra={"step": step})
