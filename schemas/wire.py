"""Request and response models of the HTTP API, shared by the server and the client.

Naming follows ``XIn`` (what a client sends) and ``XPublic``/``X`` (what the server answers). Field descriptions
are the API's documentation (they show in /docs).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lrserve.schemas.limits import MAX_SERVED_STEP, MAX_STEP
from lrserve.schemas.specs.base import PerGroupLr
from lrserve.schemas.specs.plateau import PlateauSpec
from lrserve.schemas.specs.run import RunSpec
from lrserve.schemas.specs.union import ScheduleSpec

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
LABEL_KEY_PATTERN = r"^[A-Za-z0-9_.\-/]{1,63}$"
MAX_LABELS = 32
MAX_LEASE = 100_000
MAX_METRICS_PER_BATCH = 1_000
MAX_CURVE_POINTS = 1_000_000
#: steps one ``POST .../applied`` report may cover (the server's default ``max_applied_steps``; clients split)
MAX_APPLIED_STEPS = 1_000_000
MAX_REASON = 500

# Free text is stored as is in text columns, and PostgreSQL's cannot hold NUL: refuse control characters
# (tab and newline aside) on every backend alike.
NO_CONTROL_CHARS = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
LabelValue = Annotated[str, Field(max_length=200, pattern=NO_CONTROL_CHARS)]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, description="the user's id of the run, e.g. a job name")]
Step = Annotated[int, Field(ge=0, le=MAX_STEP, description="a training step (0-based)")]
# A step that is (or becomes) served, or whose successor may be a change's from_step (a metric's reduction applies
# from step + 1): one below the domain's end, so horizon + 1 is always a valid from_step.
ServedStep = Annotated[int, Field(ge=0, le=MAX_SERVED_STEP, description="a training step (0-based)")]


class WireModel(BaseModel):
    # NaN/inf metric values travel as the strings "NaN"/"Infinity" (JSON has no such numbers).
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


# ---- runs -------------------------------------------------------------------------------------------------------


class RunCreate(WireModel):
    """Body of ``PUT /v1/runs/{run_id}``: a full spec, or a preset name plus overrides."""

    spec: RunSpec | None = Field(None, description="the run's spec; omit when using a preset")
    preset: str | None = Field(None, max_length=100, description="name of a preset in the server's config")
    overrides: dict[str, Any] | None = Field(None, description="deep-merged into the preset's spec")
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY_PATTERN)], LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )


class PlateauStatePublic(WireModel):
    metric: str
    best: float | None = Field(description="best value seen (null before the first value)")
    num_bad: int = Field(description="bad values counted since the last improvement or reduction")
    cooldown_counter: int
    num_reductions: int
    last_value: float | None


class MetricPublic(WireModel):
    step: int
    name: str
    value: float


class RunPublic(WireModel):
    run_id: str
    spec: RunSpec
    labels: dict[str, str]
    revision: int = Field(description="number of recorded changes; each change bumps it")
    horizon: int = Field(description="highest step served to a worker (-1: none yet); steps <= horizon are frozen")
    incarnation: int = Field(description="bumped by every resume; requests from earlier ones are refused")
    group_names: list[str]
    schedule_type: str = Field(description="type of the schedule in force at the first unserved step")
    scale: list[float] = Field(description="per group: manual scale x plateau scale at the first unserved step")
    current_lr: list[float] = Field(description="per group: LR at the first unserved step")
    plateau: PlateauStatePublic | None
    last_metric: MetricPublic | None
    total_steps: int | None = Field(description="steps the schedule in force defines (null: unbounded)")
    created_at: datetime
    updated_at: datetime


class RunSummary(WireModel):
    run_id: str
    labels: dict[str, str]
    schedule_type: str
    revision: int
    horizon: int
    incarnation: int
    created_at: datetime
    updated_at: datetime


class RunPage(WireModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at the end")


# ---- leases -----------------------------------------------------------------------------------------------------


class GroupValues(WireModel):
    name: str
    lr: list[float]
    momentum: list[float] | None = Field(description="cycled momentum (or Adam's beta1); null if not cycled")


class LrWindow(WireModel):
    """Values of steps ``start .. start+count-1``: the answer to a worker's lease."""

    run_id: str
    start: int
    count: int
    revision: int
    incarnation: int
    horizon: int
    groups: list[GroupValues]
    done: bool = Field(description="true when the window reaches past the schedule's end (or a range test stopped)")
    total_steps: int | None
    last_seq: int = Field(0, description="seq of the run's last event: a client's cached plan is current if equal")


