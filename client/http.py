"""``LRClient``: the HTTP client of lrserve (httpx, keep-alive), and ``RunHandle``, one run seen through it.

Every method returns the wire model the server answers (``lrserve.schemas.wire``). An error answer
(``application/problem+json``) is raised as the matching class of ``lrserve.schemas.errors``, found by the
problem's ``type`` (then by its status), with the server's field errors in ``errors`` and any extra members
(e.g. ``horizon`` of a ``HorizonConflict``) in ``extra``::

    try:
        client.run("job-42", spec={"schedule": {"type": "StepLR", "step_size": 0}})
    except SpecInvalid as e:
        print(e)            # the detail, then one line per field: "schedule.step_size: ..."

Transient failures (connection refused or reset, timeouts, 502/503/504) are retried with exponential backoff and
full jitter by ``tenacity``, for at most ``retry_for`` seconds per call. Only idempotent calls are retried after
the request may have reached the server (GETs, PUT, metrics, resume with a key, applied); a change is retried only
when the connection could not even be opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from lrserve.schemas.core.lrfinder import Policy, UpperRule
from lrserve.schemas.errors import (
    Cancelled,
    FieldError,
    LrserveError,
    ServerUnreachable,
    Unavailable,
    all_error_classes,
)
from lrserve.schemas.wire import (
    AppliedResult,
    ChangeIn,
    ChangeResult,
    Curve,
    EventPage,
    FollowupIn,
    LrWindow,
    MetricsResult,
    PlateauChange,
    ReplaceChange,
    ResumeResult,
    RunPage,
    RunPlan,
    RunPublic,
    ScaleChange,
    SetChange,
    SuggestionPublic,
)

log = logging.getLogger("lrserve.client")

_loads: Callable[[bytes], Any] = json.loads
try:  # orjson parses a lease of thousands of floats ~5x faster than json; it is optional
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - the base install has only json
    pass

M = TypeVar("M", bound=BaseModel)

_BY_TYPE: dict[str, type[LrserveError]] = {cls.problem_type: cls for cls in all_error_classes()}
_BY_STATUS: dict[int, type[LrserveError]] = {}
for _cls in all_error_classes():  # the first class (the most general) of each status wins
    _BY_STATUS.setdefault(_cls.status, _cls)
_BY_STATUS[502] = _BY_STATUS[504] = Unavailable
_PROBLEM_MEMBERS = {"type", "title", "status", "detail", "errors"}
_CHANGE_ADAPTER: TypeAdapter[ReplaceChange | ScaleChange | SetChange | PlateauChange] = TypeAdapter(ChangeIn)
_TRANSIENT_STATUS = {502, 503, 504}


def error_from_response(response: httpx.Response) -> LrserveError:
    """The ``LrserveError`` (subclass) an error response stands for."""
    status = response.status_code
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    if not isinstance(body, dict):
        cls = _BY_STATUS.get(status, LrserveError)
        text = response.text.strip()[:500] or response.reason_phrase
        return cls(detail=f"HTTP {status}: {text}", extra={"status": status})
    type_ = str(body.get("type", ""))
    cls = _BY_TYPE.get(type_) or _BY_STATUS.get(status, LrserveError)
    if cls.status != status and type_ not in _BY_TYPE:
        cls = _BY_STATUS.get(status, LrserveError)
    errors = []
    for err in body.get("errors") or ():
        if isinstance(err, dict):
            loc = tuple(err.get("loc") or ())
            errors.append(FieldError(loc, str(err.get("msg", "")), str(err.get("type", "value_error"))))
    extra = {k: v for k, v in body.items() if k not in _PROBLEM_MEMBERS}
    if cls.status != status or cls is LrserveError:
        extra.setdefault("status", status)
        extra.setdefault("type", type_)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    return cls(detail=detail, errors=tuple(errors), extra=extra)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, Unavailable) and exc.status == 503)


def _connect_failed(exc: BaseException) -> bool:
    """The request certainly did not reach the server: safe to retry even a non-idempotent call."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or (
        isinstance(exc, Unavailable) and exc.status == 503 and not isinstance(exc, ServerUnreachable)
    )


