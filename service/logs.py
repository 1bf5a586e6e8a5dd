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
about a quarter of the throughput of the lease route; ``lrserve.request`` replaces it).
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any, Literal

import orjson

LogFormat = Literal["json", "text"]

#: The id of the request being handled (None outside requests).
REQUEST_ID: ContextVar[str | None] = ContextVar("lrserve_request_id", default=None)


def _utc(created: float) -> str:
    seconds = int(created)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{int((created - seconds) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """A record as one line of JSON: time, level, logger, message, request_id, then the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            out["request_id"] = request_id
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
    handler = {"class": "logging.StreamHandler", "formatter": "lrserve", "stream": "ext://sys.stderr"}
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


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a structured line: ``log.info("...", extra=fields(run_id=..., op=...))``."""
    return {"fields": values}


__all__ = ["REQUEST_ID", "JsonFormatter", "LogFormat", "TextFormatter", "fields", "log_config"]