# ---- metrics ----------------------------------------------------------------------------------------------------


class MetricIn(WireModel):
    step: ServedStep
    name: Annotated[str, Field(min_length=1, max_length=200)]
    value: float = Field(description="NaN and +/-inf are accepted (as JSON strings 'NaN', 'Infinity') and count as bad")


_WRITE_INCARNATION = (
    "the sender's incarnation: an older one is refused (409); required once the run has resumed (a write without "
    "it is then refused, so a zombie of an earlier launch cannot record anything)"
)


class MetricPost(MetricIn):
    """One metric, the short form of ``MetricBatch``; fenced like it."""

    incarnation: int | None = Field(None, ge=1, description=_WRITE_INCARNATION)


class MetricBatch(WireModel):
    metrics: list[MetricIn] = Field(min_length=1, max_length=MAX_METRICS_PER_BATCH)
    incarnation: int | None = Field(None, ge=1, description=_WRITE_INCARNATION)


class ReductionPublic(WireModel):
    metric_step: int
    from_step: int
    multipliers: list[float]


class MetricsResult(WireModel):
    accepted: list[MetricPublic]
    duplicates: list[MetricPublic] = Field(description="already recorded with the same value: no-ops")
    plateau: PlateauStatePublic | None
    reductions: list[ReductionPublic] = Field(description="reductions these metrics triggered")
    reduction_from_step: int | None = Field(description="first step of the latest reduction triggered, if any")


# ---- changes ----------------------------------------------------------------------------------------------------


class ChangeCommon(WireModel):
    from_step: Step | None = Field(None, description="first step affected; default and minimum: horizon + 1")
    reason: Annotated[str, Field(max_length=MAX_REASON, pattern=NO_CONTROL_CHARS)] | None = None
    dry_run: bool = Field(False, description="return the resulting curve without recording anything")
    expected_revision: int | None = Field(None, description="refuse (409) if the run's revision differs")
    preview_steps: int = Field(1000, ge=1, le=MAX_CURVE_POINTS, description="dry run: steps to preview")


class ReplaceChange(ChangeCommon):
    op: Literal["replace"] = "replace"
    schedule: ScheduleSpec
    origin: Literal["absolute", "restart"] = Field(
        "absolute", description="absolute: evaluate at the global step; restart: at step - from_step"
    )


class ScaleChange(ChangeCommon):
    op: Literal["scale"] = "scale"
    factor: float = Field(gt=0, le=1e6, description="multiplies every group's LR from from_step on")


class SetChange(ChangeCommon):
    op: Literal["set"] = "set"
    lr: PerGroupLr = Field(description="LR to hold, scalar or one per group")
    until_step: Step | None = Field(None, description="first step where the plan resumes (null: holds)")


class PlateauChange(ChangeCommon):
    op: Literal["plateau"] = "plateau"
    plateau: PlateauSpec | None = Field(description="new plateau rules (state restarts), or null to stop")


ChangeIn = Annotated[ReplaceChange | ScaleChange | SetChange | PlateauChange, Field(discriminator="op")]


class CurveGroups(WireModel):
    steps: list[int]
    groups: list[GroupValues]


class ChangeResult(WireModel):
    applied: bool = Field(description="false for a dry run")
    revision: int
    from_step: int
    event_seq: int | None
    current: CurveGroups | None = Field(description="dry run: the curve as planned now")
    proposed: CurveGroups | None = Field(description="dry run: the curve with the change")


class PlannedChange(WireModel):
    seq: int
    from_step: int
    revision: int
    change: ChangeIn
    at: datetime
    actor: str | None
    reason: str | None


class PlannedReduction(WireModel):
    metric_seq: int
    metric_step: int
    from_step: int
    multipliers: list[float]


class PlannedPin(WireModel):
    seq: int
    start: int
    stop: int
    as_of: int


class AppliedIn(WireModel):
    """After an outage: the steps a worker applied with its locally evaluated plan (as of event ``last_seq``)."""

    start: ServedStep
    stop: ServedStep
    last_seq: int = Field(ge=1, description="last_seq of the plan the worker evaluated")
    incarnation: int | None = None


class AppliedResult(WireModel):
    horizon: int
    pinned: bool = Field(description="true when the server's plan had changed and the steps were pinned")
    start: int
    stop: int


