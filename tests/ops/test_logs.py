"""Structured logs: one JSON line per request (request id, method, route, run id, status, duration), an info line
per change, reduction and resume carrying the request's id, the level and the formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import logging.config
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from lrserve.service.logs import (
    REQUEST_ID,
    JsonFormatter,
    JsonLineHandler,
    TextFormatter,
    direct_handler,
    fields,
    log_config,
)
from tests.ops.conftest import Serve
from tests.service.api.conftest import create_run


class Lines:
    """What the ``lrserve`` loggers write, as ``lrserve serve`` formats it (JSON), parsed back."""

    def __init__(self, handler: logging.StreamHandler[io.StringIO]) -> None:
        self.handler = handler
        self.stream = handler.stream

    def all(self) -> list[dict[str, Any]]:
        self.handler.flush()
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def of(self, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["logger"] == logger]


@pytest.fixture(params=["direct", "records"])
def lines(request: pytest.FixtureRequest) -> Iterator[Lines]:
    """Both ways a request line is written: ``lrserve serve``'s handler (direct, batched) and any other."""
    handler: logging.StreamHandler[io.StringIO]
    if request.param == "direct":
        handler = JsonLineHandler(io.StringIO())  # type: ignore[arg-type]
    else:
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(JsonFormatter())
    out = Lines(handler)
    root = logging.getLogger("lrserve")
    saved = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(saved)


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
def test_one_line_per_request(serve: Serve, lines: Lines, level: int) -> None:
    """One line per request at DEBUG; at INFO every one but the frozen leases the fast path answers from memory."""
    logging.getLogger("lrserve").setLevel(level)
    client = serve()
    create_run(client, "job-1")
    lease = client.get("/v1/runs/job-1/lr", params={"step": 0, "count": 3})
    fast = client.get("/v1/runs/job-1/lr", params={"step": 1})  # answered by the fast path
    stale = client.get("/v1/runs/job-1/lr", params={"step": 1, "incarnation": 2})  # the route: a 422
    missing = client.get("/v1/runs/nope")
    requests = lines.of("lrserve.request")
    expected = [
        ("PUT", "/v1/runs/{run_id}", "job-1", 201, "info"),
        ("GET", "/v1/runs/{run_id}/lr", "job-1", 200, "info"),
        ("GET", "/v1/runs/{run_id}/lr", "job-1", 200, "debug"),
        ("GET", "/v1/runs/{run_id}/lr", "job-1", 422, "info"),
        ("GET", "/v1/runs/{run_id}", "nope", 404, "info"),
    ]
    answers = [lease, fast, stale, missing]
    if level == logging.INFO:
        del expected[2], answers[1]
    assert [(r["method"], r["route"], r["run_id"], r["status"], r["level"]) for r in requests] == expected
    assert [r["request_id"] for r in requests[1:]] == [x.headers["x-request-id"] for x in answers]
    assert len({r["request_id"] for r in requests}) == len(expected)
    assert requests[1]["query"] == "step=0&count=3"
    assert requests[1]["path"] == "/v1/runs/job-1/lr"
    assert requests[1]["message"] == "GET /v1/runs/job-1/lr 200"
    assert all(0 < r["duration_ms"] < 10_000 for r in requests)
    assert requests[0]["time"].endswith("Z")
    assert list(requests[0]) == [
        "time", "level", "logger", "message", "request_id",
        "method", "route", "path", "query", "run_id", "status", "duration_ms", "client",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("given", "kept"),
    [("lb-7f3a9c", True), ("0" * 128, True), ("0" * 129, False), ("has space", False), ("é", False)],
)
def test_request_id_taken_when_sane(serve: Serve, given: str, kept: bool) -> None:
    client = serve()
    response = client.get("/healthz", headers={"X-Request-ID": given.encode()})
    returned = response.headers["x-request-id"]
    if kept:
        assert returned == given
    else:
        assert returned != given
        assert len(returned) == 16
        int(returned, 16)


def test_change_reduction_and_resume_lines_carry_the_request_id(serve: Serve, lines: Lines) -> None:
    client = serve()
    create_run(client, "job")
    client.get("/v1/runs/job/lr", params={"step": 0, "count": 10}).raise_for_status()
    for step, loss in ((1, 1.0), (2, 2.0)):
        client.post("/v1/runs/job/metrics", json={"step": step, "name": "val_loss", "value": loss})
    reduced = client.post("/v1/runs/job/metrics", json={"step": 3, "name": "val_loss", "value": 3.0})
    changed = client.post("/v1/runs/job/changes", json={"op": "scale", "factor": 0.5, "reason": "too hot"})
    client.post("/v1/runs/job/changes", json={"op": "scale", "factor": 0.5, "dry_run": True})
    resumed = client.post("/v1/runs/job/resume", json={"step": 4})
    events = lines.of("lrserve.runs")
    assert [e["event"] for e in events] == ["reduction", "change", "resume"]
    reduction, change, resume = events
    assert reduction["request_id"] == reduced.headers["x-request-id"]
    assert (reduction["run_id"], reduction["metric_step"], reduction["from_step"]) == ("job", 3, 10)
    assert reduction["multipliers"] == [0.5, 0.5]
    assert change["request_id"] == changed.headers["x-request-id"]
    assert (change["op"], change["revision"], change["from_step"], change["reason"]) == ("scale", 1, 10, "too hot")
    assert change["message"] == "run job: change scale (revision 1) from step 10 by -"
    assert resume["request_id"] == resumed.headers["x-request-id"]
    assert (resume["step"], resume["incarnation"]) == (4, 2)


