"""The one exception hierarchy of lrserve.

Every error a client can cause is one of these; the server maps them to problem+json responses in exactly one
place (``lrserve.service.api.problems``) and the client raises the same classes from those responses.

    LrserveError                    500  (never raised for client input)
    ├── InvalidInput                422  a spec, a change or a query broke a rule
    │   ├── SpecInvalid             422  a schedule spec failed validation (``errors`` holds field paths)
    │   ├── ExpressionError         422  an lr_lambda expression was refused by the sandbox
    │   └── OverBudget              422  a request would cost more than a budget allows (``extra`` names it)
    ├── Unauthorized                401
    ├── Forbidden                   403
    ├── NotFound                    404
    │   └── RunNotFound             404
    ├── Conflict                    409
    │   ├── RunExists               409  same id, another spec
    │   ├── MetricConflict          409  same step+name, another value, same incarnation
    │   ├── HorizonConflict         409  a change asked to alter steps already served
    │   ├── StaleIncarnation        409  a request from an earlier incarnation of the run
    │   └── RevisionConflict        409  expected_revision did not match
    ├── PreconditionFailed          412  If-Match did not match
    ├── PayloadTooLarge             413
    ├── Cancelled                   499  client side: the caller gave up on a call before it was sent
    └── Unavailable                 503  the store could not be reached; retry
        └── ServerUnreachable       503  client side: the server could not be reached within the retry budget

The two client-side classes are never answered by the server; ``lrserve.client`` raises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldError:
    """One broken rule: ``loc`` is the field path (e.g. ``("schedule", "max_lr", 1)``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def path(self) -> str:
        return ".".join(str(p) for p in self.loc)

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "path": self.path(), "msg": self.msg, "type": self.type}


@dataclass
class LrserveError(Exception):
    """Base of every lrserve error. ``status`` and ``problem_type`` are stable: clients dispatch on them."""

    detail: str
    errors: Sequence[FieldError] = field(default_factory=tuple)
    extra: dict[str, Any] = field(default_factory=dict)

    status: ClassVar[int] = 500
    problem_type: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def __str__(self) -> str:
        if not self.errors:
            return self.detail
        lines = [self.detail] + [f"  {e.path() or '<root>'}: {e.msg}" for e in self.errors]
        return "\n".join(lines)


class InvalidInput(LrserveError):
    status = 422
    problem_type = "invalid-input"
    title = "Invalid input"


class SpecInvalid(InvalidInput):
    problem_type = "spec-invalid"
    title = "Invalid schedule spec"


class ExpressionError(InvalidInput):
    problem_type = "expression-refused"
    title = "Expression refused"


class OverBudget(InvalidInput):
    """A request priced above one of the server's budgets (``service.budget``); ``extra``: budget, limit, asked."""

    problem_type = "over-budget"
    title = "Over a request budget"


class Unauthorized(LrserveError):
    status = 401
    problem_type = "unauthorized"
    title = "Missing or unknown token"


class Forbidden(LrserveError):
    status = 403
    problem_type = "forbidden"
    title = "Token lacks the scope"


class NotFound(LrserveError):
    status = 404
    problem_type = "not-found"
    title = "Not found"


class RunNotFound(NotFound):
    problem_type = "run-not-found"
    title = "Run not found"


class Conflict(LrserveError):
    status = 409
    problem_type = "conflict"
    title = "Conflict"


class RunExists(Conflict):
    problem_type = "run-exists"
    title = "Run exists with another spec"


class MetricConflict(Conflict):
    problem_type = "metric-conflict"
    title = "Metric already recorded with another value"


class HorizonConflict(Conflict):
    problem_type = "horizon-conflict"
    title = "Step already served"


class StaleIncarnation(Conflict):
    problem_type = "stale-incarnation"
    title = "Request from an earlier incarnation"


class RevisionConflict(Conflict):
    problem_type = "revision-conflict"
    title = "Run changed since the expected revision"


class PreconditionFailed(LrserveError):
    status = 412
    problem_type = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(LrserveError):
    status = 413
    problem_type = "payload-too-large"
    title = "Payload too large"


class Cancelled(LrserveError):
    """The caller gave up on the call (e.g. a lease it stopped waiting for) before an attempt was sent."""

    status = 499
    problem_type = "cancelled"
    title = "Cancelled"


class Unavailable(LrserveError):
    status = 503
    problem_type = "unavailable"
    title = "Service unavailable"


class ServerUnreachable(Unavailable):
    """The server could not be reached (or kept failing) within the retry budget of a call."""

    problem_type = "unreachable"
    title = "Server unreachable"


def all_error_classes() -> list[type[LrserveError]]:
    """Every class of the hierarchy, base first (the client maps problem types back through this)."""
    out: list[type[LrserveError]] = []
    todo: list[type[LrserveError]] = [LrserveError]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out