class RunPlan(WireModel):
    """Everything needed to evaluate a run's LRs locally (``lrserve.schemas.plan.Plan``): the client keeps it to
    go on training through a server outage."""

    run_id: str
    spec: RunSpec
    changes: list[PlannedChange]
    reductions: list[PlannedReduction]
    pins: list[PlannedPin]
    horizon: int
    incarnation: int
    revision: int
    last_seq: int


# ---- LR range test ----------------------------------------------------------------------------------------------


class RulePick(WireModel):
    rule: str
    description: str
    lr: list[float] = Field(description="the pick, per param group")
    step: int = Field(description="the step of the test the rule read")
    loss: float = Field(description="the smoothed loss there")


class ClrBoundsPublic(WireModel):
    lower: list[float]
    upper: list[float]
    upper_rule: str
    lower_div: float
    step: int


class RangeTestPlot(WireModel):
    steps: list[int]
    lr: list[float] = Field(description="LR of the first param group at each step (log x)")
    loss: list[float]
    smoothed: list[float]


class SuggestionPublic(WireModel):
    """What a range test says: each rule's pick, the CLR bounds, and the loss-vs-LR plot data."""

    run_id: str
    done: bool = Field(description="the test diverged or reached its last step")
    stopped_at: int | None = Field(description="the step where the loss diverged (null: it did not)")
    smoothing: str
    smooth_f: float
    diverge_th: float
    rules: list[RulePick]
    clr_bounds: ClrBoundsPublic | None
    plot: RangeTestPlot


class FollowupIn(WireModel):
    """Create the training run that follows a range test, from its suggestion."""

    run_id: RunId = Field(description="id of the new training run")
    policy: Literal["triangular", "triangular2", "exp_range", "one_cycle"] = "triangular"
    upper_rule: Literal["valley", "steepest", "minimum_div_10", "minimum"] = "valley"
    lower_div: float = Field(6.0, gt=1, le=1e6, description="lower bound = upper / lower_div")
    step_size_up: int | None = Field(None, ge=1, le=MAX_STEP // 2, description="CyclicLR: steps of a half cycle")
    steps_per_epoch: int | None = Field(
        None, ge=1, le=MAX_STEP // 8, description="CyclicLR: step_size_up = 4 x this when not given"
    )
    gamma: float | None = Field(None, gt=0, le=1, description="exp_range: amplitude decay per step")
    total_steps: int | None = Field(None, ge=1, le=MAX_STEP, description="one_cycle: length of the cycle")
    labels: dict[Annotated[str, Field(pattern=LABEL_KEY_PATTERN)], LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS
    )


# ---- resume -----------------------------------------------------------------------------------------------------


class ResumeIn(WireModel):
    step: ServedStep = Field(description="the checkpoint's step: the next step the job will train")
    incarnation: int | None = Field(
        None,
        ge=1,
        description="the incarnation the caller last saw: an older one than the run's is refused (409) unless "
        "`key` names the resume that made the current one, so a zombie of an earlier launch cannot fence the live job",
    )
    key: str | None = Field(
        None,
        max_length=200,
        description="idempotency key of this restart (e.g. the job's launch id): every rank may send the same "
        "resume and one incarnation results",
    )


class ResumeResult(WireModel):
    incarnation: int
    step: int
    horizon: int
    groups: list[GroupValues] = Field(description="values at `step`, to write back into param_groups")


# ---- curves and events ------------------------------------------------------------------------------------------


class Marker(WireModel):
    step: int
    kind: Literal["change", "reduction", "resume"]
    detail: str
    actor: str | None
    reason: str | None
    at: datetime


class Curve(WireModel):
    run_id: str | None
    start: int
    stop: int
    stride: int
    steps: list[int]
    groups: list[GroupValues]
    horizon: int
    revision: int
    markers: list[Marker]


class CurveRequest(WireModel):
    spec: RunSpec
    start: Annotated[int, Field(ge=0, le=MAX_STEP - 1)] = 0
    stop: Annotated[int, Field(ge=1, le=MAX_STEP, description="first step not included")] = 1000
    stride: Annotated[int, Field(ge=1, le=MAX_STEP)] = 1
    metrics: list[MetricIn] = Field(default_factory=list, max_length=100_000)


class Event(WireModel):
    seq: int
    kind: str
    at: datetime
    actor: str | None
    reason: str | None
    payload: dict[str, Any]


class EventPage(WireModel):
    events: list[Event]
    next_after: int | None


class ProblemError(WireModel):
    loc: list[str | int]
    path: str
    msg: str
    type: str


class Problem(WireModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] = Field(default_factory=list)
    model_config = ConfigDict(extra="allow")
