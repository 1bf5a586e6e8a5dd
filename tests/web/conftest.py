"""Fixtures of the web page tests: live servers (open, and with tokens), headless Chromium, pages with screenshots.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright for Python (never a downloaded browser;
``.ci/run`` installs the package). Without it the browser tests skip, except under ``CI=true``, where they fail.
Each browser test leaves a full-page screenshot in ``artifacts/screenshots/<test>.png``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import pytest

from lrserve.service.auth import hash_token
from lrserve.service.settings import Settings, TokenConfig
from tests.web.live import LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("LRSERVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

#: Tokens of the server that wants them: the token text is "<scope>-secret"; names are what the history records.
TOKENS = {"read": "read-secret", "admin": "admin-secret", "train": "train-secret"}
TOKEN_NAMES = {"read": "viewer", "admin": "alice", "train": "trainer"}

SPEC: dict[str, Any] = {
    "param_groups": [{"name": "backbone", "lr": 0.1}, {"name": "head", "lr": 1.0}],
    "schedule": {"type": "CosineAnnealingLR", "T_max": 400},
    "plateau": {"metric": "val_loss", "mode": "min", "factor": 0.5, "patience": 1},
}
ONECYCLE: dict[str, Any] = {
    "param_groups": [{"name": "all", "lr": 0.01}],
    "schedule": {"type": "OneCycleLR", "max_lr": 0.1, "total_steps": 1000},
}


def new_id(prefix: str = "run") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_run(http: httpx.Client, run_id: str, spec: dict[str, Any] | None = None, **labels: str) -> dict[str, Any]:
    response = http.put(f"/v1/runs/{run_id}", json={"spec": spec or SPEC, "labels": labels})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def serve_steps(http: httpx.Client, run_id: str, count: int, start: int = 0) -> None:
    response = http.get(f"/v1/runs/{run_id}/lr", params={"step": start, "count": count})
    assert response.status_code == 200, response.text


def post_metrics(
    http: httpx.Client, run_id: str, values: list[tuple[int, float]], name: str = "val_loss", incarnation: int = 1
) -> Any:
    body = {"metrics": [{"step": s, "name": name, "value": v} for s, v in values], "incarnation": incarnation}
    response = http.post(f"/v1/runs/{run_id}/metrics", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An open server (no tokens) on a SQLite file, shared by the session (tests use their own run ids)."""
    db = tmp_path_factory.mktemp("web") / "lrserve.db"
    with LiveServer(Settings(store=f"sqlite:///{db}")) as server:
        yield server


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that wants tokens: ``TOKENS[scope]`` is a token with that scope, named ``TOKEN_NAMES[scope]``."""
    db = tmp_path_factory.mktemp("web-tokens") / "lrserve.db"
    tokens = [
        TokenConfig(name=TOKEN_NAMES[scope], sha256=hash_token(secret), scopes=[scope])  # type: ignore[list-item]
        for scope, secret in TOKENS.items()
    ]
    with LiveServer(Settings(store=f"sqlite:///{db}", tokens=tokens)) as server:
        yield server


def _no_browser(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; .ci/run installs chromium)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (empty localStorage; the page polls every 300 ms); a screenshot at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script("localStorage.setItem('lrserve.poll_ms', '300')")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
