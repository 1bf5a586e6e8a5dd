"""lrserve.client: what a training job imports.

- ``LRClient`` / ``RunHandle`` (``lrserve.client.http``): typed calls to the server (httpx, keep-alive,
  retries with backoff and jitter); errors raised as ``lrserve.schemas.errors`` classes.
- ``LeaseManager`` (``lrserve.client.lease``): leased windows of steps, refilled ahead, local evaluation
  through outages, a metric queue replayed idempotently. No torch needed.
- ``RemoteScheduler`` (``lrserve.client.torch``): the drop-in ``torch.optim.lr_scheduler.LRScheduler``; torch
  is imported only when it is first used, so ``import lrserve.client`` works without torch.
- ``find_lr`` (``lrserve.client.lrfind``): an LR range test run against the service (the model and optimizer
  restored afterwards), returning the server's suggestion; ``plot_range_test`` draws it (matplotlib). Lazy too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrserve.client.http import LRClient, RunHandle, error_from_response
from lrserve.client.lease import LeaseManager, LocalPlan, Window
from lrserve.schemas.errors import (
    Cancelled,
    Conflict,
    InvalidInput,
    LrserveError,
    NotFound,
    RunExists,
    RunNotFound,
    ServerUnreachable,
    SpecInvalid,
    StaleIncarnation,
    Unavailable,
)

if TYPE_CHECKING:
    from lrserve.client.lrfind import find_lr, plot_range_test
    from lrserve.client.torch import RemoteScheduler

__all__ = [
    "Cancelled",
    "Conflict",
    "InvalidInput",
    "LRClient",
    "LeaseManager",
    "LocalPlan",
    "LrserveError",
    "NotFound",
    "RemoteScheduler",
    "RunExists",
    "RunHandle",
    "RunNotFound",
    "ServerUnreachable",
    "SpecInvalid",
    "StaleIncarnation",
    "Unavailable",
    "Window",
    "error_from_response",
    "find_lr",
    "plot_range_test",
]


def __getattr__(name: str) -> Any:
    if name == "RemoteScheduler":
        from lrserve.client.torch import RemoteScheduler

        return RemoteScheduler
    if name in ("find_lr", "plot_range_test"):
        from lrserve.client import lrfind

        return getattr(lrfind, name)
    raise AttributeError(f"module 'lrserve.client' has no attribute {name!r}")