def _json_float(value: float) -> float | str:
    """JSON has no NaN/inf: the server reads them as the strings 'NaN', 'Infinity', '-Infinity'."""
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _nan_for_null(values: list[Any]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def _fix_groups(data: dict[str, Any]) -> None:
    """Nulls inside ``groups[].lr``/``momentum`` read as NaN (JSON encoders write NaN as null)."""
    for g in data.get("groups") or ():
        for key in ("lr", "momentum"):
            values = g.get(key)
            if values is not None and None in values:
                g[key] = _nan_for_null(values)


def window_from_json(data: dict[str, Any]) -> LrWindow:
    """An ``LrWindow`` from its JSON (NaN momentum of groups that do not cycle it arrives as null)."""
    _fix_groups(data)
    return LrWindow.model_validate(data)


class LRClient:
    """A connection to an lrserve server.

    ``timeout`` bounds one HTTP attempt (connecting: at most 2 s of it); ``retry_for`` bounds all the attempts
    of one call (0: no retries). Thread-safe: the scheduler's background thread and the training thread share it.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 5.0,
        *,
        retry_for: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"User-Agent": "lrserve-client", "Accept": "application/json"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        self.base_url = base_url.rstrip("/")
        self.retry_for = retry_for
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=all_headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=30.0),
            transport=transport,
        )

    # ---- plumbing -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LRClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LRClient({self.base_url!r})"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        retry_for: float | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> httpx.Response:
        """One call: the 2xx response, or the mapped ``LrserveError``; transient failures retried (see module)."""
        budget = self.retry_for if retry_for is None else retry_for
        content = None if json_body is None else json.dumps(json_body, allow_nan=False).encode()
        send_headers = dict(headers or {})
        if content is not None:
            send_headers["Content-Type"] = "application/json"
        kwargs: dict[str, Any] = {"params": params, "content": content, "headers": send_headers}
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, connect=min(timeout, 2.0))

        def attempt() -> httpx.Response:
            if cancel is not None and cancel.is_set():
                raise Cancelled(detail=f"{method} {path}: cancelled by the caller before it was sent")
            response = self._http.request(method, path, **kwargs)
            if response.status_code >= 400:
                raise error_from_response(response)
            return response

        if budget <= 0:
            return self._once(attempt, method, path)

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.debug("%s %s: attempt %d failed (%r); retrying", method, path, state.attempt_number, exc)

        retrying = Retrying(
            stop=stop_after_delay(budget),
            wait=wait_random_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(_transient if idempotent else _connect_failed),
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except httpx.TransportError as e:
            raise ServerUnreachable(detail=f"{method} {self.base_url}{path}: {type(e).__name__}: {e}") from e

    def _once(self, attempt: Any, method: str, path: str) -> httpx.Response:
        try:
            response: httpx.Response = attempt()
            return response
        except httpx.TransportError as e:
            raise ServerUnreachable(detail=f"{method} {self.base_url}{path}: {type(e).__name__}: {e}") from e

    def _model(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate_json(self.request(method, path, **kwargs).content)

    # ---- API ----------------------------------------------------------------------------------------------------

    def run(
        self,
        run_id: str,
        spec: Mapping[str, Any] | BaseModel | None = None,
        preset: str | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        lazy: bool = False,
    ) -> RunHandle:
        """A handle on run ``run_id``. With a ``spec`` or a ``preset`` the run is created if missing (PUT: every
        rank may call it; 409 ``RunExists`` if it exists with another spec). ``lazy=True`` defers that call to the
        handle's first use (so, under the default distributed mode, ranks other than 0 never call the server)."""
        handle = RunHandle(self, run_id, spec=spec, preset=preset, overrides=overrides, labels=labels)
        if not lazy:
            handle.ensure()
        return handle

    def runs(self, labels: Mapping[str, str] | None = None, limit: int = 100, cursor: str | None = None) -> RunPage:
        params: dict[str, Any] = {"limit": limit, "label": [f"{k}:{v}" for k, v in (labels or {}).items()]}
        if cursor is not None:
            params["cursor"] = cursor
        return self._model(RunPage, "GET", "/v1/runs", params=params)

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            self.request("GET", "/healthz", retry_for=0, timeout=timeout)
            return True
        except LrserveError:
            return False


class RunHandle:
    """One run on the server. ``info`` is the run as last read (``RunPublic``), None before the first call."""

    def __init__(
        self,
        client: LRClient,
        run_id: str,
        *,
        spec: Mapping[str, Any] | BaseModel | None = None,
        preset: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.run_id = run_id
        self._spec = spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, BaseModel) else spec
        self._preset = preset
        self._overrides = overrides
        self._labels = dict(labels or {})
        self.info: RunPublic | None = None
        self._path = f"/v1/runs/{run_id}"

    def __repr__(self) -> str:
        return f"RunHandle({self.run_id!r})"

    # ---- the run ------------------------------------------------------------------------------------------------

    def ensure(self, retry_for: float | None = None) -> RunPublic:
        """PUT the run if this handle has a spec or preset (idempotent), else GET it. Sets and returns ``info``."""
        if self._spec is None and self._preset is None:
            return self.get(retry_for=retry_for)
        body: dict[str, Any] = {"labels": self._labels}
        if self._spec is not None:
            body["spec"] = self._spec
        if self._preset is not None:
            body["preset"] = self._preset
        if self._overrides is not None:
            body["overrides"] = self._overrides
        self.info = self.client._model(RunPublic, "PUT", self._path, json_body=body, retry_for=retry_for)
        return self.info

    def get(self, retry_for: float | None = None) -> RunPublic:
        self.info = self.client._model(RunPublic, "GET", self._path, retry_for=retry_for)
        return self.info

    def delete(self) -> None:
        self.client.request("DELETE", self._path)
        self.info = None

    # ---- the training job's calls -------------------------------------------------------------------------------

    def values(
        self,
        step: int,
        count: int = 1,
        incarnation: int | None = None,
        *,
        retry_for: float | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> LrWindow:
        """The values of steps ``step .. step+count-1`` (a lease: the server freezes them). ``cancel``: once set,
        no further attempt is sent."""
        return window_from_json(
            self.lease_json(step, count, incarnation, retry_for=retry_for, timeout=timeout, cancel=cancel)
        )

    def lease_json(
        self,
        step: int,
        count: int = 1,
        incarnation: int | None = None,
        *,
        retry_for: float | None = None,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        """``values`` as the parsed JSON object, unvalidated (the lease engine's fast path)."""
        params: dict[str, Any] = {"step": step, "count": count}
        if incarnation is not None:
            params["incarnation"] = incarnation
        response = self.client.request(
            "GET", f"{self._path}/lr", params=params, retry_for=retry_for, timeout=timeout, cancel=cancel
        )
        data: dict[str, Any] = _loads(response.content)
        return data

    def report(
        self, step: int, name: str, value: float, incarnation: int | None = None, *, retry_for: float | None = None
    ) -> MetricsResult:
        """Record one metric (re-posting the same value is a no-op; another value at the same step+name is 409)."""
        return self.report_many([(step, name, value)], incarnation, retry_for=retry_for)

    def report_many(
        self,
        metrics: Iterable[tuple[int, str, float]],
        incarnation: int | None = None,
        *,
        retry_for: float | None = None,
    ) -> MetricsResult:
        body: dict[str, Any] = {
            "metrics": [{"step": s, "name": n, "value": _json_float(float(v))} for s, n, v in metrics]
        }
        if incarnation is not None:
            body["incarnation"] = incarnation
        response = self.client.request("POST", f"{self._path}/metrics", json_body=body, retry_for=retry_for)
        data = json.loads(response.content)
        for key in ("accepted", "duplicates"):  # a NaN value echoed by an encoder that writes NaN as null
            for m in data.get(key) or ():
                if m.get("value") is None:
                    m["value"] = math.nan
        return MetricsResult.model_validate(data)

    def resume(self, step: int, key: str | None = None, incarnation: int | None = None) -> ResumeResult:
        """Declare a restart from a checkpoint at ``step`` (the next step to train): a new incarnation. With a
        ``key`` the call is idempotent (every rank may send the same one; retries are safe)."""
        body: dict[str, Any] = {"step": step}
        if key is not None:
            body["key"] = key
        if incarnation is not None:
            body["incarnation"] = incarnation
        response = self.client.request("POST", f"{self._path}/resume", json_body=body, idempotent=key is not None)
        data = json.loads(response.content)
        _fix_groups(data)
        return ResumeResult.model_validate(data)

    def plan(self, *, retry_for: float | None = None) -> RunPlan:
        """Spec, changes, reductions and pins: what ``lrserve.schemas.plan.Plan`` evaluates offline."""
        return self.client._model(RunPlan, "GET", f"{self._path}/plan", retry_for=retry_for)

    def applied(
        self, start: int, stop: int, last_seq: int, incarnation: int | None = None, *, retry_for: float | None = None
    ) -> AppliedResult:
        """After an outage: steps ``start..stop`` (inclusive) were applied with the plan as of event ``last_seq``."""
        body: dict[str, Any] = {"start": start, "stop": stop, "last_seq": last_seq}
        if incarnation is not None:
            body["incarnation"] = incarnation
        return self.client._model(AppliedResult, "POST", f"{self._path}/applied", json_body=body, retry_for=retry_for)

    # ---- LR range tests -----------------------------------------------------------------------------------------

    def suggestion(
        self, upper_rule: UpperRule = "valley", lower_div: float = 6.0, *, retry_for: float | None = None
    ) -> SuggestionPublic:
        """What this range test (an ``LRRangeTest`` run) suggests: each rule's LR, the CLR bounds (``upper`` from
        ``upper_rule``, ``lower = upper / lower_div``) and the loss-vs-LR plot data. 409 ``Conflict`` if the run is
        not a range test or has no loss yet."""
        params = {"upper_rule": upper_rule, "lower_div": lower_div}
        return self.client._model(
            SuggestionPublic, "GET", f"{self._path}/suggestion", params=params, retry_for=retry_for
        )

    def followup(
        self,
        run_id: str,
        policy: Policy = "triangular",
        *,
        upper_rule: UpperRule = "valley",
        lower_div: float = 6.0,
        step_size_up: int | None = None,
        steps_per_epoch: int | None = None,
        gamma: float | None = None,
        total_steps: int | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> RunHandle:
        """Create (if missing) run ``run_id``, the training run this range test suggests, and return its handle::

            test = client.run("mlp-lr-test", lazy=True)
            train = test.followup("mlp-train", "one_cycle", total_steps=3000)
            scheduler = RemoteScheduler(optimizer, train)

        ``policy``: ``triangular``, ``triangular2`` or ``exp_range`` (a ``CyclicLR`` from ``lower`` to ``upper``,
        half cycles of ``step_size_up`` steps, else ``4 * steps_per_epoch``; ``exp_range`` needs ``gamma``), or
        ``one_cycle`` (a ``OneCycleLR`` peaking at ``upper`` over ``total_steps``). The server records the new run
        as derived from this one (and labels it ``derived_from``). Idempotent like PUT (so retried): the same call
        again answers the same run; another spec under ``run_id`` is 409 ``RunExists``."""
        body = FollowupIn.model_validate(
            {
                "run_id": run_id,
                "policy": policy,
                "upper_rule": upper_rule,
                "lower_div": lower_div,
                "step_size_up": step_size_up,
                "steps_per_epoch": steps_per_epoch,
                "gamma": gamma,
                "total_steps": total_steps,
                "labels": dict(labels or {}),
            }
        )
        info = self.client._model(
            RunPublic, "POST", f"{self._path}/followup", json_body=body.model_dump(mode="json", exclude_none=True)
        )
        handle = RunHandle(self.client, run_id)
        handle.info = info
        return handle

    # ---- an operator's calls ------------------------------------------------------------------------------------

    def change(
        self,
        change: Mapping[str, Any] | BaseModel | str,
        *,
        if_match: int | None = None,
        **fields: Any,
    ) -> ChangeResult:
        """Record a mid-run change: a ``ChangeIn`` model, its JSON as a dict, or ``op`` plus fields::

        run.change("scale", factor=0.5, reason="loss spikes")
        run.change({"op": "set", "lr": 0.01, "until_step": 5000})
        """
        if isinstance(change, str):
            model = _CHANGE_ADAPTER.validate_python({"op": change, **fields})
        elif isinstance(change, BaseModel):
            model = _CHANGE_ADAPTER.validate_python(change.model_dump(mode="json"))
        else:
            model = _CHANGE_ADAPTER.validate_python({**change, **fields})
        headers = {"If-Match": str(if_match)} if if_match is not None else None
        body = model.model_dump(mode="json", exclude_none=True)
        if isinstance(model, PlateauChange):
            body["plateau"] = None if model.plateau is None else model.plateau.model_dump(mode="json")
        return self.client._model(
            ChangeResult, "POST", f"{self._path}/changes", json_body=body, headers=headers, idempotent=False
        )

    def scale(self, factor: float, **kw: Any) -> ChangeResult:
        return self.change("scale", factor=factor, **kw)

    def set_lr(self, lr: float | Sequence[float], until_step: int | None = None, **kw: Any) -> ChangeResult:
        return self.change("set", lr=lr if isinstance(lr, float | int) else list(lr), until_step=until_step, **kw)

    def replace(self, schedule: Mapping[str, Any], origin: str = "absolute", **kw: Any) -> ChangeResult:
        return self.change("replace", schedule=dict(schedule), origin=origin, **kw)

    def curve(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Curve:
        """The run's LR over ``range(start, stop, stride)``: the past as applied, the future as planned."""
        params: dict[str, Any] = {"start": start, "stride": stride}
        if stop is not None:
            params["stop"] = stop
        data = json.loads(self.client.request("GET", f"{self._path}/curve", params=params).content)
        _fix_groups(data)
        return Curve.model_validate(data)

    def events(self, after: int = 0, limit: int = 100) -> EventPage:
        return self.client._model(EventPage, "GET", f"{self._path}/events", params={"after": after, "limit": limit})