def test_level_warning_silences_request_lines(serve: Serve, lines: Lines) -> None:
    logging.getLogger("lrserve").setLevel(logging.WARNING)
    client = serve()
    create_run(client, "job")
    assert client.get("/healthz").headers["x-request-id"]
    assert lines.of("lrserve.request") == []


def test_request_log_off_keeps_ids_and_metrics(serve: Serve, lines: Lines) -> None:
    client = serve(request_log=False)
    response = client.get("/healthz")
    assert len(response.headers["x-request-id"]) == 16
    assert lines.of("lrserve.request") == []
    assert 'route="/healthz"' in client.get("/metrics").text


def test_json_formatter_fields_exception_and_request_id() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("lrserve.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "lrserve.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info(),
            extra=fields(run_id="r", odd=object.__name__, nan=float("nan")),
        )  # fmt: skip
    token = REQUEST_ID.set("req-1")
    try:
        line = json.loads(formatter.format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "failed x"
    assert (line["level"], line["logger"], line["request_id"]) == ("error", "lrserve.test", "req-1")
    assert line["run_id"] == "r"
    assert line["nan"] is None  # JSON has no NaN
    assert "ValueError: boom" in line["exception"]
    assert "request_id" not in json.loads(formatter.format(logger.makeRecord("x", 20, "f", 1, "m", (), None)))


def test_text_formatter() -> None:
    record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "hello", (), None, extra=fields(a=1, b=None))
    assert TextFormatter().format(record).endswith("INFO    x: hello a=1")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_config_is_a_valid_dict_config(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    saved = {name: logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "lrserve")}
    state = {name: (lg.handlers[:], lg.level, lg.propagate) for name, lg in saved.items()}
    try:
        logging.config.dictConfig(log_config("warning", fmt))  # type: ignore[arg-type]
        logging.getLogger("lrserve.request").info("not at warning")
        logging.getLogger("uvicorn.access").warning("access lines are off")
        logging.getLogger("uvicorn.error").warning("uvicorn says")
        logging.getLogger("lrserve.runs").warning("we say")
        err = capsys.readouterr().err.splitlines()
    finally:
        for name, (handlers, level, propagate) in state.items():
            saved[name].handlers[:] = handlers
            saved[name].setLevel(level)
            saved[name].propagate = propagate
    assert len(err) == 2
    if fmt == "json":
        assert [json.loads(line)["message"] for line in err] == ["uvicorn says", "we say"]
    else:
        assert err[0].endswith("WARNING uvicorn.error: uvicorn says")


def test_client_gets_the_id_on_errors_too(serve: Serve) -> None:
    client = serve()
    response = client.get("/v1/runs/nope", headers={"X-Request-ID": "trace-42"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "trace-42"
    assert isinstance(client, httpx.Client)


def test_direct_lines_are_batched_and_stay_in_order() -> None:
    stream = io.StringIO()
    handler = JsonLineHandler(stream)  # type: ignore[arg-type]
    logger = logging.getLogger("lrserve.test.batch")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        assert direct_handler(logger) is handler

        async def on_a_loop() -> list[str]:
            handler.write_fields(logger.name, logging.INFO, "first", {"n": 1})
            handler.write_fields(logger.name, logging.INFO, "second", {"n": 2})
            queued = stream.getvalue()  # nothing written yet: a timer will
            logger.warning("a record")  # but a record goes out after what was queued before it
            handler.write_fields(logger.name, logging.INFO, "third", {"n": 3})
            await asyncio.sleep(JsonLineHandler.FLUSH_SECONDS * 3)
            return [queued, stream.getvalue()]

        queued, written = asyncio.run(on_a_loop())
        assert queued == ""
        messages = [json.loads(line)["message"] for line in written.splitlines()]
        assert messages == ["first", "second", "a record", "third"]
        handler.write_fields(logger.name, logging.INFO, "off the loop", {})  # no loop to flush it later: now
        assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "off the loop"
        logger.addHandler(logging.NullHandler())
        assert direct_handler(logger) is None  # another handler would see the record: log as usual
    finally:
        logger.handlers.clear()
