"""The server's log lines: one JSON object per line (or plain text for a terminal), on stderr.

Every line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``; a record logged with
``extra={"fields": {...}}`` adds those keys, and a line written while a request is handled carries its
``request_id`` (``REQUEST_ID``, set by ``api.middleware.RequestLog``; context variables follow the request into
the threadpool). For example, the request log and a change::

    {"time": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "lrserve.request", "message": "GET
     /v1/runs/job-7/lr 200", "request_id": "5f0c...", "method": "GET", "route": "/v1/runs/{run_id}/lr",
     "run_id": "job-7", "status": 200, "duration_ms": 0.21, ...}
    {"time": "...", "level": "info", "logger": "lrserve.runs", "message": "run job-7: change scale ...",
     "request_id": "5f0c...", "event": "change", "run_id": "job-7", "op": "scale", "revision": 2, ...}

``log_config(level, fmt)`` is the ``logging.config.dictConfig`` that ``lrserve serve`` hands uvicorn: uvicorn's own
loggers and ours (``lrserve.*``) on one stderr handler with this formatter; uvicorn's access log stays off (it costs
about a quarter of the lease route's throughput; ``lrserve.request`` replaces it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["json", "text"]

#: The id of the request being handled (None outside requests).
REQUEST_ID: ContextVar[str | None] = ContextVar("lrserve_request_id", default=None)


_second: tuple[int, str] = (-1, "")  # the last second formatted (strftime is most of a line's cost otherwise)


def _utc(created: float) -> str:
    global _second
    seconds = int(created)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{int((created - seconds) * 1000):03d}Z"


def _head(created: float, level: str, logger: str, message: str) -> dict[str, Any]:
    out = {"time": _utc(created), "level": level, "logger": logger, "message": message}
    request_id = REQUEST_ID.get()
    if request_id is not None:
        out["request_id"] = request_id
    return out


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, request_id, then the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out = _head(record.created, record.levelname.lower(), record.name, record.getMessage())
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: whatever a caller put in fields (a Path, a datetime...) still makes a line.
        return orjson.dumps(out, default=str).decode()


class JsonLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``log_config`` installs for JSON: a ``StreamHandler`` (stderr) that also takes request lines
    without a ``LogRecord``, and writes them in batches.

    Through ``Logger.info`` a request line costs ~77k instructions and a write system call, 10 % of a frozen lease
    served over HTTP (~740k; counted under valgrind, ``bench/requestlog.py``): the record, the handler chain, the
    formatter. ``write_fields`` makes the same line (``JsonFormatter``'s keys, in its order) for ~45k (6 %) and
    queues it; the queue is written at most ``FLUSH_SECONDS`` later
    (a timer on the event loop), when it passes ``FLUSH_BYTES``, before any other record (so lines stay in
    order), and at exit. As nginx's ``access_log ... flush=``: a crash (kill -9) may lose the last 50 ms of request
    lines, never another record. ``direct_handler`` says when the shortcut changes nothing but the cost.
    """

    FLUSH_SECONDS = 0.05
    FLUSH_BYTES = 64 * 1024

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())
        self._queued: list[str] = []
        self._queued_bytes = 0
        self._timer = False

    def write_fields(self, logger: str, level: int, message: str, fields: dict[str, Any]) -> None:
        """``getLogger(logger).log(level, message, extra={"fields": fields})``, as this handler would write it."""
        out = _head(time.time(), logging.getLevelName(level).lower(), logger, message)
        out.update(fields)
        line = orjson.dumps(out, default=str).decode() + self.terminator
        self.acquire()
        try:
            self._queued.append(line)
            self._queued_bytes += len(line)
            if self._queued_bytes >= self.FLUSH_BYTES:
                self.flush()
            elif not self._timer:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # not on an event loop: nothing would come back to write it
                    self.flush()
                else:
                    self._timer = True
                    loop.call_later(self.FLUSH_SECONDS, self._on_timer)
        finally:
            self.release()

    def _on_timer(self) -> None:
        self._timer = False
        self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            if self._queued:
                lines, self._queued, self._queued_bytes = self._queued, [], 0
                try:
                    self.stream.write("".join(lines))
                except Exception:
                    self.handleError(logging.makeLogRecord({"name": "lrserve.request", "msg": lines[0]}))
            super().flush()
        finally:
            self.release()

    def emit(self, record: logging.LogRecord) -> None:
        if self._queued:
            self.flush()  # request lines queued before this record go out before it
        super().emit(record)


def direct_handler(logger: logging.Logger, level: int = logging.INFO) -> JsonLineHandler | None:
    """The one ``JsonLineHandler`` a record of ``logger`` at ``level`` would reach, if it would reach no other
    handler and pass no filter; else None (then log as usual). Walks the logger's ancestry: a few attribute reads.
    """
    found: JsonLineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if handler.level > level:
                continue
            if found is not None or type(handler) is not JsonLineHandler or handler.filters:
                return None
            if type(handler.formatter) is not JsonFormatter:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


class TextFormatter(logging.Formatter):
    """For a terminal: ``time level logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        return line


def log_config(level: str, fmt: LogFormat = "json") -> dict[str, Any]:
    """uvicorn's loggers and ``lrserve.*`` on one stderr handler, at ``level``, formatted as ``fmt``."""
    formatter = {"()": f"{__name__}.{'JsonFormatter' if fmt == 'json' else 'TextFormatter'}"}
    handler_class = f"{__name__}.JsonLineHandler" if fmt == "json" else "logging.StreamHandler"
    handler = {"class": handler_class, "formatter": "lrserve", "stream": "ext://sys.stderr"}
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"lrserve": formatter},
        "handlers": {"stderr": handler, "none": {"class": "logging.NullHandler"}},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": ["none"], "propagate": False},  # off: lrserve.request replaces it
            "lrserve": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
    }


def lean_records() -> None:
    """Skip what a ``LogRecord`` gathers and these formatters never print: the caller's file and line (a stack
    walk), thread, process and task names. The Logging HOWTO's "Optimization" switches; process-wide, so only
    ``lrserve serve`` sets them. They halve the cost of a request line."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    setattr(logging, "logAsyncioTasks", False)  # Python >= 3.12 reads it  # noqa: B010


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a structured line: ``log.info("...", extra=fields(run_id=..., op=...))``."""
    return {"fields": values}


__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "JsonLineHandler",
    "LogFormat",
    "TextFormatter",
    "direct_handler",
    "fields",
    "lean_records",
    "log_config",
]
