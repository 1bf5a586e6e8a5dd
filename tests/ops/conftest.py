"""The real app in-process (``start_app`` of the API tests) for the metrics and log tests; real processes for the
shutdown and compose tests (``tests.e2e.server``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lrserve.service.settings import Settings
from tests.service.api.conftest import start_app

Serve = Callable[..., httpx.Client]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """``serve(**settings)``: a client of a started app on a fresh SQLite file (one file per call)."""
    with ExitStack() as stack:
        made: list[int] = []

        def start(**overrides: Any) -> httpx.Client:
            made.append(1)
            overrides.setdefault("store", f"sqlite:///{tmp_path / f'ops-{len(made)}.db'}")
            return start_app(stack, Settings(**overrides))

        yield start


def scrape(client: httpx.Client, headers: dict[str, str] | None = None) -> Samples:
    """``GET /metrics`` parsed: (sample name, sorted labels) -> value."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError when the server does not export it)."""
    return samples[(name, tuple(sorted(labels.items())))]
