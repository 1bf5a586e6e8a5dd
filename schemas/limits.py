"""The step domain and the input budgets of every entry point, defined once (pure: no imports of ours).

**The step domain.** A step, and every step-valued parameter of a schedule (``step_size``, ``T_max``,
milestones, ``decay_steps``, ``stepsize``, ``patience``...), is an integer in ``[0, MAX_STEP]``. ``2**53`` is
the largest integer below which every integer is exact in float64, so a step survives the round trip through
int64 *and* float64 arithmetic (``s / T_max``, ``s - milestone``, JSON readers that parse numbers as doubles)
without rounding. Derived totals (OneCycleLR's ``epochs * steps_per_epoch``, Keras' ``warmup_steps +
decay_steps``) must fit in it too.

**Served steps.** A served (leased, resumed, applied) step is at most ``MAX_SERVED_STEP = MAX_STEP - 1``, so
that ``horizon + 1``, the first step a change may alter (and the default ``from_step``), is still a step of
the domain: a run can never be leased into a state in which no change can be made.

**YAML.** Spec text is parsed by ``lrserve.schemas.yamlio`` within ``MAX_YAML_BYTES``, ``MAX_YAML_DEPTH`` and
``MAX_YAML_NODES`` (alias expansions counted), integers within int64 (``MAX_INT_DIGITS`` digits read at most).

**Value check.** ``lrserve.schemas.validation.check_values`` evaluates a spec at every step below
``CHECK_DENSE_STEPS`` (or its length) and at a deterministic sample beyond, at most ``CHECK_MAX_POINTS`` steps
and ``CHECK_MAX_WORK`` element-operations.
"""

from __future__ import annotations

#: Largest step, and largest value of a step-valued parameter: every integer up to it is exact in float64.
MAX_STEP = 2**53
#: Largest step a run may serve (lease, resume, applied): ``horizon + 1`` stays in the domain.
MAX_SERVED_STEP = MAX_STEP - 1
#: Largest event sequence number (the seq column is a signed 64-bit integer).
MAX_SEQ = 2**63 - 1

#: Integers in spec text: int64.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
#: Digits (sign and underscores aside) read as an integer at most; int64 has 19.
MAX_INT_DIGITS = 24
#: Largest YAML/JSON spec text, in characters.
MAX_YAML_BYTES = 1_000_000
#: Deepest nesting of collections in a YAML document.
MAX_YAML_DEPTH = 64
#: Most nodes a YAML document may build, each alias counted as the full size of what it repeats.
MAX_YAML_NODES = 100_000

#: The value check evaluates every step below this (or below the schedule's length, if shorter) ...
CHECK_DENSE_STEPS = 2**16
#: ... and at most this many steps in all (the dense part plus the sample beyond it) ...
CHECK_MAX_POINTS = 2**16 + 4096
#: ... and at most this much work (element-operations, as ``Schedule.work`` counts them): a few tens of ms.
CHECK_MAX_WORK = 1_000_000


def step_domain_error(value: int, *, upper: int = MAX_STEP, what: str = "the step domain") -> str | None:
    """The rule an integer breaks by exceeding ``upper`` (None when it does not), in the words errors use."""
    if value > upper:
        return f"must be <= {upper} ({what})"
    return None


def require_total_in_domain(total: int, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` (e.g. ``"epochs * steps_per_epoch"``) when a derived total is too large."""
    problem = step_domain_error(total)
    if problem is not None:
        raise ValueError(f"{what} = {total} {problem}")
